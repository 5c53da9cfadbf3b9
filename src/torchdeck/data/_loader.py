"""A loader for tensors already in memory: batches by slicing, no per-sample collate."""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["TensorLoader"]


class TensorLoader:
    """Yields ``(x[idx], y[idx])`` batches; reshuffles each pass from its own seeded generator,
    so the order depends only on ``seed`` and the number of passes made.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, *, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False) -> None:
        if len(x) != len(y):
            raise ValueError(f"TensorLoader: x has {len(x)} samples, y has {len(y)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"TensorLoader: batch_size must be a positive integer, got {batch_size!r}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min(n, (b + 1) * self.batch_size))
            if order is None:
                yield self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                yield self.x[idx], self.y[idx]
