"""Schedules to and from plain data, without eval."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from torchdeck._registry import construct
from torchdeck.schedules._base import SCHEDULES, Schedule
from torchdeck.schedules._core import Sequence

__all__ = ["schedule_from_spec"]


def schedule_from_spec(spec: Any, *, where: str = "schedule") -> Schedule:
    """``{"cos_anneal": {"start": 3e-3, "end": 1e-5}}``, a bare number (constant), or a
    ``{"sequence": {"schedules": [...], "steps": [...]}}``. Errors name the place in the spec."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"constant": {"value": spec}}
    if not (isinstance(spec, Mapping) and len(spec) == 1):
        raise ValueError(f"{where}: expected a number or a one-key mapping {{schedule: {{...}}}}, got {spec!r}")
    (name, kwargs), = spec.items()
    try:
        cls = SCHEDULES.lookup(name)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{where}.{name}: expected a mapping of arguments, got {kwargs!r}")
    kwargs = dict(kwargs)
    if cls is Sequence:
        items = kwargs.get("schedules")
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{where}.sequence.schedules: expected a list of schedules, got {items!r}")
        kwargs["schedules"] = [schedule_from_spec(s, where=f"{where}.sequence.schedules[{i}]") for i, s in enumerate(items)]
    return construct(where, name, cls, kwargs, [f.name for f in dataclasses.fields(cls)], "argument")
