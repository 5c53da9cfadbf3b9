"""Train/valid splits: random by seed, stratified by label, by folder, by a column's values.

Every split returns ``(train_idx, valid_idx)``: sorted int64 index arrays, disjoint, that
together cover the samples they were asked about. A random split depends only on its
arguments (never on global RNG state), so the same seed gives the same split anywhere.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from torchdeck._registry import Registry
from torchdeck.data._base import seeded_split

__all__ = ["SPLITS", "random_split", "stratified_split", "split_by_values", "column_split", "TRAIN_VALUES",
           "VALID_VALUES"]

# What a split column may hold (compared lower-cased and stripped). Booleans follow fastai's
# ``is_valid`` convention: true means the row is for validation.
TRAIN_VALUES = frozenset({"train", "training", "false", "f", "no", "n", "0", "0.0"})
VALID_VALUES = frozenset({"valid", "validation", "val", "true", "t", "yes", "y", "1", "1.0"})

# name -> fn(labels, valid_fraction, seed) -> (train_idx, valid_idx): the splits that need
# nothing but the labels, so any data set can offer them by name.
SPLITS = Registry("split")


def _check_fraction(valid_fraction: float) -> float:
    if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, (int, float)) or not (
            0.0 < valid_fraction < 1.0):
        raise ValueError(f"valid_fraction must be a number in (0, 1), got {valid_fraction!r}")
    return float(valid_fraction)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def random_split(n: int, valid_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``round(n * valid_fraction)`` (at least 1) random samples for validation, the rest for training.

    The same permutation as the built-in data sets (``seeded_split``), so one seed means one split.
    """
    valid_fraction, seed = _check_fraction(valid_fraction), _check_seed(seed)
    if n < 2:
        raise ValueError(f"a train/valid split needs at least 2 samples, got {n}")
    if round(n * valid_fraction) >= n:
        raise ValueError(f"valid_fraction {valid_fraction!r} of {n} samples leaves none for training")
    return seeded_split(n, valid_fraction, seed)


def stratified_split(labels: Sequence[int] | np.ndarray, valid_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random split that keeps each class's share: ``round(n_c * valid_fraction)`` of class ``c``
    go to validation, at least 1 and at most ``n_c - 1`` when the class has 2 or more samples
    (a class of one sample trains).
    """
    valid_fraction, seed = _check_fraction(valid_fraction), _check_seed(seed)
    labels = np.asarray(labels)
    if len(labels) < 2:
        raise ValueError(f"a train/valid split needs at least 2 samples, got {len(labels)}")
    rng = np.random.default_rng(seed)
    valid = []
    for c in np.unique(labels):  # sorted: the draw order, hence the split, is fixed by the seed
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        k = min(len(members) - 1, max(1, round(len(members) * valid_fraction)))
        valid.append(rng.permutation(members)[:k])
    valid_idx = np.sort(np.concatenate(valid)) if valid else np.zeros(0, np.int64)
    if len(valid_idx) == 0:
        raise ValueError("a stratified split needs a class with at least 2 samples; every class has one")
    train_idx = np.setdiff1d(np.arange(len(labels)), valid_idx)
    return train_idx.astype(np.int64), valid_idx.astype(np.int64)


@SPLITS.register("random")
def _random_over_labels(labels: Sequence[int] | np.ndarray, valid_fraction: float,
                        seed: int) -> tuple[np.ndarray, np.ndarray]:
    return random_split(len(labels), valid_fraction, seed)


SPLITS.register("stratified")(stratified_split)


def split_by_values(values: Sequence[str], train: str, valid: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the samples whose value is ``train`` and of those whose value is ``valid``
    (e.g. the top folder of each file); other values are in neither.
    """
    values = np.asarray(values, dtype=object)
    return np.flatnonzero(values == train).astype(np.int64), np.flatnonzero(values == valid).astype(np.int64)


def column_split(values: Sequence[str | None], where: str, column: str,
                 row_name: Callable[[int], str] = lambda i: f"row {i}") -> tuple[np.ndarray, np.ndarray]:
    """Split by a column marking each row: ``train`` / ``valid`` (also ``training``,
    ``validation``, ``val``) or a boolean ``is_valid`` (true / false, 1 / 0, yes / no).

    Raises a ValueError naming the first rows whose value is neither, and the values allowed.
    """
    marks = [None if v is None else v.strip().lower() for v in values]
    bad = [i for i, v in enumerate(marks) if v not in TRAIN_VALUES and v not in VALID_VALUES]
    if bad:
        shown = ", ".join(f"{row_name(i)} holds {values[i]!r}" for i in bad[:5])
        raise ValueError(f"{where}: split column {column!r} must mark each row train or valid; {len(bad)} rows do "
                         f"not ({shown}{', ...' if len(bad) > 5 else ''}); allowed (any case): "
                         f"{', '.join(sorted(TRAIN_VALUES))} for train, {', '.join(sorted(VALID_VALUES))} for valid")
    is_valid = np.array([v in VALID_VALUES for v in marks], bool)
    return np.flatnonzero(~is_valid).astype(np.int64), np.flatnonzero(is_valid).astype(np.int64)
