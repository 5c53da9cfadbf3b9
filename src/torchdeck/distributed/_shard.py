"""Loaders split across ranks: each rank sees its share of every epoch.

A training loader gives every rank the same number of equal batches (DDP runs one gradient
all-reduce per step on every rank: a rank with one batch more would wait for ever). Like
``DistributedSampler``, its order is padded by repeating its first samples up to a multiple of
the world size. A validation loader is split without padding (a repeated sample would count
twice in the metrics); ranks may then differ by one sample, which is fine, since validation
steps have no collective.

Rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of the epoch's order, in batches
of ``batch_size // W`` (at least 1). When ``W`` divides the batch size and the data set, the
ranks' batches ``i`` together are exactly batch ``i`` of the single-process run, so DDP's
mean of the ranks' gradients is that run's gradient.

A loader that augments each pass (``AugmentedBatches`` and the image-classification
``AugmentedLoader`` built on it) is split the same way: every rank draws the single process's
order and epoch seed and augments only its own positions, each sample with the seed a single
process would give it. So the ranks together make the single-process batch bit for bit, and
each pays for ``1 / W`` of the augmentation.

Which splitter a loader gets is looked up by its type (``SHARDERS``), most derived first.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from torchdeck.data import TensorLoader
from torchdeck.tasks._augmented import AugmentedBatches

__all__ = ["SHARDERS", "register_sharder", "shard_loader", "shard_positions", "rank_batch_size",
           "ShardedTensorLoader", "ShardedAugmentedBatches", "DistributedLoader", "ShardSampler",
           "RowShardedLoader", "is_sharded"]

Sharder = Callable[[Any, int, int, bool], Any]
SHARDERS: dict[type, Sharder] = {}


def register_sharder(loader_type: type) -> Callable[[Sharder], Sharder]:
    """Decorator: ``fn(loader, rank, world, training) -> loader`` for loaders of ``loader_type``."""
    def deco(fn: Sharder) -> Sharder:
        if loader_type in SHARDERS:
            raise ValueError(f"sharder for {loader_type.__name__} is registered twice")
        SHARDERS[loader_type] = fn
        return fn
    return deco


def _check_place(rank: int, world: int) -> None:
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"shard_loader: world must be a positive integer, got {world!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"shard_loader: rank must be an integer in [0, {world}), got {rank!r}")


def rank_batch_size(batch_size: int, world: int) -> int:
    """Samples per step on each rank: the global batch split evenly (at least one)."""
    return max(1, batch_size // world)


def shard_positions(n: int, rank: int, world: int, *, pad: bool) -> torch.Tensor:
    """Positions ``rank::world`` of an epoch of ``n`` samples; ``pad`` first extends the epoch
    cyclically to a multiple of ``world`` so that every rank gets as many (DistributedSampler's rule)."""
    positions = torch.arange(n)
    if pad and n % world:
        total = -(-n // world) * world
        positions = positions.repeat(-(-total // n))[:total]
    return positions[rank::world]


def _refuse_too_small(n: int, world: int, training: bool, what: str) -> None:
    # Every rank must have at least one validation batch: the epoch's metrics are all-reduced
    # and a rank without a batch would not know the shapes to send.
    if n < 1 or (not training and n < world):
        raise ValueError(f"shard_loader: the {what} has {n} samples, fewer than the {world} processes; "
                         f"give it at least {world} samples or start fewer processes")


class _EpochShard:
    """One rank's positions in an epoch of ``n`` samples, cut into this rank's batches; a
    subclass draws the epoch's order from its base loader and makes the batches."""

    base: Any
    rank: int
    world: int
    training: bool
    batch_size: int
    _positions: torch.Tensor

    def __init__(self, base: Any, n: int, rank: int, world: int, *, training: bool) -> None:
        _check_place(rank, world)
        _refuse_too_small(n, world, training, "loader")
        self.base, self.rank, self.world, self.training = base, rank, world, training
        self.batch_size = rank_batch_size(base.batch_size, world)
        self._positions = shard_positions(n, rank, world, pad=training)

    @property
    def generator(self) -> torch.Generator:
        # The base's own generator, not a copy: a checkpoint saves and restores it through here.
        return self.base.generator

    def __len__(self) -> int:
        n = len(self._positions)
        return n // self.batch_size if self.base.drop_last else -(-n // self.batch_size)

    def _batch_indices(self, order: torch.Tensor) -> Iterator[torch.Tensor]:
        """This rank's share of each batch of the epoch ``order`` (sample indices)."""
        mine = order[self._positions]
        for b in range(len(self)):
            yield mine[b * self.batch_size:(b + 1) * self.batch_size]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world={self.world}, training={self.training})"


class ShardedTensorLoader(_EpochShard):
    """One rank's share of a :class:`~torchdeck.data.TensorLoader`.

    The epoch's order is drawn from the base loader's own generator, exactly as the base
    would draw it: all ranks hold the same seeded generator, so they agree on the order
    without talking, the run matches the single-process one, and a checkpoint that saves
    ``generator`` resumes it.
    """

    base: TensorLoader

    def __init__(self, base: TensorLoader, rank: int, world: int, *, training: bool) -> None:
        super().__init__(base, len(base.x), rank, world, training=training)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        base = self.base
        n = len(base.x)
        order = torch.randperm(n, generator=base.generator) if base.shuffle else torch.arange(n)
        for idx in self._batch_indices(order):
            yield base.x[idx], base.y[idx]


class ShardedAugmentedBatches(_EpochShard):
    """One rank's share of an :class:`~torchdeck.tasks._augmented.AugmentedBatches` (or the
    image-classification ``AugmentedLoader``).

    Each pass draws the order and the epoch seed from the base's generator as the base would
    (``draw_epoch``), then augments only this rank's samples, sample ``i`` with
    ``epoch_seed + i`` (``batch``): the ranks' batches ``i`` together are the single-process
    batch ``i``, bit for bit, yet each rank augments only ``1 / W`` of it. Padding samples
    (training) repeat an earlier sample with its seed, so they repeat its augmentation too.
    """

    base: AugmentedBatches

    def __init__(self, base: AugmentedBatches, rank: int, world: int, *, training: bool) -> None:
        super().__init__(base, base.n, rank, world, training=training)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, epoch_seed = self.base.draw_epoch()
        for idx in self._batch_indices(order):
            yield self.base.batch(idx.tolist(), epoch_seed)


class ShardSampler(Sampler[int]):
    """Indices ``rank::world`` of ``range(n)``, in order, no padding (validation)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class DistributedLoader:
    """A ``torch.utils.data.DataLoader`` rebuilt on a per-rank sampler.

    Training: ``DistributedSampler`` (padded, reshuffled per pass: ``set_epoch`` is called with
    the number of passes made, which ``state_dict`` saves for checkpoints). Validation:
    :class:`ShardSampler` (no padding).
    """

    def __init__(self, base: DataLoader, rank: int, world: int, *, training: bool) -> None:
        _check_place(rank, world)
        dataset = base.dataset
        _refuse_too_small(len(dataset), world, training, "data set")
        if base.batch_size is None:
            raise ValueError("shard_loader: a DataLoader with batch_size=None (or its own batch_sampler) cannot "
                             "be split across processes; give it a batch_size")
        self.base, self.rank, self.world, self.training = base, rank, world, training
        shuffle = isinstance(base.sampler, torch.utils.data.RandomSampler)
        if training:
            # All ranks must draw the same seed: the base loader's seeded generator gives it
            # (torchdeck's loaders are seeded; an unseeded one draws from torch's global RNG,
            # which torchrun's ranks seed alike only if the script does).
            gen = base.generator
            seed = int(torch.randint(2**31 - 1, (), generator=gen)) if gen is not None else 0
            self.sampler: Sampler[int] = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                                            seed=seed, drop_last=False)
        else:
            self.sampler = ShardSampler(len(dataset), rank, world)
        self.passes = 0
        self.loader = DataLoader(
            dataset, batch_size=rank_batch_size(base.batch_size, world), sampler=self.sampler,
            num_workers=base.num_workers, collate_fn=base.collate_fn, pin_memory=base.pin_memory,
            drop_last=base.drop_last, timeout=base.timeout, worker_init_fn=base.worker_init_fn,
            persistent_workers=base.persistent_workers if base.num_workers > 0 else False,
            prefetch_factor=base.prefetch_factor if base.num_workers > 0 else None,
            generator=base.generator)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(self.passes)
        self.passes += 1
        return iter(self.loader)

    def state_dict(self) -> dict[str, int]:
        return {"passes": self.passes}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.passes = int(state["passes"])

    def __repr__(self) -> str:
        return f"DistributedLoader(rank={self.rank}, world={self.world}, training={self.training})"


class RowShardedLoader:
    """Any other loader of ``(x, y)`` batches: every rank makes the whole batch and keeps rows
    ``rank::world``. Correct for any loader whose ranks agree on the order (a seeded one),
    but each rank pays for the whole batch's loading and augmentation: register a sharder for
    a loader type that can skip the other ranks' samples.

    Training: a batch with fewer rows than ranks repeats its rows so every rank gets one
    (all ranks must step together). Validation: a rank left without rows skips that batch.
    """

    def __init__(self, base: Any, rank: int, world: int, *, training: bool) -> None:
        _check_place(rank, world)
        self.base, self.rank, self.world, self.training = base, rank, world, training

    @property
    def generator(self) -> Any:
        return getattr(self.base, "generator", None)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for x, y in self.base:
            rows = len(y)
            if self.training and rows < self.world:
                cycle = torch.arange(self.world) % rows
                x, y = x[cycle], y[cycle]
            elif rows <= self.rank:
                continue
            yield x[self.rank::self.world], y[self.rank::self.world]

    def __repr__(self) -> str:
        return f"RowShardedLoader({self.base!r}, rank={self.rank}, world={self.world})"


_SHARDED = (ShardedTensorLoader, ShardedAugmentedBatches, DistributedLoader, RowShardedLoader)


def is_sharded(loader: Any) -> bool:
    return isinstance(loader, _SHARDED)


@register_sharder(TensorLoader)
def _shard_tensor_loader(loader: TensorLoader, rank: int, world: int, training: bool) -> ShardedTensorLoader:
    return ShardedTensorLoader(loader, rank, world, training=training)


@register_sharder(AugmentedBatches)
def _shard_augmented(loader: AugmentedBatches, rank: int, world: int, training: bool) -> ShardedAugmentedBatches:
    return ShardedAugmentedBatches(loader, rank, world, training=training)


@register_sharder(DataLoader)
def _shard_data_loader(loader: DataLoader, rank: int, world: int, training: bool) -> DistributedLoader:
    return DistributedLoader(loader, rank, world, training=training)


def shard_loader(loader: Any, rank: int, world: int, *, training: bool) -> Any:
    """This rank's share of ``loader`` (see the module docstring); a sharded loader is returned as is."""
    _check_place(rank, world)
    if is_sharded(loader):
        return loader
    for cls in type(loader).__mro__:
        if cls in SHARDERS:
            return SHARDERS[cls](loader, rank, world, training)
    return RowShardedLoader(loader, rank, world, training=training)
