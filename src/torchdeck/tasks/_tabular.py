"""Tabular tasks: a row of categorical and continuous columns -> a class, or a number.

The inputs are encoded by a :class:`~torchdeck.data.TabularEncoding` fitted on the training
split (missing values, category codes, standardisation; see ``torchdeck.data._tabular``).
Their backbone takes the categorical columns' cardinalities from the data, so it is built by
:meth:`build_model`, not from a channel count.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from torchdeck import models
from torchdeck.data import NA_CATEGORY, Table, TabularDataset, TabularEncoding
from torchdeck.tasks._base import Task, TextTable, register_task

__all__ = ["TabularClassification", "TabularRegression", "Rescale", "tabular_backbones"]


def tabular_backbones() -> list[str]:
    """Registered backbones that read tables: those whose builder takes ``cardinalities``."""
    return [name for name in models.available()
            if "cardinalities" in inspect.signature(models.BACKBONES[name]).parameters]


def _cell(value: Any) -> str:
    if value is None:
        return NA_CATEGORY
    if isinstance(value, (float, np.floating)):
        return "NaN" if np.isnan(value) else f"{value:.4g}"
    return str(value)


class _TabularTask(Task):
    """What both tabular tasks share: the encoding, the model, and the text views."""

    target_kind: ClassVar[str] = ""
    default_backbone = "tabular_mlp"

    def __init__(self, data: TabularDataset) -> None:
        if not isinstance(data, TabularDataset):
            raise ValueError(f"{self.name}: data must be a TabularDataset (data.load('iris'), data.read_csv(...)), "
                             f"got {type(data).__name__}")
        if data.target_kind != self.target_kind:
            other = {"categorical": "tabular-classification", "continuous": "tabular-regression"}[data.target_kind]
            raise ValueError(f"{self.name}: the target {data.target!r} of {data.name!r} is {data.target_kind}, this "
                             f"task needs a {self.target_kind} one; use {other}, or read the file with "
                             f"target_type={self.target_kind!r}")
        self.data = data
        train_table, _ = data.split("train")
        self.encoding = TabularEncoding.fit(train_table, data.categorical, data.continuous)

    def input_channels(self) -> int:
        """Encoded columns per row: category codes, then continuous values."""
        return len(self.encoding.columns)

    def encode_inputs(self, table: Table) -> torch.Tensor:
        """Table rows -> (N, n_categorical + n_continuous) float32."""
        if not isinstance(table, Table):
            raise ValueError(f"{self.name}: inputs must be a data.Table, got {type(table).__name__}")
        return torch.from_numpy(self.encoding.transform(table))

    def build_model(self, backbone: str, options: Mapping[str, Any] | None = None) -> nn.Module:
        """The named tabular backbone, given this data's cardinalities, then this task's head."""
        options = dict(options or {})
        allowed = tabular_backbones()
        builder = models.BACKBONES.lookup(backbone)
        if backbone not in allowed:
            raise ValueError(f"{self.name}: backbone {backbone!r} does not read tables; allowed: {', '.join(allowed)}")
        if "cardinalities" in options:
            raise ValueError(f"{self.name}: cardinalities come from the data ({list(self.encoding.cardinalities)}); "
                             "remove it from the backbone options")
        body, features = builder(self.input_channels(), cardinalities=self.encoding.cardinalities, **options)
        return models.Model(body, self.head(features))

    def _target_text(self, targets: np.ndarray) -> list[str]:
        raise NotImplementedError

    def show_batch(self, n: int = 16, *, split: str = "train") -> TextTable:
        """The first ``n`` rows of a split as read (missing shown as ``#na#`` / ``NaN``), with the target."""
        table, targets = self.data.split(split)
        n = min(n, len(targets))
        names = list(table.names)
        truth = self._target_text(targets[:n])
        rows = [[_cell(table[c][i]) for c in names] + [truth[i]] for i in range(n)]
        return TextTable([*names, self.data.target], rows)

    def show_results(self, predict: Callable[[torch.Tensor], torch.Tensor], n: int = 16, *,
                     split: str = "valid") -> TextTable:
        """Like :meth:`show_batch`, plus a ``prediction`` column."""
        table, targets = self.data.split(split)
        shown = self.show_batch(n, split=split)
        preds = self._target_text(np.asarray(self.decode(predict(self.encode_inputs(table[:len(shown.rows)])))))
        return TextTable([*shown.columns, "prediction"], [r + [p] for r, p in zip(shown.rows, preds)])


@register_task("tabular-classification")
class TabularClassification(_TabularTask):
    """A table row -> one of ``classes``; cross-entropy loss, accuracy.

    Args:
        data: a :class:`~torchdeck.data.TabularDataset` with a categorical target.
    """

    blocks = ("table", "label")
    builtin_data = {"iris": ("iris", {}), "wine": ("wine", {}), "breast_cancer": ("breast_cancer", {})}
    target_kind = "categorical"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    def encode_targets(self, labels: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(labels), dtype=torch.int64)

    def decode(self, outputs: torch.Tensor) -> list[str]:
        """Logits (N, classes) -> class names."""
        return [self.classes[i] for i in outputs.argmax(dim=1).tolist()]

    def _target_text(self, targets: np.ndarray) -> list[str]:
        return [t if isinstance(t, str) else self.classes[int(t)] for t in targets]

    def head(self, in_features: int) -> nn.Module:
        return nn.Linear(in_features, len(self.classes))

    def loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def metrics(self) -> tuple[str, ...]:
        return ("accuracy",)


class Rescale(nn.Module):
    """``x * scale + shift`` with fixed buffers: lets a network output standardised values
    while the model as a whole (its loss, exports, predictions) speaks the target's units."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("shift", torch.tensor(float(shift)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error, in the target's units. pred, target: (N, 1)."""
    return torch.mean((pred - target) ** 2)


@register_task("tabular-regression")
class TabularRegression(_TabularTask):
    """A table row -> a number; mean-squared-error loss and metric, both in the target's units
    (the head ends in a :class:`Rescale` by the training targets' std and mean).

    Args:
        data: a :class:`~torchdeck.data.TabularDataset` with a continuous target.
    """

    blocks = ("table", "number")
    builtin_data = {"diabetes": ("diabetes", {})}
    target_kind = "continuous"

    def __init__(self, data: TabularDataset) -> None:
        super().__init__(data)
        _, y = data.split("train")
        self.target_mean = float(np.mean(y))
        self.target_std = float(np.std(y)) or 1.0

    def encode_targets(self, values: np.ndarray) -> torch.Tensor:
        """(N,) -> (N, 1) float32, the shape of the model's output."""
        return torch.as_tensor(np.asarray(values, np.float64), dtype=torch.float32).reshape(-1, 1)

    def decode(self, outputs: torch.Tensor) -> list[float]:
        return outputs.reshape(len(outputs), -1)[:, 0].tolist()

    def _target_text(self, targets: np.ndarray) -> list[str]:
        return [_cell(float(t)) for t in targets]

    def head(self, in_features: int) -> nn.Module:
        return nn.Sequential(nn.Linear(in_features, 1), Rescale(self.target_std, self.target_mean))

    def loss(self) -> nn.Module:
        return nn.MSELoss()

    def metrics(self) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...]:
        # A function, not a name: the metric registry (torchdeck.train) has no "mse" yet.
        return (mse,)
