"""The rule protocol: a gradient transformation with explicit, typed state.

A rule is a frozen dataclass of hyperparameters with two functions over lists of tensors:

- ``init(params) -> state``
- ``update_(updates, state, params) -> (updates, state)`` — the fast path: it may overwrite the
  ``updates`` tensors and the state's tensors in place. The updates it returns never alias the
  state, so the next rule of a chain may overwrite them.

``update`` is the pure twin (inputs untouched, new state returned). Updates are descent
directions, as in Optimisers.jl: the optimiser *subtracts* them from the parameters.

A rule may return ``None`` instead of the updates to mean "no update this call" (gradient
accumulation between its n-th calls, a skipped non-finite step): a chain then stops there,
leaving the states of the rules after it untouched, and the optimiser leaves the parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, NamedTuple, Sequence

import torch

from torchdeck._registry import Registry
from torchdeck._tree import tree_map

__all__ = ["Rule", "EmptyState", "hyper", "RULES", "register_rule", "format_number"]

Tensors = Sequence[torch.Tensor]

# name -> rule class; filled by @register_rule so specs can name rules without eval.
RULES = Registry("rule")


def register_rule(cls: type["Rule"]) -> type["Rule"]:
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name` to be registered")
    return RULES.register(cls.name)(cls)


class EmptyState(NamedTuple):
    """State of a rule that keeps none."""


def hyper(default: float, *, ge: float | None = None, gt: float | None = None,
          lt: float | None = None, le: float | None = None, help: str = "") -> Any:
    """A hyperparameter field with its allowed range, checked when the rule is made."""
    return dataclasses.field(default=default, metadata={"ge": ge, "gt": gt, "lt": lt, "le": le, "help": help})


def _allowed(meta: dict) -> str:
    lo = f"[{meta['ge']}" if meta["ge"] is not None else f"({meta['gt']}" if meta["gt"] is not None else "(-inf"
    hi = f"{meta['le']}]" if meta["le"] is not None else f"{meta['lt']})" if meta["lt"] is not None else "inf)"
    return f"{lo}, {hi}"


def _in_range(v: float, meta: dict) -> bool:
    return not ((meta["ge"] is not None and v < meta["ge"]) or (meta["gt"] is not None and v <= meta["gt"])
                or (meta["lt"] is not None and v >= meta["lt"]) or (meta["le"] is not None and v > meta["le"]))


@functools.cache
def _fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@dataclasses.dataclass(frozen=True)
class Rule:
    """Base class: subclasses declare hyperparameters with :func:`hyper` and fill ``init``/``update_``."""

    name: ClassVar[str] = ""
    # A hyperparameter always shown in the short form, e.g. the 1.0 of ``clip_norm(1.0)``.
    primary: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, self._checked(f, getattr(self, f.name)))

    def _checked(self, f: dataclasses.Field, v: Any) -> Any:
        """``v`` if it is allowed for field ``f`` (ints become floats for float fields)."""
        if "ge" not in f.metadata:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise ValueError(f"{self.name}: {f.name} must be a number, got {v!r}")
        if not _in_range(v, f.metadata):
            raise ValueError(f"{self.name}: {f.name} must be in {_allowed(f.metadata)}, got {v!r}")
        return float(v) if isinstance(v, int) and f.type in ("float", float) else v

    # -- the protocol -------------------------------------------------------------------
    def init(self, params: Tensors) -> Any:
        del params
        return EmptyState()

    def update_(self, updates: list[torch.Tensor], state: Any, params: Tensors) -> tuple[list[torch.Tensor], Any]:
        raise NotImplementedError

    def update(self, updates: Tensors, state: Any, params: Tensors) -> tuple[list[torch.Tensor], Any]:
        """Pure update: ``updates``, ``state`` and ``params`` are left untouched."""
        with torch.no_grad():
            return self.update_([u.clone() for u in updates], tree_map(torch.clone, state), params)

    # A rule that can return ``None`` updates says so, so callers that cannot skip (a fused
    # lowering, a plot) can refuse it early.
    may_skip: ClassVar[bool] = False

    # -- hyperparameters ----------------------------------------------------------------
    def hyper(self) -> dict[str, Any]:
        """Hyperparameters by name, as the optimiser's param groups carry them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **hyper: Any) -> "Rule":
        """A copy with some hyperparameters changed (validated like the constructor)."""
        fields = _fields_of(type(self))
        unknown = sorted(set(hyper) - set(fields))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameter {unknown[0]!r}; allowed: {', '.join(fields) or 'none'}")
        # Copy and check only the changed fields: an Optimizer under a schedule does this
        # every step, and dataclasses.replace re-runs every check through __init__.
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for key, value in hyper.items():
            object.__setattr__(new, key, self._checked(fields[key], value))
        return new

    # -- spec and display ---------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        return {self.name: self.hyper()}

    def to_code(self, module: str = "O") -> str:
        """Python that makes this rule: ``O.clip_norm(1.0)``, ``O.adam()``."""
        text = str(self)
        return f"{module}.{text}" if "(" in text else f"{module}.{text}()"

    def __str__(self) -> str:
        """Short form: the primary value and whatever differs from the defaults.

        ``clip_norm(1.0)``, ``adam``, ``momentum(rho=0.95)``, ``scale_lr(3e-3)``.
        """
        parts = [format_number(getattr(self, self.primary))] if self.primary else []
        parts += [f"{f.name}={format_number(getattr(self, f.name))}" for f in dataclasses.fields(self)
                  if f.name != self.primary and getattr(self, f.name) != f.default]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def format_number(v: Any) -> str:
    """Numbers as people write them in code: ``1.0``, ``0.9``, ``3e-3``, ``1e-8``."""
    if isinstance(v, float) and v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
        mantissa, exp = f"{v:.6e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    return repr(v)
