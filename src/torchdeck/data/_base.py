"""In-memory data sets and the registry that finds them by name."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np

from torchdeck._registry import Registry

__all__ = ["ImageDataset", "DATASETS", "register_dataset", "load", "available", "seeded_split"]

# name -> fn(**options) -> data set
DATASETS = Registry("data set")
register_dataset = DATASETS.register


def available() -> list[str]:
    return DATASETS.names()


def load(name: str, **options: Any) -> Any:
    """A built-in data set by name: ``data.load("digits")``. Nothing is downloaded.

    An option the loader does not take is a ValueError naming it and the allowed ones (a
    TypeError from deep inside the call would name neither the data set nor the choices).
    """
    fn = DATASETS.lookup(name)
    params = inspect.signature(fn).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        allowed = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in options:
            if key not in allowed:
                raise ValueError(f"data.load({name!r}): unknown option {key!r}; allowed: "
                                 f"{', '.join(allowed) or 'none'}")
    return fn(**options)


def seeded_split(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random train/valid split that depends only on ``n``, the fraction and the seed."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, round(n * valid_fraction))
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Labelled images held in memory, with a fixed train/valid split.

    images: (N, H, W, C) uint8; labels: (N,) int64 class indices into ``classes``, or for
    multi-label data (N, len(classes)) float32 multi-hot (1 where the class is present).
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    train_idx: np.ndarray
    valid_idx: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images must be (N, H, W, C) uint8, got {self.images.shape} {self.images.dtype}")
        n, k = len(self.images), len(self.classes)
        if self.labels.shape not in ((n,), (n, k)):
            raise ValueError(f"{self.name}: labels must be ({n},) class indices or ({n}, {k}) multi-hot, got "
                             f"{self.labels.shape}")

    @property
    def multilabel(self) -> bool:
        """Whether each image has a set of classes (multi-hot labels), not one."""
        return self.labels.ndim == 2

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        idx = {"train": self.train_idx, "valid": self.valid_idx}.get(which)
        if idx is None:
            raise ValueError(f"{self.name}: unknown split {which!r}; allowed: train, valid")
        return self.images[idx], self.labels[idx]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        n, h, w, c = self.images.shape
        return (f"ImageDataset({self.name!r}, {n} images {h}x{w}x{c}, {len(self.classes)} classes, "
                f"train {len(self.train_idx)} / valid {len(self.valid_idx)})")
