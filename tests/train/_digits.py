"""Digits as flat tensors and a small, seeded MLP learner on them (shared by the callback tests)."""

from __future__ import annotations

import functools

import pytest
import torch

import torchdeck as td
from torchdeck import optim as O
from torchdeck.data import TensorLoader
from torchdeck.train import Learner


@functools.lru_cache(maxsize=1)
def digits_tensors() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train": (x, y), "valid": (x, y)}``: x (N, 64) float in [0, 1], y (N,) int64."""
    data = td.data.load("digits")
    out = {}
    for split in ("train", "valid"):
        x, y = data.split(split)
        out[split] = (torch.from_numpy(x).float().div_(255.0).flatten(1), torch.from_numpy(y))
    return out


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and a busy machine makes more threads far
    slower (they wait for each other); restored after the test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def digits_model(hidden: int = 32, dropout: float = 0.1, seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                                   torch.nn.Linear(hidden, 10))


def digits_learner(callbacks=(), *, batch_size: int = 128, n_train: int | None = None, n_valid: int | None = None,
                   hidden: int = 32, dropout: float = 0.1, optimizer=None, metrics=("accuracy",), epochs: int = 1,
                   shuffle: bool = True, seed: int = 0, data=None, **kwargs) -> Learner:
    """``n_train`` / ``n_valid`` take the first samples only (fewer batches, faster tests);
    ``data``: :func:`digits_tensors` already loaded (a child process gets them in a file)."""
    data = digits_tensors() if data is None else data
    (xt, yt), (xv, yv) = data["train"], data["valid"]
    xt, yt, xv, yv = xt[:n_train], yt[:n_train], xv[:n_valid], yv[:n_valid]
    model = digits_model(hidden, dropout, seed)
    loaders = {"train": TensorLoader(xt, yt, batch_size, shuffle=shuffle, seed=seed),
               "valid": TensorLoader(xv, yv, batch_size)}
    if optimizer is None:
        optimizer = O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(3e-3))
    elif callable(optimizer) and not isinstance(optimizer, O.Rule):
        optimizer = optimizer(model)
    return Learner(model, loaders, torch.nn.functional.cross_entropy, optimizer, callbacks=callbacks,
                   metrics=metrics, epochs=epochs, **kwargs)
