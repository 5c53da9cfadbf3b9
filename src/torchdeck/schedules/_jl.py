"""The ParameterSchedulers.jl decay and cyclic schedules, on 0-based steps.

ParameterSchedulers counts from t = 1; here t = 0 is the first step, so each formula below is
theirs with ``t - 1`` written as ``t``.

Decay: ``Step``, ``Exp``, ``Poly``, ``Inv``. Cyclic (ParameterSchedulers' convention): a wave
between ``min(l0, l1)`` and ``max(l0, l1)`` that starts at the *minimum* at t = 0, reaches the
maximum at t = period / 2 and is back at the minimum at t = period — ``period`` is one full
cycle of the wave: ``Triangle``, ``TriangleDecay2``, ``TriangleExp``, ``Sin``, ``SinDecay2``,
``SinExp``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from torchdeck.schedules._base import Schedule, check_number, check_steps, register_schedule
from torchdeck.schedules._core import _steps

__all__ = ["Step", "Exp", "Poly", "Inv", "Triangle", "TriangleDecay2", "TriangleExp", "Sin", "SinDecay2", "SinExp"]


def _check_decay(owner: str, field: str, value: Any) -> float:
    """A multiplicative decay factor: in (0, 1]."""
    v = check_number(owner, field, value, minimum=None)
    if not 0.0 < v <= 1.0:
        raise ValueError(f"{owner}: {field} must be in (0, 1], got {value!r}")
    return v


def _check_positive(owner: str, field: str, value: Any) -> float:
    v = check_number(owner, field, value, minimum=None)
    if not v > 0.0:
        raise ValueError(f"{owner}: {field} must be > 0, got {value!r}")
    return v


# -- decay schedules -------------------------------------------------------------------------------
@register_schedule
@dataclasses.dataclass(frozen=True)
class Step(Schedule):
    """``start * decay**k``, k = how many step-size boundaries t has passed.

    ``step_sizes`` an int n: k = t // n (torch's StepLR). A list [n1, n2, ...]: the
    boundaries are n1, n1 + n2, ... and the last size repeats after them, e.g. [3, 5] gives
    k = 0 for t in 0..2, 1 for 3..7, 2 for 8..12, ...
    """

    name = "step"
    start: float
    decay: float
    step_sizes: int | tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        object.__setattr__(self, "decay", _check_decay(self.name, "decay", self.decay))
        sizes = self.step_sizes
        if isinstance(sizes, (list, tuple)):
            if not sizes:
                raise ValueError(f"{self.name}: step_sizes must be a positive integer or a non-empty list of them, got {sizes!r}")
            for i, n in enumerate(sizes):
                check_steps(self.name, f"step_sizes[{i}]", n, allow_none=False)
            object.__setattr__(self, "step_sizes", tuple(sizes))
        else:
            check_steps(self.name, "step_sizes", sizes, allow_none=False)

    def values(self, ts):
        ts = _steps(ts)
        sizes = self.step_sizes if isinstance(self.step_sizes, tuple) else (self.step_sizes,)
        bounds = np.cumsum(sizes)
        total = bounds[-1]
        inside = np.searchsorted(bounds, ts, side="right")  # boundaries passed, while t < total
        past = len(sizes) + np.floor((ts - total) / sizes[-1])
        k = np.where(ts < total, inside, past)
        return self.start * self.decay ** k

    def to_spec(self) -> dict[str, Any]:
        sizes = list(self.step_sizes) if isinstance(self.step_sizes, tuple) else self.step_sizes
        return {self.name: {"start": self.start, "decay": self.decay, "step_sizes": sizes}}


@register_schedule
@dataclasses.dataclass(frozen=True)
class Exp(Schedule):
    """``start * decay**t`` (torch's ExponentialLR)."""

    name = "exp"
    start: float
    decay: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        object.__setattr__(self, "decay", _check_decay(self.name, "decay", self.decay))

    def values(self, ts):
        return self.start * self.decay ** _steps(ts)


@register_schedule
@dataclasses.dataclass(frozen=True)
class Poly(Schedule):
    """``start * (1 - t / max_iter)**degree``, then 0 from t = max_iter on.

    (ParameterSchedulers' code multiplies — its docstring's ``/`` is a typo.) ``max_iter``
    null: fitted to the run by ``fit_to``.
    """

    name = "poly"
    start: float
    degree: float
    max_iter: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        object.__setattr__(self, "degree", _check_positive(self.name, "degree", self.degree))
        check_steps(self.name, "max_iter", self.max_iter)

    @property
    def length(self) -> int | None:
        return self.max_iter

    def fit_to(self, total: int) -> "Poly":
        return self if self.max_iter is not None else dataclasses.replace(self, max_iter=total)

    def values(self, ts):
        if self.max_iter is None:
            raise ValueError("poly: max_iter is null; call fit_to(total_steps) first")
        frac = np.maximum(1.0 - _steps(ts) / self.max_iter, 0.0)
        return self.start * frac ** self.degree


@register_schedule
@dataclasses.dataclass(frozen=True)
class Inv(Schedule):
    """``start / (1 + decay * t)**degree``; ``decay`` is a rate (>= 0), not a factor."""

    name = "inv"
    start: float
    decay: float
    degree: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_number(self.name, "start", self.start))
        object.__setattr__(self, "decay", check_number(self.name, "decay", self.decay))
        object.__setattr__(self, "degree", check_number(self.name, "degree", self.degree))

    def values(self, ts):
        return self.start / (1.0 + self.decay * _steps(ts)) ** self.degree


# -- cyclic schedules ------------------------------------------------------------------------------
def _tri(ts: np.ndarray, period: int) -> np.ndarray:
    """ParameterSchedulers' ``(2/π)·|asin(sin(π t / period))|``, in exact piecewise form:
    0 at multiples of period, 1 halfway between."""
    phase = np.mod(ts, period) / period
    return 1.0 - np.abs(1.0 - 2.0 * phase)


def _sin(ts: np.ndarray, period: int) -> np.ndarray:
    """``|sin(π t / period)|``, the phase reduced first so multiples of period give exactly 0."""
    return np.abs(np.sin(np.pi * (np.mod(ts, period) / period)))


@dataclasses.dataclass(frozen=True)
class _Cyclic(Schedule):
    l0: float
    l1: float
    period: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "l0", check_number(self.name, "l0", self.l0))
        object.__setattr__(self, "l1", check_number(self.name, "l1", self.l1))
        check_steps(self.name, "period", self.period, allow_none=False)

    def _wave(self, ts: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _amplitude(self, ts: np.ndarray) -> np.ndarray | float:
        return 1.0

    def values(self, ts):
        ts = _steps(ts)
        g = self._wave(ts) * self._amplitude(ts)
        return abs(self.l0 - self.l1) * g + min(self.l0, self.l1)


class _Decay2:
    def _amplitude(self, ts):
        return 0.5 ** np.floor(ts / self.period)


@dataclasses.dataclass(frozen=True)
class _ExpCyclic(_Cyclic):
    decay: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "decay", _check_decay(self.name, "decay", self.decay))

    def _amplitude(self, ts):
        return self.decay ** ts


class _TriWave:
    def _wave(self, ts):
        return _tri(ts, self.period)


class _SinWave:
    def _wave(self, ts):
        return _sin(ts, self.period)


@register_schedule
@dataclasses.dataclass(frozen=True)
class Triangle(_TriWave, _Cyclic):
    """``|l0 - l1| · tri(t) + min(l0, l1)``, tri(t) = (2/π)·|asin(sin(π t / period))|:
    a triangle wave from the minimum (t = 0) up to the maximum (t = period/2) and back (t = period)."""

    name = "triangle"


@register_schedule
@dataclasses.dataclass(frozen=True)
class TriangleDecay2(_Decay2, _TriWave, _Cyclic):
    """``Triangle`` with its amplitude halved every period: ``|l0 - l1| · tri(t) / 2**(t // period) + min(l0, l1)``."""

    name = "triangle_decay2"


@register_schedule
@dataclasses.dataclass(frozen=True)
class TriangleExp(_TriWave, _ExpCyclic):
    """``Triangle`` with its amplitude times ``decay**t``: ``|l0 - l1| · tri(t) · decay**t + min(l0, l1)``."""

    name = "triangle_exp"


@register_schedule
@dataclasses.dataclass(frozen=True)
class Sin(_SinWave, _Cyclic):
    """``|l0 - l1| · |sin(π t / period)| + min(l0, l1)``: ``period`` is one hump of |sin|
    (half a cycle of sin), from the minimum at t = 0 to the maximum at period/2."""

    name = "sin"


@register_schedule
@dataclasses.dataclass(frozen=True)
class SinDecay2(_Decay2, _SinWave, _Cyclic):
    """``Sin`` with its amplitude halved every period: ``|l0 - l1| · |sin(π t / period)| / 2**(t // period) + min(l0, l1)``."""

    name = "sin_decay2"


@register_schedule
@dataclasses.dataclass(frozen=True)
class SinExp(_SinWave, _ExpCyclic):
    """``Sin`` with its amplitude times ``decay**t``: ``|l0 - l1| · |sin(π t / period)| · decay**t + min(l0, l1)``."""

    name = "sin_exp"
