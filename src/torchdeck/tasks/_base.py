"""The task protocol (DLPipelines.jl) and the registry of tasks.

A task knows its blocks (input and target kinds), how to encode samples into tensors and
decode model outputs back, the head, loss and metrics it needs, and how to show data.
A user's own task is one small subclass registered with ``@register_task("name")``;
``tasks.check(task)`` runs the interface test every task passes.

Hooks with a default here work for any task whose ``data`` has ``split(name) -> (inputs,
targets)`` (the built-in data sets do): ``samples``, ``mock_sample``, ``loaders`` and
``build_model``. A task over other data overrides ``samples`` (or the hooks themselves).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from torchdeck import models
from torchdeck._registry import Registry
from torchdeck.data import TensorLoader

__all__ = ["Task", "Grid", "TextTable", "TASKS", "register_task", "get", "available"]

TASKS = Registry("task")


def register_task(name: str) -> Callable[[type["Task"]], type["Task"]]:
    def deco(cls: type["Task"]) -> type["Task"]:
        cls.name = name
        return TASKS.register(name)(cls)
    return deco


def get(name: str) -> type["Task"]:
    """The task class registered under ``name``: ``tasks.get("image-classification")``."""
    return TASKS.lookup(name)


def takes_augment(name: str) -> bool:
    """Whether the task registered under ``name`` accepts a training augmentation (its
    constructor has an ``augment`` argument): the spec refuses ``augment`` for the others, and
    the Studio asks first, to leave the augmentation out instead of proposing a refused edit."""
    return "augment" in inspect.signature(get(name).__init__).parameters


def available() -> list[str]:
    """Names of the registered tasks (also ``tasks.list()``)."""
    return TASKS.names()


@dataclasses.dataclass
class Grid:
    """Images with a caption each, as ``show_batch``/``show_results`` return them.

    images: (N, H, W, C) uint8. Render with ``torchdeck.render.grid_image``.
    """

    images: np.ndarray
    captions: list[str]


@dataclasses.dataclass
class TextTable:
    """Rows of text under a header, as tabular tasks' ``show_batch``/``show_results`` return them."""

    columns: list[str]
    rows: list[list[str]]

    def __str__(self) -> str:
        cells = [self.columns, *self.rows]
        widths = [max(len(r[j]) for r in cells) for j in range(len(self.columns))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
        return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _missing(task: "Task", method: str) -> NotImplementedError:
    return NotImplementedError(f"{type(task).__name__} does not define {method}; a Task subclass must")


class Task:
    """Base class. Subclasses set ``blocks`` and fill the methods below.

    The interface (checked by ``tasks.check``): ``mock_sample(n)`` gives raw
    ``(inputs, targets)``; ``encode_inputs``/``encode_targets`` turn them into batch tensors;
    ``head(features)`` maps backbone features to the model output; ``loss()(output,
    encoded targets)`` is a scalar; ``decode(output)`` gives one prediction per sample.
    """

    name: ClassVar[str] = ""
    blocks: ClassVar[tuple[str, str]] = ("", "")
    # The data a task reads, declared by the task so that pickers (the Studio) offer only data
    # it can use, a user's own task included: label -> (data set name, options); the first is
    # the default. Paths go through ``data_from_path``.
    builtin_data: ClassVar[Mapping[str, tuple[str, Mapping[str, Any]]]] = {}
    # The backbone a run of this task starts with when the one chosen cannot read its inputs.
    default_backbone: ClassVar[str] = "small_cnn"
    data: Any = None

    @classmethod
    def data_from_path(cls, path: str) -> tuple[str, dict[str, Any]]:
        """``(data set name, options)`` that read ``path`` (a folder or a file) for this task."""
        raise ValueError(f"{cls.name}: reads no data from a path ({path!r}); pick one of its built-in data sets: "
                         f"{', '.join(cls.builtin_data) or 'none'}")

    def samples(self, split: str) -> tuple[Any, Any]:
        """Raw ``(inputs, targets)`` of a split; indexing either with an index array selects samples."""
        if self.data is None or not hasattr(self.data, "split"):
            raise NotImplementedError(f"{type(self).__name__} has no data with split(name); "
                                      "override samples(split) or mock_sample(n, seed=...)")
        return self.data.split(split)

    def mock_sample(self, n: int, *, seed: int = 0) -> tuple[Any, Any]:
        """``n`` raw ``(inputs, targets)`` for the interface check: a seeded draw from the training split."""
        inputs, targets = self.samples("train")
        if len(targets) == 0:
            raise ValueError(f"{type(self).__name__}: the training split is empty")
        idx = np.sort(np.random.default_rng(seed).choice(len(targets), size=n, replace=len(targets) < n))
        return inputs[idx], targets[idx]

    def encode_inputs(self, inputs: Any) -> torch.Tensor:
        raise _missing(self, "encode_inputs(inputs)")

    def encode_targets(self, targets: Any) -> torch.Tensor:
        raise _missing(self, "encode_targets(targets)")

    def decode(self, outputs: torch.Tensor) -> Any:
        raise _missing(self, "decode(outputs)")

    def loaders(self, batch_size: int = 64, *, seed: int = 0) -> dict[str, Any]:
        """Encoded train and valid splits in memory; the train loader reshuffles from ``seed``."""
        out = {}
        for split in ("train", "valid"):
            inputs, targets = self.samples(split)
            out[split] = TensorLoader(self.encode_inputs(inputs), self.encode_targets(targets), batch_size,
                                      shuffle=split == "train", seed=seed)
        return out

    def head(self, in_features: int) -> nn.Module:
        raise _missing(self, "head(in_features)")

    def build_model(self, backbone: str, options: Mapping[str, Any] | None = None) -> nn.Module:
        """``Model(backbone, head)``: the named backbone for ``input_channels()`` inputs, then this
        task's head. Tasks whose backbones need more than a channel count override this."""
        body, features = models.build_backbone(backbone, self.input_channels(), **dict(options or {}))
        return models.Model(body, self.head(features))

    def input_channels(self) -> int:
        raise _missing(self, "input_channels()")

    def loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        raise _missing(self, "loss()")

    def metrics(self) -> Sequence[str]:
        return ()

    def show_batch(self, n: int = 16, *, split: str = "train") -> Grid:
        raise _missing(self, "show_batch(n, split=...)")
