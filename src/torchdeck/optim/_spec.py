"""Rules to and from plain data (``{"chain": [{"adam": {"b1": 0.9}}, ...]}``), without eval."""

from __future__ import annotations

from typing import Any, Mapping

from torchdeck._registry import construct
from torchdeck.optim._base import RULES, Rule
from torchdeck.optim._chain import Chain

__all__ = ["rule_from_spec"]


def rule_from_spec(spec: Any, *, where: str = "optim") -> Rule:
    """Build a rule from its spec. Forms: ``"adam"``, ``{"adam": {...}}``, ``{"chain": [...]}``.

    Errors name the place in the spec (``optim.chain[2].scale_lr.lr``), the value and what
    is allowed.
    """
    if isinstance(spec, Rule):
        return spec
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping) and len(spec) == 1:
        (name, kwargs), = spec.items()
    else:
        raise ValueError(f"{where}: expected a rule name or a one-key mapping {{rule: {{...}}}}, got {spec!r}")
    if name == "chain":
        if not isinstance(kwargs, (list, tuple)):
            raise ValueError(f"{where}.chain: expected a list of rules, got {kwargs!r}")
        return Chain(*(rule_from_spec(s, where=f"{where}.chain[{i}]") for i, s in enumerate(kwargs)))
    if name not in RULES:
        raise ValueError(f"{where}: unknown rule {name!r}; allowed: chain, {', '.join(sorted(RULES))}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{where}.{name}: expected a mapping of hyperparameters, got {kwargs!r}")
    cls = RULES[name]
    return construct(where, name, cls, kwargs, list(cls().hyper()), "hyperparameter")
