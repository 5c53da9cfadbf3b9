"""Small built-in backbones that train in seconds on a CPU."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from torchdeck.models._base import register_backbone

__all__ = ["small_cnn", "mlp", "tabular_mlp", "TabularMLP", "embedding_size"]


def _positive_int(owner: str, field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {field} must be a positive integer, got {value!r}")


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_backbone("small_cnn")
def small_cnn(in_channels: int, width: int = 32) -> tuple[nn.Module, int]:
    """Three 3x3 conv blocks, one 2x downsampling, global average pooling.

    (B, C, H, W) -> (B, 2 * width); any H, W >= 2.
    """
    _positive_int("small_cnn", "width", width)
    body = nn.Sequential(_conv(in_channels, width), _conv(width, width), nn.MaxPool2d(2),
                         _conv(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return body, 2 * width


@register_backbone("mlp")
def mlp(in_channels: int, in_features: int = 64, hidden: int = 128) -> tuple[nn.Module, int]:
    """Flatten, then one hidden layer. (B, ...) with ``in_features`` values -> (B, hidden)."""
    del in_channels
    _positive_int("mlp", "in_features", in_features)
    _positive_int("mlp", "hidden", hidden)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(inplace=True)), hidden


def embedding_size(categories: int) -> int:
    """Width of a categorical column's embedding: grows like the square root of its number of
    categories (more categories can carry more distinctions), capped at 32."""
    return max(2, min(32, round(1.5 * math.sqrt(categories))))


class TabularMLP(nn.Module):
    """Embeddings for categorical columns, concatenated with the continuous ones, then an MLP.

    (B, n_cat + n_cont) float -> (B, hidden[-1]). The first ``n_cat`` input columns hold
    category codes (whole numbers in ``[0, cardinality)``, as floats so a batch is one tensor);
    the rest are continuous values, already standardised.
    """

    def __init__(self, n_columns: int, cardinalities: Sequence[int], hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.n_categorical = len(cardinalities)
        self.n_continuous = n_columns - self.n_categorical
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_size(c)) for c in cardinalities)
        width = sum(e.embedding_dim for e in self.embeddings) + self.n_continuous
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout else [])
            width = h
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = x[:, :self.n_categorical].long()
        parts = [emb(codes[:, j]) for j, emb in enumerate(self.embeddings)]
        parts.append(x[:, self.n_categorical:])
        return self.layers(torch.cat(parts, dim=1))


@register_backbone("tabular_mlp")
def tabular_mlp(in_channels: int, *, cardinalities: Sequence[int], hidden: Sequence[int] = (128, 64),
                dropout: float = 0.0) -> tuple[nn.Module, int]:
    """A :class:`TabularMLP` for ``in_channels`` columns, the first ``len(cardinalities)`` categorical.

    ``cardinalities`` comes from the data (a tabular task passes it); it has no default so a
    table is never read with its category codes taken for measurements.
    """
    _positive_int("tabular_mlp", "in_channels", in_channels)
    cardinalities = list(cardinalities)
    for c in cardinalities:
        _positive_int("tabular_mlp", "each cardinality", c)
    if len(cardinalities) > in_channels:
        raise ValueError(f"tabular_mlp: {len(cardinalities)} cardinalities for {in_channels} input columns")
    hidden = list(hidden)
    if not hidden:
        raise ValueError("tabular_mlp: hidden must name at least one layer width, got []")
    for h in hidden:
        _positive_int("tabular_mlp", "each hidden width", h)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"tabular_mlp: dropout must be in [0, 1), got {dropout!r}")
    body = TabularMLP(in_channels, cardinalities, hidden, float(dropout))
    return body, body.out_features
