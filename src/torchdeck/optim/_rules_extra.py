"""Rules torch.optim lacks (Lion, AdaBelief, LAMB) and the gradient-control rules
(sign decay, value clipping, accumulation, skipping non-finite steps).

Each follows its paper's update equations (or Optimisers.jl's definition for the control
rules), written with torch's ``_foreach`` kernels like the rules in ``_rules.py``. As there,
``lr`` defaults to 1.0 so the rate lives in ``scale_lr``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch

from torchdeck.optim._base import Rule, hyper, register_rule
from torchdeck.optim._rules import Adam, AdamState, _adam_direction_, _advance, _step_counts, _zeros_like

__all__ = [
    "Lion", "AdaBelief", "Lamb", "SignDecay", "ClipValue", "Accumulate", "SkipNonfinite",
    "LionState", "AdaBeliefState", "AccumulateState", "SkipNonfiniteState",
]


class LionState(NamedTuple):
    mu: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Lion(Rule):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    ``c = b1 * m + (1 - b1) * g``; update ``lr * sign(c)``; then ``m = b2 * m + (1 - b2) * g``.
    The paper's decoupled weight decay is ``chain(lion(), weight_decay(wd), scale_lr(lr))``.
    Lion's steps have unit size per coordinate, so it wants a rate 3-10x below Adam's.
    """

    name = "lion"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    b1: float = hyper(0.9, ge=0.0, lt=1.0, help="weight of the momentum in the update direction")
    b2: float = hyper(0.99, ge=0.0, lt=1.0, help="decay of the momentum")

    def init(self, params):
        return LionState(_zeros_like(params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        mu = list(state.mu)
        # The direction needs the old momentum and the momentum update needs the gradient:
        # one new tensor per parameter keeps both exact (solving one from the other after an
        # in-place update would round, and a rounding can flip a sign).
        direction = torch._foreach_lerp(mu, updates, 1.0 - self.b1)
        torch._foreach_lerp_(mu, updates, 1.0 - self.b2)
        torch._foreach_sign_(direction)
        if self.lr != 1.0:
            torch._foreach_mul_(direction, self.lr)
        return direction, state


class AdaBeliefState(NamedTuple):
    count: tuple[torch.Tensor, ...]
    mu: tuple[torch.Tensor, ...]
    # The paper's s: the EMA of (g - m)^2, how far the gradient strays from its "belief" m.
    s: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class AdaBelief(Rule):
    """AdaBelief (Zhuang et al. 2020), Algorithm 2 of the paper.

    ``m = b1 m + (1 - b1) g``; ``s = b2 s + (1 - b2) (g - m)^2 + eps``;
    update ``lr * m_hat / (sqrt(s_hat) + eps)`` with ``m_hat = m / (1 - b1^t)``,
    ``s_hat = s / (1 - b2^t)``. ``eps`` defaults to 1e-16 as in the authors' code and
    Optimisers.jl (it enters s every step, so it is much smaller than Adam's).
    """

    name = "adabelief"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    b1: float = hyper(0.9, ge=0.0, lt=1.0, help="decay of the first moment")
    b2: float = hyper(0.999, ge=0.0, lt=1.0, help="decay of the belief (centred second moment)")
    eps: float = hyper(1e-16, gt=0.0, help="added to s every step and to the denominator")

    def init(self, params):
        return AdaBeliefState(_step_counts(params), _zeros_like(params), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        ts = _advance(state.count)
        mu, s = list(state.mu), list(state.s)
        torch._foreach_lerp_(mu, updates, 1.0 - self.b1)
        # The gradient is spent after this: keep g - m in its tensors.
        torch._foreach_sub_(updates, mu)
        torch._foreach_mul_(s, self.b2)
        torch._foreach_addcmul_(s, updates, updates, value=1.0 - self.b2)
        torch._foreach_add_(s, self.eps)
        _adam_direction_(updates, mu, s, ts, self.b1, self.b2, self.eps, self.lr)
        return updates, state


@register_rule
@dataclasses.dataclass(frozen=True)
class Lamb(Rule):
    """LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning"), Algorithm 2.

    ``r = m_hat / (sqrt(v_hat) + eps) + weight_decay * p`` (Adam's direction plus decoupled
    decay); update ``lr * ||p|| / ||r|| * r`` per tensor, with the trust ratio 1 where either
    norm is 0 (a zero-initialised bias still moves). The state is Adam's.
    """

    name = "lamb"
    lr: float = hyper(1.0, ge=0.0, help="learning rate (1.0 leaves scaling to scale_lr)")
    b1: float = hyper(0.9, ge=0.0, lt=1.0, help="decay of the first moment")
    b2: float = hyper(0.999, ge=0.0, lt=1.0, help="decay of the second moment")
    eps: float = hyper(1e-6, gt=0.0, help="added to the denominator")
    # Inside the rule, not a separate weight_decay rule: the decay enters the trust ratio.
    weight_decay: float = hyper(0.0, ge=0.0, help="decoupled weight decay, inside the trust ratio")

    def init(self, params):
        return AdamState(_step_counts(params), _zeros_like(params), _zeros_like(params))

    def update_(self, updates, state, params):
        if not updates:
            return updates, state
        # Made per call, not kept on the rule: replace() copies a rule's __dict__, so a
        # cached Adam would keep stale betas after adjust().
        updates, state = Adam(b1=self.b1, b2=self.b2, eps=self.eps).update_(updates, state, params)
        params = list(params)
        if self.weight_decay:
            torch._foreach_add_(updates, params, alpha=self.weight_decay)
        device = updates[0].device
        p_norm = torch.stack([n.to(device) for n in torch._foreach_norm(params)])
        u_norm = torch.stack([n.to(device) for n in torch._foreach_norm(updates)])
        # All ratios in one small kernel and no host sync; where() drops the 0/0 and x/0 lanes.
        ratio = torch.where((p_norm > 0) & (u_norm > 0), p_norm / u_norm, torch.ones_like(p_norm)) * self.lr
        torch._foreach_mul_(updates, [r.to(u.device) for r, u in zip(ratio.unbind(), updates)])
        return updates, state


@register_rule
@dataclasses.dataclass(frozen=True)
class SignDecay(Rule):
    """Add ``decay * sign(p)`` to the updates (Optimisers.jl ``SignDecay``): L1 regularisation,
    the gradient of ``decay * ||p||_1``, when it comes before the other rules of a chain."""

    name = "sign_decay"
    primary = "decay"
    decay: float = hyper(1e-3, ge=0.0, help="L1 penalty coefficient")

    def update_(self, updates, state, params):
        if not updates:
            return updates, state
        torch._foreach_add_(updates, torch._foreach_sign(list(params)), alpha=self.decay)
        return updates, state


@register_rule
@dataclasses.dataclass(frozen=True)
class ClipValue(Rule):
    """Clamp every update element to ``[-delta, delta]`` (Optimisers.jl ``ClipGrad``,
    torch.nn.utils.clip_grad_value_). NaN stays NaN: pair with ``skip_nonfinite``."""

    name = "clip_value"
    primary = "delta"
    delta: float = hyper(10.0, gt=0.0, help="largest absolute value let through")

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        torch._foreach_clamp_min_(updates, -self.delta)
        torch._foreach_clamp_max_(updates, self.delta)
        return updates, state


class AccumulateState(NamedTuple):
    # Calls since the last emitted update (0-d int64; one for the whole rule, since the rule
    # emits for all parameters at once).
    calls: torch.Tensor
    sums: tuple[torch.Tensor, ...]


@register_rule
@dataclasses.dataclass(frozen=True)
class Accumulate(Rule):
    """Gradient accumulation (Optimisers.jl ``AccumGrad``): ``chain(accumulate(n), rule)``
    applies ``rule`` to the mean of every ``n`` gradients.

    The first ``n - 1`` calls add the gradients to the state and return ``None`` (no update:
    the chain stops, so the rules after it neither see the gradient nor advance their step
    counts, and the optimiser leaves the parameters); the ``n``-th returns the mean and resets.
    Lowering ``n`` by ``adjust`` mid-cycle emits the mean of what was summed at the next call.
    """

    name = "accumulate"
    primary = "n"
    n: int = hyper(1, ge=1, help="gradients averaged per update")
    may_skip = True

    def _checked(self, f: dataclasses.Field, v: Any) -> Any:
        v = super()._checked(f, v)
        # The base check takes any number in range; a count must be whole (4.0 from a JSON
        # form is 4, 2.5 is refused).
        if f.type in ("int", int):
            if not float(v).is_integer():
                raise ValueError(f"{self.name}: {f.name} must be a whole number >= 1, got {v!r}")
            v = int(v)
        return v

    def init(self, params):
        return AccumulateState(torch.zeros((), dtype=torch.int64), _zeros_like(params))

    def update_(self, updates, state, params):
        del params
        # In place: the optimiser keeps the state it passed in when it selected a subset of it.
        state.calls.add_(1)
        calls = int(state.calls)
        if calls < self.n:
            torch._foreach_add_(list(state.sums), updates)
            return None, state
        # Build the mean in the incoming tensors, so the updates never alias the state, and
        # zero the sums so the state reads "nothing accumulated". Divide by the calls actually
        # summed, not n: they differ on the call after adjust() lowered n mid-cycle.
        if calls > 1:
            torch._foreach_add_(updates, list(state.sums))
            torch._foreach_div_(updates, float(calls))
            torch._foreach_zero_(list(state.sums))
        state.calls.zero_()
        return updates, state


class SkipNonfiniteState(NamedTuple):
    skipped: torch.Tensor  # 0-d int64: how many calls were skipped so far


@register_rule
@dataclasses.dataclass(frozen=True)
class SkipNonfinite(Rule):
    """Skip the whole step when any update holds NaN or Inf, counting skips in the state.

    Put it first in a chain: the rules after it keep their state on a skipped step and the
    optimiser leaves the parameters.
    """

    name = "skip_nonfinite"
    may_skip = True

    def init(self, params):
        del params
        return SkipNonfiniteState(torch.zeros((), dtype=torch.int64))

    def update_(self, updates, state, params):
        del params
        if not updates:
            return updates, state
        if _all_finite(updates):
            return updates, state
        state.skipped.add_(1)
        return None, state


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether no tensor holds NaN or Inf; one host sync in the usual (finite) case."""
    device = tensors[0].device
    # A finite sum means every element is finite, and summing is the cheapest full pass (an
    # isfinite mask or a max-abs norm ran 20-40x slower on CPU here).
    sums = torch.stack([t.sum().to(device) for t in tensors])
    if bool(torch.isfinite(sums).all()):
        return True
    # A non-finite sum may only be an overflow of large finite values: ask the extremes,
    # which cannot overflow (and are NaN when the tensor holds one).
    ends = [torch.stack(torch.aminmax(t)).to(device) for t in tensors if t.numel()]
    return bool(torch.isfinite(torch.cat(ends)).all())
