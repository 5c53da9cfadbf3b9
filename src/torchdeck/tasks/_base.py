"""The task protocol (DLPipelines.jl) and the registry of tasks.

A task knows its blocks (input and target kinds), how to encode samples into tensors and
decode model outputs back, the head, loss and metrics it needs, and how to show data.
A user's own task is one small subclass registered with ``@register_task("name")``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from torchdeck._registry import Registry

__all__ = ["Task", "Grid", "TASKS", "register_task", "get", "available"]

TASKS = Registry("task")


def register_task(name: str) -> Callable[[type["Task"]], type["Task"]]:
    def deco(cls: type["Task"]) -> type["Task"]:
        cls.name = name
        return TASKS.register(name)(cls)
    return deco


def get(name: str) -> type["Task"]:
    """The task class registered under ``name``: ``tasks.get("image-classification")``."""
    return TASKS.lookup(name)


def available() -> list[str]:
    return TASKS.names()


@dataclasses.dataclass
class Grid:
    """Images with a caption each, as ``show_batch``/``show_results`` return them.

    images: (N, H, W, C) uint8. Render with ``torchdeck.render.grid_image``.
    """

    images: np.ndarray
    captions: list[str]


class Task:
    """Base class. Subclasses set ``blocks`` and fill the methods below."""

    name: ClassVar[str] = ""
    blocks: ClassVar[tuple[str, str]] = ("", "")

    def encode_inputs(self, inputs: Any) -> torch.Tensor:
        raise NotImplementedError

    def encode_targets(self, targets: Any) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, outputs: torch.Tensor) -> Any:
        raise NotImplementedError

    def loaders(self, batch_size: int = 64, *, seed: int = 0) -> dict[str, Any]:
        raise NotImplementedError

    def head(self, in_features: int) -> nn.Module:
        raise NotImplementedError

    def input_channels(self) -> int:
        raise NotImplementedError

    def loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def metrics(self) -> Sequence[str]:
        return ()

    def show_batch(self, n: int = 16, *, split: str = "train") -> Grid:
        raise NotImplementedError
