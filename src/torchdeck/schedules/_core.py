"""The first schedules: Constant, Linear, CosAnneal and Sequence."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from torchdeck.schedules._base import Schedule, check_flag, check_number, check_steps, register_schedule

__all__ = ["Constant", "Linear", "CosAnneal", "Sequence"]


def _steps(ts: Any) -> np.ndarray:
    ts = np.asarray(ts, dtype=np.float64)
    if np.any(ts < 0):
        raise ValueError(f"schedule steps must be >= 0, got {ts.min()}")
    return ts


@register_schedule
@dataclasses.dataclass(frozen=True)
class Constant(Schedule):
    """The same value at every step."""

    name = "constant"
    value: float
    steps: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_number(self.name, "value", self.value))
        check_steps(self.name, "steps", self.steps)

    @property
    def length(self) -> int | None:
        return self.steps

    def fit_to(self, total: int) -> "Constant":
        return self if self.steps is not None else dataclasses.replace(self, steps=total)

    def values(self, ts):
        return np.full(np.shape(_steps(ts)), self.value)


@register_schedule
@dataclasses.dataclass(frozen=True)
class Linear(Schedule):
    """From ``start`` to ``end`` in ``steps`` steps, then ``end`` (a warm-up when start < end)."""

    name = "linear"
    start: float
    end: float
    steps: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        object.__setattr__(self, "end", check_number(self.name, "end", self.end))
        check_steps(self.name, "steps", self.steps)

    @property
    def length(self) -> int | None:
        return self.steps

    def fit_to(self, total: int) -> "Linear":
        return self if self.steps is not None else dataclasses.replace(self, steps=total)

    def values(self, ts):
        if self.steps is None:
            raise ValueError("linear: steps is null; call fit_to(total_steps) first")
        frac = np.minimum(_steps(ts) / self.steps, 1.0)
        return self.start + (self.end - self.start) * frac


@register_schedule
@dataclasses.dataclass(frozen=True)
class CosAnneal(Schedule):
    """Half a cosine from ``start`` down to ``end`` over ``period`` steps.

    With ``restart`` it jumps back to ``start`` every period (SGDR); without, it stays at
    ``end``. Matches torch's CosineAnnealingLR (base lr = start, eta_min = end, T_max =
    period) on its first period.
    """

    name = "cos_anneal"
    start: float
    end: float = 0.0
    period: int | None = None
    restart: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        object.__setattr__(self, "end", check_number(self.name, "end", self.end))
        check_steps(self.name, "period", self.period)
        check_flag(self.name, "restart", self.restart)

    @property
    def length(self) -> int | None:
        return self.period

    def fit_to(self, total: int) -> "CosAnneal":
        return self if self.period is not None else dataclasses.replace(self, period=total)

    def values(self, ts):
        if self.period is None:
            raise ValueError("cos_anneal: period is null; call fit_to(total_steps) first")
        ts = _steps(ts)
        t = np.mod(ts, self.period) if self.restart else np.minimum(ts, self.period)
        return self.end + (self.start - self.end) * (1.0 + np.cos(np.pi * t / self.period)) / 2.0


@register_schedule
@dataclasses.dataclass(frozen=True)
class Sequence(Schedule):
    """Schedules one after another; each starts from its own step 0.

    ``steps`` gives each one's length; by default each schedule's own ``length``. The last
    runs on past its length; an earlier one with no length is an error.
    """

    name = "sequence"
    nested = ("schedules",)
    schedules: tuple[Schedule, ...]
    steps: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        scheds = tuple(self.schedules)
        if not scheds:
            raise ValueError("sequence: schedules must not be empty")
        for i, s in enumerate(scheds):
            if not isinstance(s, Schedule):
                raise ValueError(f"sequence: schedules[{i}] must be a schedule, got {s!r}")
        object.__setattr__(self, "schedules", scheds)
        steps = tuple(s.length for s in scheds) if self.steps is None else tuple(self.steps)
        if len(steps) != len(scheds):
            raise ValueError(f"sequence: steps has {len(steps)} entries for {len(scheds)} schedules")
        for i, n in enumerate(steps):
            check_steps(self.name, f"steps[{i}]", n, allow_none=i == len(steps) - 1)
        # Each segment spans its slot: an open-ended one (steps/period null) is fitted to it.
        object.__setattr__(self, "schedules", tuple(s if n is None else s.fit_to(n) for s, n in zip(scheds, steps)))
        object.__setattr__(self, "steps", steps)

    @property
    def length(self) -> int | None:
        return None if self.steps[-1] is None else sum(self.steps)

    def fit_to(self, total: int) -> "Sequence":
        fixed = sum(n for n in self.steps[:-1])
        # A run that ends inside the earlier segments (e.g. one epoch shorter than the warm-up)
        # never reaches the open last one; it gets one step so the schedule stays defined.
        last = self.steps[-1] if self.steps[-1] is not None else max(total - fixed, 1)
        scheds = self.schedules[:-1] + (self.schedules[-1].fit_to(last),)
        return Sequence(scheds, self.steps[:-1] + (last,))

    def values(self, ts):
        ts = _steps(ts)
        out = np.empty(ts.shape)
        offset = 0
        for i, (s, n) in enumerate(zip(self.schedules, self.steps)):
            last = i == len(self.schedules) - 1
            mask = ts >= offset if last else (ts >= offset) & (ts < offset + n)
            if mask.any():
                out[mask] = s.values(ts[mask] - offset)
            if not last:
                offset += n
        return out

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"schedules": [s.to_spec() for s in self.schedules]}  # type: ignore[dict-item]
        # Slots that only repeat the segments' own lengths are left out, so each length is
        # written (and edited) in one place.
        if self.steps != tuple(s.length for s in self.schedules):
            spec["steps"] = list(self.steps)
        return {self.name: spec}

    def __str__(self) -> str:
        return f"sequence({', '.join(str(s) for s in self.schedules)})"
