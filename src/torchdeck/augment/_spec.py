"""Transforms to and from plain data, without eval:
``[{"rotate": {"degrees": 15}}, {"random_resized_crop": {"size": 224}}, "normalize"]``."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from torchdeck._registry import construct
from torchdeck.augment._base import TRANSFORMS, Transform
from torchdeck.augment._compose import Pipeline

__all__ = ["transform_from_spec"]


def transform_from_spec(spec: Any, *, where: str = "augment") -> Transform:
    """Forms: a transform, ``"flip_x"``, ``{"rotate": {"degrees": 15}}``, or a list (a Pipeline).
    Errors name the place in the spec (``augment[1].random_resized_crop: ...``), the value and
    what is allowed. ``transform_from_spec(t.to_spec()) == t``."""
    if isinstance(spec, Transform):
        return spec
    if isinstance(spec, (list, tuple)):
        return Pipeline(*(transform_from_spec(s, where=f"{where}[{i}]") for i, s in enumerate(spec)))
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping) and len(spec) == 1:
        (name, kwargs), = spec.items()
    else:
        raise ValueError(f"{where}: expected a transform name, a one-key mapping {{transform: {{...}}}} or a list "
                         f"of them, got {spec!r}")
    try:
        cls = TRANSFORMS.lookup(name)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{where}.{name}: expected a mapping of arguments, got {kwargs!r}")
    kwargs = dict(kwargs)
    for field in cls.nested:
        if field not in kwargs:
            continue
        inner, here = kwargs[field], f"{where}.{name}.{field}"
        if field == "transforms":
            if not isinstance(inner, (list, tuple)):
                raise ValueError(f"{here}: expected a list of transforms, got {inner!r}")
            kwargs[field] = [transform_from_spec(s, where=f"{here}[{i}]") for i, s in enumerate(inner)]
        else:
            kwargs[field] = transform_from_spec(inner, where=here)
    return construct(where, name, cls.from_fields, kwargs, [f.name for f in dataclasses.fields(cls)], "argument")
