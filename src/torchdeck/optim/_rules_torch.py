"""torch.optim's non-Adam rules: ``l2``, ``nesterov``, ``rmsprop``, ``adagrad``, ``adadelta``, ``rprop``.

Each reproduces the torch optimiser of the same name to rounding when chained as torch
composes it: ``chain(l2(wd), <rule>, scale_lr(lr))`` is ``torch.optim.<Rule>(lr=lr,
weight_decay=wd)``. The rules' own ``lr`` defaults to 1.0 so the rate lives in ``scale_lr``
(as for ``adam``); ``rprop`` is the exception: its ``lr`` is the initial step size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch

from torchdeck.optim._base import Rule, hyper, register_rule
from torchdeck.optim._rules import MomentumState, _advance, _per_param, _step_counts, _velocity_, _zeros_like

__all__ = ["L2", "Nesterov", "RMSprop", "Adagrad", "Adadelta", "Rprop",
           "RMSpropState", "AdagradState", "AdadeltaState", "RpropState", "flag"]


def flag(default: bool, *, help: str = "") -> Any:
    """A yes/no hyperparameter (``centered``); refuses anything but ``True`` / ``False``."""
    return dataclasses.field(default=default, metadata={"flag": True, "help": help})


@register_rule
@dataclasses.dataclass(frozen=True)
class L2(Rule):
    """Coupled L2 regularisation: add ``decay * p`` to the gradient.

    Put it *before* the adaptive rule: ``chain(l2(1e-4), rmsprop(), scale_lr(1e-2))`` is
    ``torch.optim.RMSprop(lr=1e-2, weight_decay=1e-4)``, and likewise for SGD, Adam, Adamax,
    Adagrad, Adadelta, NAdam and RAdam. For decoupled decay (AdamW) use ``weight_decay``
    after the adaptive rule. A rule of its own, not an alias of ``weight_decay``, so a chain
    says which of the two the user meant.
    """

    name = "l2"
    primary = "decay"
    decay: float = hyper(5e-4, ge=0.0, help="L2 coefficient added to the gradient")

    def update_(self, updates, state, params):
        torch._foreach_add_(updates, list(params), alpha=self.decay)
        return updates, state


@register_rule
@dataclasses.dataclass(frozen=True)
class Nesterov(Rule):
    """Nesterov momentum as ``torch.optim.SGD(nesterov=True)``.

    ``v = rho * v + g`` (``v`` starts at the first gradient); update ``lr * (g + rho * v)``.
    There is no dampening: torch refuses nesterov with dampening, and the look-ahead it
    approximates has none.
    """

    name = "nesterov"
    rho: float = hyper(0.9, ge=0.0, lt=1.0, help="momentum coefficient")
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")

    def init(self, params):
        return MomentumState(_step_counts(params), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        _velocity_(state, updates, self.rho, 1.0)
        torch._foreach_add_(updates, list(state.velocity), alpha=self.rho)
        if self.lr != 1.0:  # a multiply by 1.0 is exact: skip the pass
            torch._foreach_mul_(updates, self.lr)
        return updates, state


class RMSpropState(NamedTuple):
    square_avg: tuple[torch.Tensor, ...]
    # Empty unless the rule that made the state is centered / has momentum (as torch keeps
    # them): plain RMSprop then costs one params-sized buffer, not three.
    grad_avg: tuple[torch.Tensor, ...]
    momentum_buffer: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class RMSprop(Rule):
    """RMSprop as ``torch.optim.RMSprop`` (Hinton's lecture 6e), optionally centered and with momentum.

    ``s = alpha * s + (1 - alpha) * g^2``; centered: ``s - mean(g)^2`` in place of ``s``;
    ``d = g / (sqrt(s) + eps)``; with momentum ``b = momentum * b + d`` (from zero) and the
    update is ``lr * b``, otherwise ``lr * d``.

    Whether the state holds the centered average and the momentum buffer is decided when it
    is made (``init``), as in torch: turning ``centered`` or ``momentum`` on later is refused.
    """

    name = "rmsprop"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    alpha: float = hyper(0.99, ge=0.0, le=1.0, help="decay of the squared-gradient average")
    eps: float = hyper(1e-8, gt=0.0, help="added to the denominator")
    momentum: float = hyper(0.0, ge=0.0, lt=1.0, help="momentum of the normalised update (0: none)")
    centered: bool = flag(False, help="divide by the gradient's variance estimate instead of its mean square")

    def _checked(self, f: dataclasses.Field, v: Any) -> Any:
        if f.metadata.get("flag"):
            if not isinstance(v, bool):
                raise ValueError(f"{self.name}: {f.name} must be True or False, got {v!r}")
            return v
        return super()._checked(f, v)

    def init(self, params):
        return RMSpropState(_zeros_like(params), _zeros_like(params) if self.centered else (),
                            _zeros_like(params) if self.momentum > 0 else ())

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        for needed, have, what in ((self.centered, state.grad_avg, "centered=True"),
                                   (self.momentum > 0, state.momentum_buffer, f"momentum={self.momentum}")):
            if needed and len(have) != len(updates):
                raise ValueError(f"rmsprop: {what} needs a state made with it; this state was made without "
                                 f"(set it before the first step)")
        square_avg = list(state.square_avg)
        torch._foreach_mul_(square_avg, self.alpha)
        torch._foreach_addcmul_(square_avg, updates, updates, value=1.0 - self.alpha)
        if self.centered:
            grad_avg = list(state.grad_avg)
            torch._foreach_lerp_(grad_avg, updates, 1.0 - self.alpha)
            denom = torch._foreach_addcmul(square_avg, grad_avg, grad_avg, value=-1.0)
            torch._foreach_sqrt_(denom)
        else:
            denom = torch._foreach_sqrt(square_avg)
        torch._foreach_add_(denom, self.eps)
        if self.momentum > 0:
            buf = list(state.momentum_buffer)
            torch._foreach_mul_(buf, self.momentum)
            torch._foreach_addcdiv_(buf, updates, denom)
            torch._foreach_copy_(updates, buf)  # the returned updates must not alias the state
        else:
            torch._foreach_div_(updates, denom)
        if self.lr != 1.0:
            torch._foreach_mul_(updates, self.lr)
        return updates, state


class AdagradState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    sum: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Adagrad(Rule):
    """Adagrad (Duchi et al., 2011) as ``torch.optim.Adagrad``.

    ``s += g^2`` (``s`` starts at ``initial_accumulator_value``); update
    ``lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)``.
    """

    name = "adagrad"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    lr_decay: float = hyper(0.0, ge=0.0, help="the rate is divided by 1 + (t - 1) * lr_decay")
    initial_accumulator_value: float = hyper(0.0, ge=0.0, help="starting value of the squared-gradient sum")
    eps: float = hyper(1e-10, gt=0.0, help="added to the denominator")

    def init(self, params):
        start = self.initial_accumulator_value
        return AdagradState(_step_counts(params),
                            tuple(torch.full_like(p, start, memory_format=torch.preserve_format) for p in params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        ts = _advance(state.count)
        total = list(state.sum)
        torch._foreach_addcmul_(total, updates, updates)
        denom = torch._foreach_sqrt(total)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_div_(updates, denom)
        torch._foreach_mul_(updates, _per_param([self.lr / (1.0 + (t - 1) * self.lr_decay) for t in ts]))
        return updates, state


class AdadeltaState(NamedTuple):
    square_avg: tuple[torch.Tensor, ...]
    delta_avg: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Adadelta(Rule):
    """Adadelta (Zeiler, 2012) as ``torch.optim.Adadelta``; ``lr`` 1.0 is torch's default too.

    ``s = rho * s + (1 - rho) * g^2``; ``d = sqrt(a + eps) / sqrt(s + eps) * g``;
    ``a = rho * a + (1 - rho) * d^2``; update ``lr * d``. No step count: nothing depends on it.
    """

    name = "adadelta"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 as in the paper and torch)")
    rho: float = hyper(0.9, ge=0.0, le=1.0, help="decay of the running averages")
    eps: float = hyper(1e-6, gt=0.0, help="added inside both square roots")

    def init(self, params):
        return AdadeltaState(_zeros_like(params), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        square_avg, delta_avg = list(state.square_avg), list(state.delta_avg)
        torch._foreach_mul_(square_avg, self.rho)
        torch._foreach_addcmul_(square_avg, updates, updates, value=1.0 - self.rho)
        std = torch._foreach_add(square_avg, self.eps)
        torch._foreach_sqrt_(std)
        delta = torch._foreach_add(delta_avg, self.eps)
        torch._foreach_sqrt_(delta)
        torch._foreach_div_(delta, std)
        torch._foreach_mul_(delta, updates)
        torch._foreach_mul_(delta_avg, self.rho)
        torch._foreach_addcmul_(delta_avg, delta, delta, value=1.0 - self.rho)
        if self.lr != 1.0:
            torch._foreach_mul_(delta, self.lr)
        return delta, state


class RpropState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    prev: tuple[torch.Tensor, ...]
    step_size: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Rprop(Rule):
    """Resilient backpropagation as ``torch.optim.Rprop``: per-element step sizes driven by sign agreement.

    Where ``g * g_prev > 0`` the step grows by ``eta_plus``, where ``< 0`` it shrinks by
    ``eta_minus`` (and that element skips this step), clamped to ``[step_min, step_max]``;
    the update is ``sign(g) * step``.

    ``lr`` is the *initial step size* (torch's meaning), not a multiplier: the update does
    not scale with it, so do not follow ``rprop`` with ``scale_lr`` (that rescales the steps
    but not the clamps, which torch's Rprop never does). ``optim.Optimizer(params,
    rprop(lr=1e-2))`` alone is ``torch.optim.Rprop(params, lr=1e-2)``; like torch, changing
    ``lr`` later only affects parameters that have not stepped yet.
    """

    name = "rprop"
    lr: float = hyper(1e-2, ge=0.0, help="initial step size (not a multiplier: no scale_lr after rprop)")
    eta_minus: float = hyper(0.5, gt=0.0, lt=1.0, help="step shrink factor when the gradient's sign flips")
    eta_plus: float = hyper(1.2, gt=1.0, help="step growth factor when the gradient's sign holds")
    step_min: float = hyper(1e-6, ge=0.0, help="smallest step size")
    step_max: float = hyper(50.0, gt=0.0, help="largest step size")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_step_range()

    def _check_step_range(self) -> None:
        if self.step_min > self.step_max:
            raise ValueError(f"rprop: step_min must be <= step_max, got step_min={self.step_min!r} > "
                             f"step_max={self.step_max!r}")

    def replace(self, **hyper: Any) -> "Rprop":
        new = super().replace(**hyper)
        new._check_step_range()  # replace checks fields one by one; this check spans two
        return new

    def init(self, params):
        return RpropState(_step_counts(params), _zeros_like(params),
                          tuple(torch.full_like(p, self.lr, memory_format=torch.preserve_format) for p in params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        ts = _advance(state.count)
        # torch sizes a parameter's steps from the lr current at its first step (it may start late).
        for j, t in enumerate(ts):
            if t == 1:
                state.step_size[j].fill_(self.lr)
        factors = torch._foreach_mul(updates, list(state.prev))
        torch._foreach_sign_(factors)
        # sign(g * g_prev) -> eta_plus / eta_minus / 1, filled in the parameters' dtype (a
        # torch.where over Python floats would round the etas to float32).
        for factor, g in zip(factors, updates):
            flipped = factor < 0
            factor.masked_fill_(factor > 0, self.eta_plus)
            factor.masked_fill_(flipped, self.eta_minus)
            factor.masked_fill_(factor == 0, 1.0)
            g.masked_fill_(flipped, 0.0)  # a flipped element waits one step (and forgets its gradient)
        step_size = list(state.step_size)
        torch._foreach_mul_(step_size, factors)
        torch._foreach_clamp_min_(step_size, self.step_min)
        torch._foreach_clamp_max_(step_size, self.step_max)
        torch._foreach_copy_(list(state.prev), updates)
        torch._foreach_sign_(updates)
        torch._foreach_mul_(updates, step_size)
        return updates, state
