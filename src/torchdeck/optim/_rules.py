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


def _step_count() -> torch.Tensor:
    # A 0-d tensor (not an int) so the state saves to safetensors and updates in place.
    return torch.zeros((), dtype=torch.int64)


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


class MomentumState(NamedTuple):
    count: torch.Tensor
    velocity: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Momentum(Rule):
    """Heavy-ball momentum with torch.optim.SGD's semantics (velocity starts at the first grad).

    ``v = rho * v + (1 - dampening) * g``; update ``lr * v``.
    """

    name = "momentum"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    rho: float = hyper(0.9, ge=0.0, lt=1.0, help="momentum coefficient")
    dampening: float = hyper(0.0, ge=0.0, le=1.0, help="fraction of the gradient held back")

    def init(self, params):
        return MomentumState(_step_count(), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        state.count.add_(1)
        velocity = list(state.velocity)
        if int(state.count) == 1:
            torch._foreach_copy_(velocity, updates)
        else:
            torch._foreach_mul_(velocity, self.rho)
            torch._foreach_add_(velocity, updates, alpha=1.0 - self.dampening)
        return torch._foreach_mul(velocity, self.lr), state


class AdamState(NamedTuple):
    count: torch.Tensor
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
        return AdamState(_step_count(), _zeros_like(params), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        state.count.add_(1)
        t = int(state.count)
        mu, nu = list(state.mu), list(state.nu)
        torch._foreach_lerp_(mu, updates, 1.0 - self.b1)
        torch._foreach_mul_(nu, self.b2)
        torch._foreach_addcmul_(nu, updates, updates, value=1.0 - self.b2)
        denom = torch._foreach_sqrt(nu)
        torch._foreach_div_(denom, math.sqrt(1.0 - self.b2**t))
        torch._foreach_add_(denom, self.eps)
        out = torch._foreach_div(mu, denom)
        torch._foreach_mul_(out, self.lr / (1.0 - self.b1**t))
        return out, state


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
        device = updates[0].device
        norms = [n.to(device) for n in torch._foreach_norm(updates)]
        total = torch.linalg.vector_norm(torch.stack(norms))
        coef = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_(updates, coef)
        return updates, state

