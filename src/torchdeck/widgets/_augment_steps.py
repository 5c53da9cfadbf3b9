"""The augment spec as the panel edits it: a list of steps and the pipeline's warp options.

``Experiment.augment`` holds a canonical transform spec (``{"pipeline": {"transforms": [...],
"interpolation": ...}}``). The panel edits its top level: each step is a plain transform with
its arguments, optionally run with a probability (written as a ``maybe`` around it). Steps
made of other transforms (``one_of``, ``some_of``, nested pipelines) are kept as they are and
shown read-only: they come in through the spec's YAML.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any

from torchdeck import augment as A

__all__ = ["Step", "read_steps", "write_spec", "addable_transforms", "OPTION_DEFAULTS", "OPTION_CHOICES"]

OPTION_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(A.Options)}
# Options the panel offers as choices; the others (fill, mask_fill, min_visibility) are kept
# as the spec has them.
OPTION_CHOICES: dict[str, tuple[Any, ...]] = {
    "interpolation": ("linear", "nearest", "cubic"),
    "border": ("constant", "reflect", "replicate"),
    "antialias": (True, False),
}


def _is_leaf(name: str) -> bool:
    return name in A.TRANSFORMS and not A.TRANSFORMS[name].nested


@dataclasses.dataclass(frozen=True)
class Step:
    """One top-level step: ``name`` with its ``args``; run with probability ``p`` (< 1 is written
    as ``{"maybe": {"transform": ..., "p": p}}``). ``raw`` holds a composite's whole spec (then
    ``args`` is empty and the step is read-only)."""

    name: str
    args: dict[str, Any]
    p: float = 1.0
    raw: dict[str, Any] | None = None

    @property
    def editable(self) -> bool:
        return self.raw is None

    def to_spec(self) -> dict[str, Any]:
        if self.raw is not None:
            return copy.deepcopy(self.raw)
        inner = {self.name: copy.deepcopy(self.args)}
        return inner if self.p >= 1.0 else {"maybe": {"transform": inner, "p": self.p}}

    def replace(self, **changes: Any) -> "Step":
        return dataclasses.replace(self, **changes)


def _step(spec: dict[str, Any]) -> Step:
    (name, args), = spec.items()
    if _is_leaf(name):
        return Step(name, dict(args or {}))
    if name == "maybe":
        (inner, inner_args), = args["transform"].items()
        if _is_leaf(inner):
            return Step(inner, dict(inner_args or {}), float(args.get("p", 0.5)))
    return Step(name, {}, raw=copy.deepcopy(spec))


def read_steps(augment: Any) -> tuple[list[Step], dict[str, Any]]:
    """(top-level steps, pipeline options) of a canonical augment spec (``None``: no steps)."""
    if augment is None:
        return [], dict(OPTION_DEFAULTS)
    (name, args), = augment.items()
    if name != "pipeline":
        return [_step(augment)], dict(OPTION_DEFAULTS)
    options = {k: args.get(k, v) for k, v in OPTION_DEFAULTS.items()}
    return [_step(s) for s in args.get("transforms", [])], options


def write_spec(steps: list[Step], options: dict[str, Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The augment spec for ``steps`` (``None`` when there are none: no augmentation). ``skip``
    leaves out steps by name (the preview leaves out ``normalize``: it has no picture)."""
    kept = [s.to_spec() for s in steps if s.name not in skip]
    if not kept:
        return None
    return {"pipeline": {"transforms": kept, **options}}


@functools.cache
def _addable(names: frozenset[str]) -> tuple[str, ...]:
    out = []
    for name in sorted(names):
        # The preview and the image tasks move 2-D frames; volume transforms (dims 3) have no
        # picture here and come in through the spec's YAML.
        if not _is_leaf(name) or getattr(A.TRANSFORMS[name], "dims", 2) != 2:
            continue
        try:
            A.TRANSFORMS[name]()
        except (TypeError, ValueError):  # needs an argument without a default
            continue
        out.append(name)
    return tuple(out)


def addable_transforms() -> list[str]:
    """Registered plain 2-D transforms that can be made with their defaults (the palette)."""
    return list(_addable(frozenset(A.TRANSFORMS)))  # keyed by the names: ones registered later appear
