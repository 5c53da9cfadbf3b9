"""Shared helpers for the optimiser parity tests: a small model and seeded random gradients."""

from __future__ import annotations

import copy

import torch
from torch import nn


def small_model(dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype)


def twin(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def random_grads(params: list[torch.Tensor], gen: torch.Generator, scale: float = 1.0) -> list[torch.Tensor]:
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale for p in params]


def run_parity(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, m1: nn.Module, m2: nn.Module,
               steps: int, *, seed: int = 0, scale: float = 1.0, before_step=None) -> None:
    """Feed both optimisers the same seeded gradients for ``steps`` steps."""
    gen = torch.Generator().manual_seed(seed)
    p1, p2 = list(m1.parameters()), list(m2.parameters())
    for _ in range(steps):
        grads = random_grads(p1, gen, scale)
        for a, b, g in zip(p1, p2, grads):
            a.grad = g.clone()
            b.grad = g.clone()
        if before_step is not None:
            before_step(m1, m2)
        ours.step()
        theirs.step()


def assert_params_close(m1: nn.Module, m2: nn.Module, rtol: float, atol: float = 0.0) -> None:
    for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")
