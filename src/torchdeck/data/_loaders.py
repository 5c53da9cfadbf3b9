"""torch DataLoaders with defaults that suit the machine and a seeded, reproducible order.

Defaults, each overridable:

- ``num_workers``: 0 for a data set of fewer than ``4 * batch_size`` samples (starting worker
  processes would cost more than they save), else one per CPU this process may use (the
  node's CPUs shared among the ``LOCAL_WORLD_SIZE`` processes torchrun started there), less
  one for the training loop, between 1 and 8.
- ``pin_memory``: when CUDA is available (page-locked batches copy to the GPU asynchronously).
- ``persistent_workers``: when there are workers (they then start once, not every epoch).

The order is reproducible: shuffling draws from a ``torch.Generator`` seeded by ``seed``, never
from the global RNG. The workers' seeds come from the same generator: torch (>= 1.9) seeds
each worker's torch, ``random`` and NumPy generators from a base seed it draws there plus the
worker id, so random transforms in workers draw differently per worker, yet identically run
after run. No ``worker_init_fn`` is needed for that, and none is set.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["loader", "default_num_workers", "MAX_WORKERS"]

MAX_WORKERS = 8
_TINY_BATCHES = 4  # below this many batches, workers are not worth starting


def _usable_cpus() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, cpus // local)


def default_num_workers(n_samples: int, batch_size: int) -> int:
    """Loader worker processes for ``n_samples`` in batches of ``batch_size`` (see the module docstring)."""
    if n_samples < _TINY_BATCHES * batch_size:
        return 0
    return max(1, min(MAX_WORKERS, _usable_cpus() - 1))


class _Mapped(Dataset):
    """``transform(dataset[i])``: a per-sample transform that runs in the loader's workers."""

    def __init__(self, dataset: Any, transform: Callable[[Any], Any]) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return self.transform(self.dataset[i])


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"loader: {field} must be a positive integer, got {value!r}")
    return int(value)


def _split_subset(dataset: Any, split: str) -> Subset:
    indices = {"train": getattr(dataset, "train_idx", None), "valid": getattr(dataset, "valid_idx", None)}
    if split not in indices:
        raise ValueError(f"loader: split must be 'train', 'valid' or null, got {split!r}")
    if indices[split] is None:
        raise ValueError(f"loader: split={split!r} needs a data set with train_idx and valid_idx; "
                         f"{type(dataset).__name__} has none")
    return Subset(dataset, [int(i) for i in indices[split]])


def loader(dataset: Any, batch_size: int = 64, shuffle: bool | None = None, *, split: str | None = None,
           seed: int = 0, num_workers: int | None = None, pin_memory: bool | None = None,
           persistent_workers: bool | None = None, drop_last: bool = False,
           transform: Callable[[Any], Any] | None = None,
           collate_fn: Callable[[list[Any]], Any] | None = None) -> DataLoader:
    """A ``torch.utils.data.DataLoader`` over a map-style data set, with the defaults above.

    Args:
        dataset: anything with ``len()`` and ``dataset[i]`` (e.g. ``data.image_folder(...)``,
            whose samples are ``(image (H, W, 3) uint8, label)``; batches then are
            ``(uint8 (B, H, W, 3), int64 (B,))`` tensors).
        split: ``"train"`` or ``"valid"`` to load only that split (the data set's
            ``train_idx`` / ``valid_idx``); ``None`` loads every sample.
        shuffle: a new seeded order each epoch; by default only for ``split="train"``.
        seed: seeds the order and the workers' RNGs; the global RNG plays no part.
        transform: ``transform(sample) -> sample``, applied in the workers.
    """
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise ValueError(f"loader: dataset must support len() and dataset[i], got {type(dataset).__name__}; "
                         "wrap arrays with torch.utils.data.TensorDataset")
    batch_size = _positive_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"loader: seed must be a non-negative integer, got {seed!r}")
    if split is not None:
        dataset = _split_subset(dataset, split)
    if transform is not None:
        if not callable(transform):
            raise ValueError(f"loader: transform must be callable, got {transform!r}")
        dataset = _Mapped(dataset, transform)
    if len(dataset) == 0:
        raise ValueError(f"loader: the data set{f' split {split!r}' if split else ''} is empty")
    if num_workers is None:
        num_workers = default_num_workers(len(dataset), batch_size)
    elif isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise ValueError(f"loader: num_workers must be a non-negative integer or null, got {num_workers!r}")
    if persistent_workers and num_workers == 0:
        raise ValueError("loader: persistent_workers=True needs num_workers > 0")
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=split == "train" if shuffle is None else bool(shuffle),
        num_workers=int(num_workers),
        pin_memory=torch.cuda.is_available() if pin_memory is None else bool(pin_memory),
        persistent_workers=num_workers > 0 if persistent_workers is None else bool(persistent_workers),
        drop_last=drop_last, collate_fn=collate_fn, generator=torch.Generator().manual_seed(int(seed)))
