"""Schedules: pure functions of the step (ParameterSchedulers.jl).

``s(t)`` gives the value at integer step ``t`` (t = 0 is the first step); ``s.values(ts)``
gives many at once, vectorised with numpy. A schedule holds no position, so resuming at
step k is just calling it from k on — nothing to replay, nothing to drift.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Iterator

import numpy as np

from torchdeck._registry import Registry

__all__ = ["Schedule", "SCHEDULES", "register_schedule", "check_number", "check_steps", "check_flag"]

SCHEDULES = Registry("schedule")


def register_schedule(cls: type["Schedule"]) -> type["Schedule"]:
    return SCHEDULES.register(cls.name)(cls)


def _spec_value(v: Any) -> Any:
    """Fields that hold schedules are written as their specs; tuples as lists."""
    if isinstance(v, Schedule):
        return v.to_spec()
    if isinstance(v, tuple):
        return [_spec_value(x) for x in v]
    return v


def check_number(owner: str, field: str, value: Any, *, minimum: float | None = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{owner}: {field} must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {field} must be >= {minimum}, got {value!r}")
    return float(value)


def check_flag(owner: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {field} must be true or false, got {value!r}")
    return value


def check_steps(owner: str, field: str, value: Any, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        allowed = "a positive integer" + (" or null (the rest of the run)" if allow_none else "")
        raise ValueError(f"{owner}: {field} must be {allowed}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Base class. Subclasses fill ``values`` (vectorised); the rest derives from it."""

    name: ClassVar[str] = ""
    # Fields that hold a schedule (or a list of them), parsed recursively from specs.
    nested: ClassVar[tuple[str, ...]] = ()

    @property
    def length(self) -> int | None:
        """Steps this schedule is meant to span (``None``: open-ended)."""
        return None

    def values(self, ts: Any) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, t: int) -> float:
        return float(self.values(np.asarray([t]))[0])

    def __iter__(self) -> Iterator[float]:
        t = 0
        while True:
            yield self(t)
            t += 1

    def fit_to(self, total: int) -> "Schedule":
        """A copy whose open-ended length (``None``) spans ``total`` steps."""
        return self

    def to_spec(self) -> dict[str, Any]:
        return {self.name: {f.name: _spec_value(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    # Arithmetic builds composites (``0.5 * s``, ``s1 + s2``, ``s1 * s2``); see _compose.
    def __add__(self, other: Any) -> "Schedule":
        from torchdeck.schedules._compose import Sum, as_schedule
        return Sum((self, as_schedule(other)))

    __radd__ = __add__

    def __mul__(self, other: Any) -> "Schedule":
        from torchdeck.schedules._compose import Product, as_schedule
        return Product((self, as_schedule(other)))

    __rmul__ = __mul__

    def __str__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.name}({args})"
