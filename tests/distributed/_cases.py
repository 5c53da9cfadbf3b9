"""Learners shared by the torchrun child and the single-process references of test_ddp.py.

Every case is built from seeds only, so each rank and the reference build the same thing.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset

from torchdeck import optim as O
from torchdeck.data import TensorLoader, loader
from torchdeck.train import Learner

N_TRAIN, N_VALID, BATCH = 32, 11, 8  # 11 validation samples: not divisible by 2 ranks
METRICS = ("accuracy", "f1_macro", "miou")
CASES = ("tensor", "dataloader")


def data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + N_VALID, 4, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def model() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def _learner(loaders) -> Learner:
    # clip_norm reads the whole gradient: it agrees only if DDP's averaged gradient is the full batch's.
    rule = O.chain(O.clip_norm(0.5), O.adam(), O.scale_lr(1e-2))
    return Learner(model(), loaders, torch.nn.functional.cross_entropy, rule, metrics=METRICS)


def learner(case: str) -> Learner:
    """The learner each rank runs (the DDP callback then splits its loaders)."""
    (xt, yt), (xv, yv) = data()
    if case == "tensor":
        return _learner({"train": TensorLoader(xt, yt, BATCH, shuffle=True, seed=5),
                         "valid": TensorLoader(xv, yv, BATCH)})
    return _learner({"train": loader(TensorDataset(xt, yt), BATCH, shuffle=True, seed=5, num_workers=0),
                     "valid": loader(TensorDataset(xv, yv), BATCH, shuffle=False, num_workers=0)})


class _Passes(Sampler[int]):
    """DistributedSampler for one process, its epoch set to the pass number (as the DDP run's)."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler, self.passes = sampler, 0

    def __iter__(self):
        self.sampler.set_epoch(self.passes)
        self.passes += 1
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def reference(case: str, seed: int | None = None) -> Learner:
    """The single-process run of batch BATCH that two ranks of BATCH / 2 must match. For the
    DataLoader case, the order is torch's own DistributedSampler's for one process with the
    ``seed`` the DDP run drew."""
    if case == "tensor":
        return learner("tensor")
    (xt, yt), (xv, yv) = data()
    train = TensorDataset(xt, yt)
    sampler = _Passes(DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=seed))
    return _learner({"train": DataLoader(train, BATCH, sampler=sampler),
                     "valid": DataLoader(TensorDataset(xv, yv), BATCH)})
