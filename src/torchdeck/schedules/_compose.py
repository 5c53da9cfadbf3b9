"""Composites: schedules built from schedules (ParameterSchedulers.jl's Loop, Shifted,
Interpolator, arithmetic), plus Clamp and a Warmup shorthand. Each is still a pure function
of the step, so any nesting resumes exactly: there is no position to restore."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import numpy as np

from torchdeck.schedules._base import Schedule, check_number, check_steps, register_schedule
from torchdeck.schedules._core import Constant, _steps

__all__ = ["Loop", "Shifted", "Interpolator", "Sum", "Product", "Clamp", "Warmup", "as_schedule"]


def as_schedule(x: Any) -> Schedule:
    """A schedule as it is, a number as a Constant."""
    if isinstance(x, Schedule):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return Constant(float(x))  # checked like any constant: a number >= 0
    raise TypeError(f"cannot combine a schedule with {x!r}; use a schedule or a number")


def _check_schedule(owner: str, field: str, s: Any) -> None:
    if not isinstance(s, Schedule):
        raise ValueError(f"{owner}: {field} must be a schedule, got {s!r}")


@register_schedule
@dataclasses.dataclass(frozen=True)
class Loop(Schedule):
    """``schedule`` restarted every ``period`` steps: value(t) = schedule(t mod period)."""

    name = "loop"
    nested = ("schedule",)
    schedule: Schedule
    period: int

    def __post_init__(self) -> None:
        _check_schedule(self.name, "schedule", self.schedule)
        check_steps(self.name, "period", self.period, allow_none=False)

    def fit_to(self, total: int) -> "Loop":
        return dataclasses.replace(self, schedule=self.schedule.fit_to(self.period))

    def values(self, ts):
        return self.schedule.values(np.mod(_steps(ts), self.period))


@register_schedule
@dataclasses.dataclass(frozen=True)
class Shifted(Schedule):
    """``schedule`` entered at step ``offset``: value(t) = schedule(t + offset) (resuming a
    schedule part-way, or skipping its start)."""

    name = "shifted"
    nested = ("schedule",)
    schedule: Schedule
    offset: int

    def __post_init__(self) -> None:
        _check_schedule(self.name, "schedule", self.schedule)
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise ValueError(f"{self.name}: offset must be an integer >= 0, got {self.offset!r}")

    @property
    def length(self) -> int | None:
        n = self.schedule.length
        return None if n is None else max(n - self.offset, 1)

    def values(self, ts):
        return self.schedule.values(_steps(ts) + self.offset)


@register_schedule
@dataclasses.dataclass(frozen=True)
class Interpolator(Schedule):
    """A schedule written per epoch, read per step: value(t) = schedule(t / rate), with
    ``rate`` steps per epoch (the inner schedule is evaluated between its integer points)."""

    name = "interpolator"
    nested = ("schedule",)
    schedule: Schedule
    rate: float

    def __post_init__(self) -> None:
        _check_schedule(self.name, "schedule", self.schedule)
        if check_number(self.name, "rate", self.rate) <= 0:
            raise ValueError(f"{self.name}: rate must be > 0 (steps per epoch), got {self.rate!r}")

    def values(self, ts):
        return self.schedule.values(_steps(ts) / self.rate)


@dataclasses.dataclass(frozen=True)
class _Pointwise(Schedule):
    """Schedules combined value by value with ``reduce`` (a numpy reduction over axis 0)."""

    nested = ("schedules",)
    reduce: ClassVar[Callable[..., np.ndarray]]
    schedules: tuple[Schedule, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedules", tuple(self.schedules))
        for i, s in enumerate(self.schedules):
            _check_schedule(self.name, f"schedules[{i}]", s)

    def fit_to(self, total: int) -> "_Pointwise":
        return type(self)(tuple(s.fit_to(total) for s in self.schedules))

    def values(self, ts):
        ts = _steps(ts)
        return type(self).reduce([s.values(ts) for s in self.schedules], axis=0)


@register_schedule
@dataclasses.dataclass(frozen=True)
class Sum(_Pointwise):
    """The pointwise sum of schedules (``s1 + s2``, ``s + 1e-5``)."""

    name = "sum"
    reduce = np.sum


@register_schedule
@dataclasses.dataclass(frozen=True)
class Product(_Pointwise):
    """The pointwise product of schedules (``0.5 * s``, ``s1 * s2``)."""

    name = "product"
    reduce = np.prod


@register_schedule
@dataclasses.dataclass(frozen=True)
class Clamp(Schedule):
    """``schedule`` kept within [lo, hi] (either bound may be null)."""

    name = "clamp"
    nested = ("schedule",)
    schedule: Schedule
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        _check_schedule(self.name, "schedule", self.schedule)
        for field in ("lo", "hi"):
            if getattr(self, field) is not None:
                object.__setattr__(self, field, check_number(self.name, field, getattr(self, field), minimum=None))
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"{self.name}: lo must be <= hi, got lo={self.lo!r}, hi={self.hi!r}")

    @property
    def length(self) -> int | None:
        return self.schedule.length

    def fit_to(self, total: int) -> "Clamp":
        return dataclasses.replace(self, schedule=self.schedule.fit_to(total))

    def values(self, ts):
        return np.clip(self.schedule.values(ts), self.lo, self.hi)


@register_schedule
@dataclasses.dataclass(frozen=True)
class Warmup(Schedule):
    """A linear ramp from ``start`` to the schedule's first value over ``steps`` steps, then
    the schedule from its own step 0."""

    name = "warmup"
    nested = ("schedule",)
    schedule: Schedule
    steps: int
    start: float = 0.0

    def __post_init__(self) -> None:
        _check_schedule(self.name, "schedule", self.schedule)
        check_steps(self.name, "steps", self.steps, allow_none=False)
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))

    @property
    def length(self) -> int | None:
        n = self.schedule.length
        return None if n is None else self.steps + n

    def fit_to(self, total: int) -> "Warmup":
        return dataclasses.replace(self, schedule=self.schedule.fit_to(max(total - self.steps, 1)))

    def values(self, ts):
        ts = _steps(ts)
        first = self.schedule.values(np.zeros(1))[0]
        ramp = self.start + (first - self.start) * ts / self.steps
        return np.where(ts < self.steps, ramp, self.schedule.values(np.maximum(ts - self.steps, 0)))
