"""Argument checks shared by the transforms: each error names the transform, the argument,
the value and what is allowed."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["number", "span", "size2", "size3", "probability", "integer", "choice"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(owner: str, field: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
           exclusive_minimum: bool = False) -> float:
    """A finite float within bounds."""
    if not _is_number(value):
        raise ValueError(f"{owner}: {field} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise ValueError(f"{owner}: {field} must be {'>' if exclusive_minimum else '>='} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{owner}: {field} must be <= {maximum}, got {value!r}")
    return float(value)


def span(owner: str, field: str, value: Any, *, around: float | None = None, minimum: float | None = None,
         maximum: float | None = None, exclusive_minimum: bool = False) -> tuple[float, float]:
    """A sampling range ``(lo, hi)``. A single number ``v`` means ``(around - v, around + v)`` when
    ``around`` is given (``degrees=15`` is ±15°, ``brightness=0.2`` is 0.8–1.2), else the fixed ``(v, v)``."""
    if _is_number(value):
        lo, hi = (around - value, around + value) if around is not None else (value, value)
        if around is not None and value < 0:
            raise ValueError(f"{owner}: {field} must be >= 0 when given as one number, got {value!r}")
        if around is not None and minimum is not None:
            lo = max(lo, minimum)  # brightness=1.5 means factors 0..2.5, as in torchvision
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value):
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise ValueError(f"{owner}: {field} must be (low, high) with low <= high, got {value!r}")
    else:
        raise ValueError(f"{owner}: {field} must be a number or a (low, high) pair of numbers, got {value!r}")
    for v in (lo, hi):
        number(owner, field, v, minimum=minimum, maximum=maximum, exclusive_minimum=exclusive_minimum)
    return float(lo), float(hi)


def size2(owner: str, field: str, value: Any) -> tuple[int, int]:
    """``(height, width)`` in pixels; one integer means a square."""
    given = value  # the message shows what the caller wrote, not the square/cube made of it
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"{owner}: {field} must be a positive integer or a (height, width) pair of them, got {given!r}")
    return int(value[0]), int(value[1])


def size3(owner: str, field: str, value: Any) -> tuple[int, int, int]:
    """``(depth, height, width)`` in voxels; one integer means a cube."""
    given = value  # the message shows what the caller wrote, not the square/cube made of it
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"{owner}: {field} must be a positive integer or a (depth, height, width) triple of them, "
                         f"got {given!r}")
    return int(value[0]), int(value[1]), int(value[2])


def probability(owner: str, field: str, value: Any) -> float:
    return number(owner, field, value, minimum=0.0, maximum=1.0)


def integer(owner: str, field: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}: {field} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {field} must be >= {minimum}, got {value!r}")
    return value


def choice(owner: str, field: str, value: Any, allowed: Any) -> Any:
    if value not in allowed:
        raise ValueError(f"{owner}: {field} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value
