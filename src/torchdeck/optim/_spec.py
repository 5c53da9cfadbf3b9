"""Rules to and from plain data (``{"chain": [{"adam": {"b1": 0.9}}, ...]}``), without eval."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from torchdeck._registry import Registry, construct
from torchdeck.optim._base import RULES, Rule
from torchdeck.optim._chain import Chain
from torchdeck.optim._partition import Partition

__all__ = ["rule_from_spec", "COMBINATORS"]

# Rules made of rules: name -> (body, where) -> rule. Their bodies hold specs, not hyperparameters.
COMBINATORS = Registry("combinator")


@COMBINATORS.register("chain")
def _chain_from_spec(body: Any, where: str) -> Rule:
    if not isinstance(body, (list, tuple)):
        raise ValueError(f"{where}.chain: expected a list of rules, got {body!r}")
    return Chain(*(rule_from_spec(s, where=f"{where}.chain[{i}]") for i, s in enumerate(body)))


@COMBINATORS.register("partition")
def _partition_from_spec(body: Any, where: str) -> Rule:
    if not isinstance(body, Mapping) or not body:
        raise ValueError(f"{where}.partition: expected a non-empty mapping {{pattern: rule}}, got {body!r}")
    for pattern in body:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"{where}.partition: patterns must be non-empty glob strings, got {pattern!r}")
    parts = {p: rule_from_spec(s, where=f"{where}.partition[{p!r}]") for p, s in body.items()}
    try:
        return Partition(parts)
    except ValueError as e:
        raise ValueError(f"{where}.{e}") from None


def rule_from_spec(spec: Any, *, where: str = "optim") -> Rule:
    """Build a rule from its spec. Forms: ``"adam"``, ``{"adam": {...}}``, ``{"chain": [...]}``,
    ``{"partition": {"*.bias": <rule spec>, "*": <rule spec>}}``.

    Errors name the place in the spec (``optim.chain[2].scale_lr: lr ...``,
    ``optim.partition['*.bias'].adam: b1 ...``), the value and what is allowed.
    """
    if isinstance(spec, Rule):
        return spec
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping) and len(spec) == 1:
        (name, kwargs), = spec.items()
    else:
        raise ValueError(f"{where}: expected a rule name or a one-key mapping {{rule: {{...}}}}, got {spec!r}")
    make: Callable[[Any, str], Rule] | None = COMBINATORS.get(name)
    if make is not None:
        return make(kwargs, where)
    if name not in RULES:
        # chain first (the usual outer rule), then the rules, then the other combinators.
        allowed = ["chain", *sorted(RULES), *(n for n in COMBINATORS.names() if n != "chain")]
        raise ValueError(f"{where}: unknown rule {name!r}; allowed: {', '.join(allowed)}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{where}.{name}: expected a mapping of hyperparameters, got {kwargs!r}")
    cls = RULES[name]
    return construct(where, name, cls, kwargs, list(cls().hyper()), "hyperparameter")
