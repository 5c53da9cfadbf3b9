"""Schedules to and from plain data, without eval."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from torchdeck._registry import construct
from torchdeck.schedules._base import SCHEDULES, Schedule

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
    for field in cls.nested:
        if field not in kwargs:
            continue
        inner, here = kwargs[field], f"{where}.{name}.{field}"
        if field == "schedules" and not isinstance(inner, (list, tuple)):
            raise ValueError(f"{here}: expected a list of schedules, got {inner!r}")
        if isinstance(inner, (list, tuple)):
            kwargs[field] = [schedule_from_spec(s, where=f"{here}[{i}]") for i, s in enumerate(inner)]
        else:
            kwargs[field] = schedule_from_spec(inner, where=here)
    return construct(where, name, cls, kwargs, [f.name for f in dataclasses.fields(cls)], "argument")
