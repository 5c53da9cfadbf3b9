"""Training batches made by augmenting each sample afresh every pass, for tasks whose target
moves with the image (a mask, keypoints) or does not (a set of labels).

The seeding is image-classification's (:class:`~torchdeck.tasks.AugmentedLoader`): each pass
draws the order and then one epoch seed from the loader's ``generator``; training sample ``i``
(its index in the training split, not its place in the batch) is augmented with seed
``epoch_seed + i``. So a run replays exactly from ``seed``, a sample looks different every
epoch, and a checkpoint that saves ``generator`` resumes the same augmentations.

A pass is two steps, ``draw_epoch`` (order and epoch seed) then ``batch`` per slice of the
order, so a data-parallel rank (``torchdeck.distributed.shard_loader``) can draw the same epoch
as a single process and augment only its own slice of each global batch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

__all__ = ["AugmentedBatches", "checked_image", "same_size"]

_SEED_BOUND = 2**63 - 1

# (training indices, their seeds) -> one encoded batch (inputs, targets)
BatchMaker = Callable[[Sequence[int], Sequence[int]], tuple[torch.Tensor, torch.Tensor]]


class AugmentedBatches:
    """An iterable of ``make_batch(indices, seeds)`` over ``n`` training samples, reshuffled
    and re-seeded every pass; the same interface as :class:`~torchdeck.data.TensorLoader`.

    Args:
        n: number of training samples.
        make_batch: ``(indices, seeds) -> (inputs, targets)``, augmenting sample
            ``indices[k]`` with ``seeds[k]`` and encoding the batch.
        batch_size: samples per batch (the last one may be smaller unless ``drop_last``).
        seed: seeds ``generator``, the only source of randomness.
    """

    n: int
    make_batch: BatchMaker
    batch_size: int
    shuffle: bool
    drop_last: bool
    generator: torch.Generator

    def __init__(self, n: int, make_batch: BatchMaker, batch_size: int = 64, *, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"AugmentedBatches: batch_size must be a positive integer, got {batch_size!r}")
        self.n = int(n)
        self.make_batch = make_batch
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def draw_epoch(self) -> tuple[torch.Tensor, int]:
        """This pass's order of the samples and its epoch seed, drawn from ``generator`` in
        that order (the contract a sharded copy replays: every rank draws the same pair)."""
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        epoch_seed = int(torch.randint(_SEED_BOUND, (), generator=self.generator, dtype=torch.int64))
        return order, epoch_seed

    def batch(self, indices: Sequence[int], epoch_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``indices``, each augmented with ``epoch_seed + index``, encoded as one batch.
        Whichever batch (or rank) a sample lands in, its augmentation is the same."""
        indices = [int(i) for i in indices]
        return self.make_batch(indices, [epoch_seed + i for i in indices])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, epoch_seed = self.draw_epoch()
        for b in range(len(self)):
            yield self.batch(order[b * self.batch_size:min(self.n, (b + 1) * self.batch_size)].tolist(), epoch_seed)


def checked_image(out: Any, channels: int) -> np.ndarray:
    """The augmented image, refused unless it is still H×W×C uint8 (the task scales and
    normalises itself, so a pipeline ending in Normalize would be normalised twice)."""
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != channels:
        got = f"{type(out).__name__} {getattr(out, 'dtype', '')} {tuple(getattr(out, 'shape', ()))}".strip()
        raise ValueError(f"augment must give uint8 images like its input (the task scales and normalises them "
                         f"itself: leave normalize out), got {got}")
    return out


def same_size(task: str, images: Sequence[np.ndarray]) -> np.ndarray:
    """The batch's images stacked; one size for all, or a ValueError naming augment."""
    sizes = sorted({im.shape[:2] for im in images})
    if len(sizes) > 1:
        raise ValueError(f"{task}: augment gives images of different sizes ({sizes}); end it with resize or a "
                         "fixed-size crop")
    return np.stack(images)
