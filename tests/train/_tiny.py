"""A tiny, fast learner for the training-loop tests."""

from __future__ import annotations

import torch

from torchdeck import optim as O
from torchdeck.data import TensorLoader
from torchdeck.train import Learner


def tiny_data(n_train=20, n_valid=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_valid, 4, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes, learnable
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def tiny_learner(callbacks=(), *, n_train=20, n_valid=10, batch_size=8, epochs=1, loss_fn=None, metrics=("accuracy",)):
    (xt, yt), (xv, yv) = tiny_data(n_train, n_valid)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    loaders = {"train": TensorLoader(xt, yt, batch_size, shuffle=True), "valid": TensorLoader(xv, yv, batch_size)}
    return Learner(model, loaders, loss_fn or torch.nn.functional.cross_entropy, O.chain(O.adam(), O.scale_lr(1e-2)),
                   callbacks=callbacks, metrics=metrics, epochs=epochs)
