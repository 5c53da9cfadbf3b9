"""Closed-form counterparts of torch.optim.lr_scheduler's stepped schedulers.

Each gives the absolute value (the lr) at step ``t`` (t = 0 is the first step), equal to the
``lr`` torch's scheduler has set before the (t+1)-th ``optimizer.step()``. torch computes
some of these by repeated multiplication; here each is a closed form, so resuming at any
step gives the same value as running up to it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from torchdeck.schedules._base import Schedule, check_flag, check_number, check_steps, register_schedule
from torchdeck.schedules._core import _steps

__all__ = ["StepDecay", "MultiStep", "ExpDecay", "Polynomial", "CosineWarmRestarts", "Cyclic", "OneCycle"]


def _positive(owner: str, field: str, value: Any) -> float:
    v = check_number(owner, field, value, minimum=None)
    if v <= 0:
        raise ValueError(f"{owner}: {field} must be > 0, got {value!r}")
    return v


def _choice(owner: str, field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{owner}: {field} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@register_schedule
@dataclasses.dataclass(frozen=True)
class StepDecay(Schedule):
    """``start * gamma ** (t // step_size)`` (torch's StepLR)."""

    name = "step_decay"
    start: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        check_steps(self.name, "step_size", self.step_size, allow_none=False)
        object.__setattr__(self, "gamma", _positive(self.name, "gamma", self.gamma))

    def values(self, ts):
        return self.start * self.gamma ** np.floor_divide(_steps(ts), self.step_size)


@register_schedule
@dataclasses.dataclass(frozen=True)
class MultiStep(Schedule):
    """``start`` times ``gamma`` once for each milestone reached (torch's MultiStepLR)."""

    name = "multi_step"
    start: float
    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        ms = self.milestones
        ok = isinstance(ms, (list, tuple)) and all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in ms
        ) and all(a < b for a, b in zip(ms, ms[1:]))
        if not ok:
            raise ValueError(f"{self.name}: milestones must be a list of increasing positive integers, got {ms!r}")
        object.__setattr__(self, "milestones", tuple(ms))
        object.__setattr__(self, "gamma", _positive(self.name, "gamma", self.gamma))

    def values(self, ts):
        n = np.searchsorted(np.asarray(self.milestones, dtype=np.float64), _steps(ts), side="right")
        return self.start * self.gamma ** n.astype(np.float64)

    def to_spec(self) -> dict[str, Any]:
        return {self.name: {"start": self.start, "milestones": list(self.milestones), "gamma": self.gamma}}


@register_schedule
@dataclasses.dataclass(frozen=True)
class ExpDecay(Schedule):
    """``start * gamma ** t`` (torch's ExponentialLR)."""

    name = "exp_decay"
    start: float
    gamma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        object.__setattr__(self, "gamma", _positive(self.name, "gamma", self.gamma))

    def values(self, ts):
        return self.start * self.gamma ** _steps(ts)


@register_schedule
@dataclasses.dataclass(frozen=True)
class Polynomial(Schedule):
    """``end + (start - end) * (1 - min(t, total_steps) / total_steps) ** power``.

    With ``end = 0`` this is torch's PolynomialLR (total_iters = total_steps) in its closed form.
    """

    name = "polynomial"
    start: float
    total_steps: int
    power: float = 1.0
    end: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        check_steps(self.name, "total_steps", self.total_steps, allow_none=False)
        object.__setattr__(self, "power", check_number(self.name, "power", self.power))
        object.__setattr__(self, "end", check_number(self.name, "end", self.end))

    @property
    def length(self) -> int:
        return self.total_steps

    def values(self, ts):
        frac = 1.0 - np.minimum(_steps(ts), self.total_steps) / self.total_steps
        return self.end + (self.start - self.end) * frac ** self.power


@register_schedule
@dataclasses.dataclass(frozen=True)
class CosineWarmRestarts(Schedule):
    """Cosine from ``start`` to ``end`` over ``period`` steps, restarting; each period ``mult``
    times the last (torch's CosineAnnealingWarmRestarts, T_0 = period, T_mult = mult,
    eta_min = end). Integer steps only."""

    name = "cosine_warm_restarts"
    start: float
    end: float
    period: int
    mult: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        object.__setattr__(self, "end", check_number(self.name, "end", self.end))
        check_steps(self.name, "period", self.period, allow_none=False)
        check_steps(self.name, "mult", self.mult, allow_none=False)

    def values(self, ts):
        ts = _steps(ts)
        bad = ts != np.floor(ts)
        if np.any(bad):
            raise ValueError(f"{self.name}: steps must be integers, got {float(ts[bad].flat[0])!r}")
        t = ts.astype(np.int64)
        if self.mult == 1:
            t_cur, t_i = t % self.period, np.full(t.shape, self.period, dtype=np.int64)
        else:
            # Restart boundaries: period * (mult**n - 1) / (mult - 1); a handful up to max(t).
            top = int(t.max()) if t.size else 0
            starts, lengths = [0], [self.period]
            while starts[-1] + lengths[-1] <= top:
                starts.append(starts[-1] + lengths[-1])
                lengths.append(lengths[-1] * self.mult)
            n = np.searchsorted(np.asarray(starts, dtype=np.int64), t, side="right") - 1
            t_cur, t_i = t - np.asarray(starts, dtype=np.int64)[n], np.asarray(lengths, dtype=np.int64)[n]
        return self.end + (self.start - self.end) * (1 + np.cos(np.pi * t_cur / t_i)) / 2


@register_schedule
@dataclasses.dataclass(frozen=True)
class Cyclic(Schedule):
    """Triangular cycles between ``low`` and ``high``: ``up`` steps up, ``down`` (default
    ``up``) steps down (torch's CyclicLR with cycle_momentum=False).

    ``triangular2`` halves the height each cycle; ``exp_range`` scales it by ``gamma ** t``.
    """

    name = "cyclic"
    low: float
    high: float
    up: int
    down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0

    MODES = ("triangular", "triangular2", "exp_range")

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", check_number(self.name, "low", self.low))
        object.__setattr__(self, "high", check_number(self.name, "high", self.high))
        if self.high < self.low:
            raise ValueError(f"{self.name}: high must be >= low ({self.low!r}), got {self.high!r}")
        check_steps(self.name, "up", self.up, allow_none=False)
        check_steps(self.name, "down", self.down, allow_none=True)
        _choice(self.name, "mode", self.mode, self.MODES)
        object.__setattr__(self, "gamma", _positive(self.name, "gamma", self.gamma))

    def values(self, ts):
        ts = _steps(ts)
        up = float(self.up)
        down = float(self.down) if self.down is not None else up
        total = up + down
        ratio = up / total
        cycle = np.floor(1 + ts / total)
        x = 1.0 + ts / total - cycle
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        height = (self.high - self.low) * scale
        if self.mode == "triangular":
            return self.low + height * 1.0
        if self.mode == "triangular2":
            return self.low + height * (1 / (2.0 ** (cycle - 1)))
        return self.low + height * self.gamma ** ts


@register_schedule
@dataclasses.dataclass(frozen=True)
class OneCycle(Schedule):
    """The 1cycle policy (torch's OneCycleLR, lr only): from ``max_lr / div_factor`` up to
    ``max_lr`` over ``pct_start`` of ``total_steps``, then down to
    ``max_lr / div_factor / final_div_factor`` (with ``three_phase``: back to the initial lr
    by ``2 * pct_start``, then down). Holds the final value from step ``total_steps - 1`` on.
    """

    name = "one_cycle"
    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_lr", check_number(self.name, "max_lr", self.max_lr))
        check_steps(self.name, "total_steps", self.total_steps, allow_none=False)
        p = check_number(self.name, "pct_start", self.pct_start, minimum=None)
        if not 0 < p < 1:
            raise ValueError(f"{self.name}: pct_start must be in (0, 1), got {self.pct_start!r}")
        object.__setattr__(self, "pct_start", p)
        _choice(self.name, "anneal", self.anneal, ("cos", "linear"))
        object.__setattr__(self, "div_factor", _positive(self.name, "div_factor", self.div_factor))
        object.__setattr__(self, "final_div_factor", _positive(self.name, "final_div_factor", self.final_div_factor))
        check_flag(self.name, "three_phase", self.three_phase)
        # torch divides by each phase's width; a warm-up ending at step 0 would divide by 0.
        if p * self.total_steps <= 1:
            raise ValueError(f"{self.name}: pct_start * total_steps must be > 1 (a warm-up of more than one step), "
                             f"got {p!r} * {self.total_steps!r}")
        if self.three_phase and p >= 0.5:
            raise ValueError(f"{self.name}: pct_start must be < 0.5 with three_phase (up, down, then anneal), got {p!r}")

    @property
    def length(self) -> int:
        return self.total_steps

    def values(self, ts):
        ts = np.minimum(_steps(ts), self.total_steps - 1)
        initial = self.max_lr / self.div_factor
        low = initial / self.final_div_factor
        n, p = self.total_steps, self.pct_start
        if self.three_phase:
            phases = [(float(p * n) - 1, initial, self.max_lr), (float(2 * p * n) - 2, self.max_lr, initial),
                      (n - 1, initial, low)]
        else:
            phases = [(float(p * n) - 1, initial, self.max_lr), (n - 1, self.max_lr, low)]
        out = np.empty(ts.shape)
        todo = np.ones(ts.shape, dtype=bool)
        start_step = 0.0
        for i, (end_step, a, b) in enumerate(phases):
            mask = todo if i == len(phases) - 1 else todo & (ts <= end_step)
            pct = (ts[mask] - start_step) / (end_step - start_step)
            if self.anneal == "cos":
                out[mask] = b + (a - b) / 2.0 * (np.cos(math.pi * pct) + 1)
            else:
                out[mask] = (b - a) * pct + a
            todo &= ~mask
            start_step = end_step
        return out
