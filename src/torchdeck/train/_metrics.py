"""Metric functions ``fn(pred, target) -> 0-d tensor`` (a batch mean), found by name."""

from __future__ import annotations

from typing import Callable

import torch

from torchdeck._registry import Registry

__all__ = ["METRICS", "register_metric", "get_metric", "accuracy"]

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METRICS = Registry("metric")
register_metric = METRICS.register


def get_metric(name_or_fn: str | MetricFn) -> tuple[str, MetricFn]:
    if callable(name_or_fn):
        return getattr(name_or_fn, "__name__", "metric"), name_or_fn
    return name_or_fn, METRICS.lookup(name_or_fn)


@register_metric("accuracy")
def accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of samples whose arg-max class is the target. pred: (N, C) logits; target: (N,)."""
    return (pred.argmax(dim=1) == target).float().mean()
