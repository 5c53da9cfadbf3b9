"""torch.optim's Adam relatives: ``amsgrad``, ``adamax``, ``nadam``, ``radam``, and ``adamw`` (a named chain).

Same conventions as ``adam``: ``lr`` defaults to 1.0 so the rate lives in ``scale_lr``;
coupled L2 is ``l2`` before the rule, decoupled decay (torch's ``decoupled_weight_decay=True``
and AdamW) is ``weight_decay`` after it and before ``scale_lr``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Iterator, NamedTuple

import torch

from torchdeck.optim._base import Rule, format_number, hyper, register_rule
from torchdeck.optim._chain import Chain
from torchdeck.optim._rules import (Adam, ScaleLR, WeightDecay, _adam_direction_, _advance, _per_param, _step_counts,
                                    _zeros_like)

__all__ = ["AMSGrad", "Adamax", "NAdam", "RAdam", "AdamW", "AMSGradState", "AdamaxState", "NAdamState", "RAdamState"]


class AMSGradState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    mu: tuple[torch.Tensor, ...]
    nu: tuple[torch.Tensor, ...]
    nu_max: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class AMSGrad(Rule):
    """AMSGrad (Reddi et al., 2018) as ``torch.optim.Adam(amsgrad=True)``: Adam normalised by
    the running maximum of the second moment, so the effective step never grows."""

    name = "amsgrad"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    b1: float = hyper(0.9, ge=0.0, lt=1.0, help="decay of the first moment")
    b2: float = hyper(0.999, ge=0.0, lt=1.0, help="decay of the second moment")
    eps: float = hyper(1e-8, gt=0.0, help="added to the denominator")

    def init(self, params):
        return AMSGradState(_step_counts(params), _zeros_like(params), _zeros_like(params), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        ts = _advance(state.count)
        mu, nu, nu_max = list(state.mu), list(state.nu), list(state.nu_max)
        torch._foreach_lerp_(mu, updates, 1.0 - self.b1)
        torch._foreach_mul_(nu, self.b2)
        torch._foreach_addcmul_(nu, updates, updates, value=1.0 - self.b2)
        torch._foreach_maximum_(nu_max, nu)
        _adam_direction_(updates, mu, nu_max, ts, self.b1, self.b2, self.eps, self.lr)
        return updates, state


class AdamaxState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    mu: tuple[torch.Tensor, ...]
    u_inf: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Adamax(Rule):
    """Adamax (Kingma & Ba, 2015, sec. 7) as ``torch.optim.Adamax``: Adam with the infinity norm.

    ``u = max(b2 * u, |g| + eps)``; update ``lr / (1 - b1^t) * mu / u``.
    """

    name = "adamax"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    b1: float = hyper(0.9, ge=0.0, lt=1.0, help="decay of the first moment")
    b2: float = hyper(0.999, ge=0.0, lt=1.0, help="decay of the infinity norm")
    eps: float = hyper(1e-8, gt=0.0, help="added to the denominator")

    def init(self, params):
        return AdamaxState(_step_counts(params), _zeros_like(params), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        ts = _advance(state.count)
        mu, u_inf = list(state.mu), list(state.u_inf)
        torch._foreach_lerp_(mu, updates, 1.0 - self.b1)
        torch._foreach_mul_(u_inf, self.b2)
        torch._foreach_abs_(updates)
        torch._foreach_add_(updates, self.eps)
        torch._foreach_maximum_(u_inf, updates)
        torch._foreach_copy_(updates, mu)
        torch._foreach_div_(updates, u_inf)
        torch._foreach_mul_(updates, _per_param([self.lr / (1.0 - self.b1**t) for t in ts]))
        return updates, state


class NAdamState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    # Product of the momentum schedule mu_1 ... mu_t; kept (not recomputed from t) because
    # b1 and momentum_decay may change between steps, as in torch.
    mu_product: tuple[torch.Tensor, ...]
    mu: tuple[torch.Tensor, ...]
    nu: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class NAdam(Rule):
    """NAdam (Dozat, 2016) as ``torch.optim.NAdam``: Adam with Nesterov momentum and a warming momentum schedule.

    ``mu_t = b1 * (1 - 0.5 * 0.96^(t * momentum_decay))``; the update mixes the gradient and
    the first moment, each bias-corrected by the product of the schedule, over
    ``sqrt(nu / (1 - b2^t)) + eps``. torch's ``decoupled_weight_decay=True`` (NAdamW) is
    ``chain(nadam(), weight_decay(wd), scale_lr(lr))``.
    """

    name = "nadam"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    b1: float = hyper(0.9, ge=0.0, lt=1.0, help="decay of the first moment")
    b2: float = hyper(0.999, ge=0.0, lt=1.0, help="decay of the second moment")
    eps: float = hyper(1e-8, gt=0.0, help="added to the denominator")
    momentum_decay: float = hyper(4e-3, ge=0.0, help="how fast the momentum schedule warms up")

    def init(self, params):
        # float64 whatever the parameters' dtype: the product of ~0.9s shrinks fast and its
        # complement sets the step size.
        ones = tuple(torch.ones((), dtype=torch.float64, device=p.device) for p in params)
        return NAdamState(_step_counts(params), ones, _zeros_like(params), _zeros_like(params))

    def _mu(self, t: int) -> float:
        return self.b1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        ts = _advance(state.count)
        products = list(state.mu_product)
        torch._foreach_mul_(products, [self._mu(t) for t in ts])
        prods = torch.stack(products).tolist()
        mu, nu = list(state.mu), list(state.nu)
        torch._foreach_lerp_(mu, updates, 1.0 - self.b1)
        torch._foreach_mul_(nu, self.b2)
        torch._foreach_addcmul_(nu, updates, updates, value=1.0 - self.b2)
        denom = torch._foreach_div(nu, _per_param([1.0 - self.b2**t for t in ts]))
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, self.eps)
        # updates = lr * ((1 - mu_t) / (1 - prod_t) * g + mu_{t+1} / (1 - prod_t * mu_{t+1}) * mu) / denom
        torch._foreach_div_(updates, denom)
        torch._foreach_mul_(updates, _per_param([self.lr * (1.0 - self._mu(t)) / (1.0 - p) for t, p in zip(ts, prods)]))
        torch._foreach_addcdiv_(updates, mu, denom, _per_param([self.lr * self._mu(t + 1) / (1.0 - p * self._mu(t + 1))
                                                                for t, p in zip(ts, prods)]))
        return updates, state


class RAdamState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    mu: tuple[torch.Tensor, ...]
    nu: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class RAdam(Rule):
    """RAdam (Liu et al., 2020) as ``torch.optim.RAdam``: Adam whose adaptive step is switched
    on, and rectified, once the second moment's variance is tractable (``rho_t > 5``);
    before that the update is the bias-corrected momentum. torch's
    ``decoupled_weight_decay=True`` is ``chain(radam(), weight_decay(wd), scale_lr(lr))``.
    """

    name = "radam"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    b1: float = hyper(0.9, ge=0.0, lt=1.0, help="decay of the first moment")
    b2: float = hyper(0.999, ge=0.0, lt=1.0, help="decay of the second moment")
    eps: float = hyper(1e-8, gt=0.0, help="added to the denominator")

    def init(self, params):
        return RAdamState(_step_counts(params), _zeros_like(params), _zeros_like(params))

    def _rectification(self, t: int) -> float | None:
        """The variance rectification factor at step ``t``, or None while it is undefined."""
        rho_inf = 2.0 / (1.0 - self.b2) - 1.0
        rho_t = rho_inf - 2.0 * t * self.b2**t / (1.0 - self.b2**t)
        if rho_t <= 5.0:
            return None
        return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        ts = _advance(state.count)
        mu, nu = list(state.mu), list(state.nu)
        torch._foreach_lerp_(mu, updates, 1.0 - self.b1)
        torch._foreach_mul_(nu, self.b2)
        torch._foreach_addcmul_(nu, updates, updates, value=1.0 - self.b2)
        rects = [self._rectification(t) for t in ts]
        on = [j for j, r in enumerate(rects) if r is not None]
        off = [j for j, r in enumerate(rects) if r is None]
        if on:  # lr * r_t * sqrt(1 - b2^t) / (1 - b1^t) * mu / (sqrt(nu) + eps)
            u = [updates[j] for j in on]
            torch._foreach_copy_(u, [nu[j] for j in on])
            torch._foreach_sqrt_(u)
            torch._foreach_add_(u, self.eps)
            torch._foreach_reciprocal_(u)
            torch._foreach_mul_(u, [mu[j] for j in on])
            torch._foreach_mul_(u, _per_param([self.lr * rects[j] * math.sqrt(1.0 - self.b2 ** ts[j])
                                               / (1.0 - self.b1 ** ts[j]) for j in on]))
        if off:  # lr / (1 - b1^t) * mu
            u = [updates[j] for j in off]
            torch._foreach_copy_(u, [mu[j] for j in off])
            torch._foreach_mul_(u, _per_param([self.lr / (1.0 - self.b1 ** ts[j]) for j in off]))
        return updates, state


@register_rule
class AdamW(Chain):
    """AdamW (Loshchilov & Hutter, 2019) as ``torch.optim.AdamW``: a named chain.

    ``adamw(lr, b1, b2, eps, decay)`` *is* ``chain(adam(lr=1.0, b1, b2, eps),
    weight_decay(decay), scale_lr(lr))`` — ``.rules`` holds exactly those three, so anything
    that recognises chains by their rules (a fused lowering) sees it — with its own name in
    specs, code and messages, and torch's five hyperparameters as its param-group keys
    (adam's own ``lr`` stays 1.0). Inside a larger chain it is flattened to its three rules.
    """

    name = "adamw"
    # flat hyperparameter -> (rule index, that rule's field); adam's lr is not exposed.
    _KEYS = {"lr": (2, "lr"), "b1": (0, "b1"), "b2": (0, "b2"), "eps": (0, "eps"), "decay": (1, "decay")}
    _DEFAULTS = {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "decay": 1e-2}

    def __init__(self, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                 decay: float = 1e-2) -> None:
        with _as_adamw():
            rules = (Adam(lr=1.0, b1=b1, b2=b2, eps=eps), WeightDecay(decay), ScaleLR(lr))
        super().__init__(*rules)
        object.__setattr__(self, "_keys", dict(self._KEYS))

    def replace(self, **hyper: Any) -> "AdamW":
        unknown = sorted(set(hyper) - set(self._KEYS))
        if unknown:
            raise ValueError(f"adamw: unknown hyperparameter {unknown[0]!r}; allowed: {', '.join(self._KEYS)}")
        with _as_adamw():
            replaced = super().replace(**hyper)
        # Chain.replace builds a plain Chain; keep the name (its attributes are the same).
        new = object.__new__(AdamW)
        new.__dict__.update(replaced.__dict__)
        return new

    def to_spec(self) -> dict[str, Any]:
        return {self.name: self.hyper()}

    def to_code(self, module: str = "O") -> str:
        return Rule.to_code(self, module)

    def __str__(self) -> str:
        changed = [f"{k}={format_number(v)}" for k, v in self.hyper().items() if v != self._DEFAULTS[k]]
        return f"adamw({', '.join(changed)})" if changed else "adamw"

    def __repr__(self) -> str:
        return f"AdamW({', '.join(f'{k}={v!r}' for k, v in self.hyper().items())})"


@contextlib.contextmanager
def _as_adamw() -> Iterator[None]:
    """Re-word a member rule's error as adamw's: ``scale_lr: lr must be ...`` -> ``adamw: lr must be ...``
    (the three rules name their fields as adamw does)."""
    try:
        yield
    except ValueError as e:
        raise ValueError(f"adamw: {str(e).split(': ', 1)[-1]}") from None
