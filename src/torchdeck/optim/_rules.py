"""The built-in rules. Each is a frozen dataclass of hyperparameters plus init/update_.

Semantics follow torch.optim where torch has the rule (so chains reproduce torch's
optimisers to rounding), written with torch's ``_foreach`` kernels: one kernel launch per
operation for the whole parameter list instead of one per tensor.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from torchdeck.optim._base import Rule, Tensors, hyper, register_rule

__all__ = ["ScaleLR", "SGD", "Momentum", "Adam", "WeightDecay", "ClipNorm", "AdamState", "MomentumState"]


def _zeros_like(params: Tensors) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros_like(p, memory_format=torch.preserve_format) for p in params)


def _step_counts(params: Tensors) -> tuple[torch.Tensor, ...]:
    # One count per parameter, as torch.optim keeps: a parameter that first gets a gradient
    # late (frozen, then thawed) starts at step 1. 0-d tensors (not ints) so the state saves
    # to safetensors and updates in place, also through the Optimizer's per-step selection.
    return tuple(torch.zeros((), dtype=torch.int64) for _ in params)


def _advance(counts: tuple[torch.Tensor, ...]) -> list[int]:
    """Add one to every count; the new counts as ints."""
    torch._foreach_add_(list(counts), 1)
    return torch.stack(counts).tolist()


def _per_param(values: list[float]) -> float | list[float]:
    # A single scalar when all parameters agree (the usual case) keeps foreach's scalar kernels.
    return values[0] if values.count(values[0]) == len(values) else values

def _adam_direction_(updates: list[torch.Tensor], mu: list[torch.Tensor], second: list[torch.Tensor], ts: list[int],
                     b1: float, b2: float, eps: float, lr: float) -> None:
    """``updates = lr / (1 - b1^t) * mu / (sqrt(second) / sqrt(1 - b2^t) + eps)``, written into
    ``updates`` (the spent gradients: a params-sized allocation costs more than the arithmetic
    on CPU). Adam, AMSGrad and AdaBelief differ only in their ``second`` moment."""
    torch._foreach_copy_(updates, second)
    torch._foreach_sqrt_(updates)
    torch._foreach_div_(updates, _per_param([math.sqrt(1.0 - b2**t) for t in ts]))
    torch._foreach_add_(updates, eps)
    torch._foreach_reciprocal_(updates)
    torch._foreach_mul_(updates, mu)
    torch._foreach_mul_(updates, _per_param([lr / (1.0 - b1**t) for t in ts]))



@register_rule
@dataclasses.dataclass(frozen=True)
class ScaleLR(Rule):
    """Multiply the updates by the learning rate. Usually the last rule of a chain."""

    name = "scale_lr"
    primary = "lr"
    lr: float = hyper(1e-3, ge=0.0, help="learning rate")

    def update_(self, updates, state, params):
        del params
        torch._foreach_mul_(updates, self.lr)
        return updates, state


@register_rule
@dataclasses.dataclass(frozen=True)
class SGD(ScaleLR):
    """Plain gradient descent (Optimisers.jl ``Descent``): ``p -= lr * g``."""

    name = "sgd"


def _velocity_(state: "MomentumState", updates: list[torch.Tensor], rho: float, keep: float) -> None:
    """torch.optim.SGD's momentum buffer, in place: the gradient itself on a parameter's first
    step, then ``v = rho * v + keep * g``. Shared by momentum and nesterov."""
    ts = _advance(state.count)
    first = [j for j, t in enumerate(ts) if t == 1]
    later = [j for j, t in enumerate(ts) if t != 1]
    if first:
        torch._foreach_copy_([state.velocity[j] for j in first], [updates[j] for j in first])
    if later:
        velocity = [state.velocity[j] for j in later]
        torch._foreach_mul_(velocity, rho)
        torch._foreach_add_(velocity, [updates[j] for j in later], alpha=keep)


class MomentumState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    velocity: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Momentum(Rule):
    """Heavy-ball momentum with torch.optim.SGD's semantics (velocity starts at the first grad).

    ``v = rho * v + (1 - dampening) * g``; update ``lr * v``.
    """

    name = "momentum"
    # rho first, so ``momentum(0.9)`` means what it says; the rate usually lives in scale_lr.
    rho: float = hyper(0.9, ge=0.0, lt=1.0, help="momentum coefficient")
    dampening: float = hyper(0.0, ge=0.0, le=1.0, help="fraction of the gradient held back")
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")

    def init(self, params):
        return MomentumState(_step_counts(params), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        _velocity_(state, updates, self.rho, 1.0 - self.dampening)
        return torch._foreach_mul(list(state.velocity), self.lr), state


class AdamState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    mu: tuple[torch.Tensor, ...]
    nu: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Adam(Rule):
    """Adam (Kingma & Ba, 2015) with bias correction, as torch.optim.Adam.

    ``lr`` defaults to 1.0 so that ``chain(adam(), scale_lr(3e-3))`` reads naturally;
    ``adam(lr=1e-3)`` on its own is torch's Adam.
    """

    name = "adam"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    b1: float = hyper(0.9, ge=0.0, lt=1.0, help="decay of the first moment")
    b2: float = hyper(0.999, ge=0.0, lt=1.0, help="decay of the second moment")
    eps: float = hyper(1e-8, gt=0.0, help="added to the denominator")

    def init(self, params):
        return AdamState(_step_counts(params), _zeros_like(params), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        ts = _advance(state.count)
        mu, nu = list(state.mu), list(state.nu)
        torch._foreach_lerp_(mu, updates, 1.0 - self.b1)
        torch._foreach_mul_(nu, self.b2)
        torch._foreach_addcmul_(nu, updates, updates, value=1.0 - self.b2)
        _adam_direction_(updates, mu, nu, ts, self.b1, self.b2, self.eps, self.lr)
        return updates, state


@register_rule
@dataclasses.dataclass(frozen=True)
class WeightDecay(Rule):
    """Add ``decay * p`` to the updates. Before an adaptive rule it is L2 regularisation;
    after it (and before ``scale_lr``) it is decoupled weight decay as in AdamW."""

    name = "weight_decay"
    primary = "decay"
    decay: float = hyper(5e-4, ge=0.0, help="weight decay coefficient")

    def update_(self, updates, state, params):
        torch._foreach_add_(updates, list(params), alpha=self.decay)
        return updates, state


@register_rule
@dataclasses.dataclass(frozen=True)
class ClipNorm(Rule):
    """Rescale all updates together so their global L2 norm is at most ``max_norm``
    (torch.nn.utils.clip_grad_norm_'s rule, without a host sync)."""

    name = "clip_norm"
    primary = "max_norm"
    max_norm: float = hyper(1.0, gt=0.0, help="largest global norm let through")

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        torch._foreach_mul_(updates, clip_coefficient(updates, self.max_norm))
        return updates, state


def clip_coefficient(tensors: Tensors, max_norm: float) -> torch.Tensor:
    """``min(1, max_norm / (global L2 norm + 1e-6))`` as a 0-d tensor on the first tensor's device.

    Shared by :class:`ClipNorm` and the fused lowering of chains that start with it, so both
    scale by the very same number.
    """
    device = tensors[0].device
    norms = [n.to(device) for n in torch._foreach_norm(tensors)]
    total = torch.linalg.vector_norm(torch.stack(norms))
    return torch.clamp(max_norm / (total + 1e-6), max=1.0)

