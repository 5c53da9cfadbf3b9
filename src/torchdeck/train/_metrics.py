"""Metric functions ``fn(pred, target) -> 0-d tensor`` (a batch mean), found by name."""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["METRICS", "register_metric", "get_metric", "accuracy"]

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METRICS: dict[str, MetricFn] = {}


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    def deco(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = fn
        return fn
    return deco


def get_metric(name_or_fn: str | MetricFn) -> tuple[str, MetricFn]:
    if callable(name_or_fn):
        return getattr(name_or_fn, "__name__", "metric"), name_or_fn
    if name_or_fn not in METRICS:
        raise ValueError(f"unknown metric {name_or_fn!r}; allowed: {', '.join(sorted(METRICS))}")
    return name_or_fn, METRICS[name_or_fn]


@register_metric("accuracy")
def accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of samples whose arg-max class is the target. pred: (N, C) logits; target: (N,)."""
    return (pred.argmax(dim=1) == target).float().mean()
