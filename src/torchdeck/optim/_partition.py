"""``partition``: different rules for different parameters, chosen by parameter name
(optax ``multi_transform``; "no weight decay on biases and norm weights").

Patterns are shell-style globs matched against the *whole* name from
``model.named_parameters()`` with :func:`fnmatch.fnmatchcase` (case-sensitive; ``*`` also
crosses dots): ``"*.bias"``, ``"encoder.*"``, ``"*norm*.weight"``. One pattern may list
alternatives separated by ``|`` (``"*.bias|*norm*.weight"``): they form one group. The
pattern ``"*"`` on its own is the catch-all: it takes every parameter the other patterns
leave, so it never overlaps them. Every parameter must match exactly one pattern and every
pattern at least one parameter; anything else is a ``ValueError`` that names them.

Names reach the rule in one of two ways:

- ``Optimizer(model.named_parameters(), partition({...}))`` makes one param group per
  pattern (``group["name"]`` is the pattern), each running its own rule with its own
  hyperparameters in the group, so LR schedulers and ``adjust`` work per part.
- The functional core: ``rule = partition({...}).bind(names)`` fixes which parameter (by
  position in the lists given to ``init``/``update``) goes to which part. The state is the
  tuple of the parts' states, in pattern order.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Mapping, Sequence

import torch

from torchdeck.optim._base import Rule
from torchdeck.optim._chain import Chain

__all__ = ["Partition", "partition", "CATCH_ALL", "match_names", "contains_partition", "name_listing"]

CATCH_ALL = "*"

# How many names an error lists before "... and N more": enough to recognise the model.
_SHOWN = 8

_NEEDS_NAMES = ("partition matches parameter names: pass model.named_parameters() to Optimizer, or bind "
                "the names for the functional API: partition({...}).bind([n for n, _ in model.named_parameters()])")


def name_listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} ... and {len(names) - _SHOWN} more"


def match_names(pattern: str, names: Sequence[str]) -> list[int]:
    """Indices of ``names`` that match ``pattern`` (globs, ``|`` between alternatives)."""
    globs = pattern.split("|")
    return [j for j, n in enumerate(names) if any(fnmatch.fnmatchcase(n, g) for g in globs)]


def contains_partition(rule: Rule) -> bool:
    return isinstance(rule, Partition) or (isinstance(rule, Chain) and any(contains_partition(r) for r in rule.rules))


def _assign(patterns: Sequence[str], names: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """For each pattern, the indices of the names it takes; checks the partition is exact."""
    dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if dupes:
        raise ValueError(f"partition: parameter names must be unique, got {name_listing(dupes)} more than once")
    owner: dict[int, str] = {}
    taken: dict[str, list[int]] = {}
    for pattern in patterns:
        if pattern == CATCH_ALL:
            continue
        hits = match_names(pattern, names)
        for j in hits:
            if j in owner:
                raise ValueError(f"partition: parameter {names[j]!r} matches both {owner[j]!r} and {pattern!r}; "
                                 f"each parameter must match exactly one pattern (the catch-all {CATCH_ALL!r} "
                                 "takes only what the other patterns leave)")
            owner[j] = pattern
        taken[pattern] = hits
    rest = [j for j in range(len(names)) if j not in owner]
    if CATCH_ALL in patterns:
        taken[CATCH_ALL] = rest
    elif rest:
        raise ValueError(f"partition: parameters {name_listing([names[j] for j in rest])} match no pattern "
                         f"(patterns: {', '.join(repr(p) for p in patterns)}); add a pattern for them "
                         f"or a catch-all {CATCH_ALL!r}")
    for pattern in patterns:
        if not taken[pattern]:
            what = "no parameter is left for the catch-all" if pattern == CATCH_ALL else "it matches no parameter"
            raise ValueError(f"partition: pattern {pattern!r} is unused: {what}; parameters are {name_listing(list(names))}")
    return tuple(tuple(taken[p]) for p in patterns)


class Partition(Rule):
    """One rule per group of parameters, the groups chosen by name patterns.

    ``parts`` maps pattern -> rule, in order. Unbound (no names yet) it describes the split;
    :meth:`bind` fixes it for a list of names, which ``init``/``update`` then need.
    """

    name = "partition"

    def __init__(self, parts: Mapping[str, Rule], names: Sequence[str] | None = None) -> None:
        if not isinstance(parts, Mapping) or not parts:
            raise ValueError(f"partition: expected a non-empty mapping {{pattern: rule}}, got {parts!r}")
        for pattern, rule in parts.items():
            if not isinstance(pattern, str) or not pattern or "" in pattern.split("|"):
                raise ValueError(f"partition: patterns must be non-empty glob strings, got {pattern!r}")
            if not isinstance(rule, Rule):
                raise TypeError(f"partition: the rule for {pattern!r} must be a rule, got {rule!r}")
            # The Optimizer runs each part as a param group; a part that splits again has no group to be.
            if contains_partition(rule):
                raise ValueError(f"partition: the rule for {pattern!r} is itself a partition; list all patterns "
                                 "in one partition instead")
        object.__setattr__(self, "parts", dict(parts))
        object.__setattr__(self, "may_skip", any(r.may_skip for r in parts.values()))
        if names is not None:
            names = tuple(names)
            if not all(isinstance(n, str) for n in names):
                bad = [n for n in names if not isinstance(n, str)]
                raise ValueError(f"partition.bind: names must be strings, got {name_listing(bad)}")
            object.__setattr__(self, "index", _assign(list(parts), names))
        else:
            object.__setattr__(self, "index", None)
        object.__setattr__(self, "names", names)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("a partition is immutable; use .bind(...) or change the rules it was made of")

    # The order of the patterns only orders the param groups; which rule a parameter gets does
    # not depend on it (overlaps are refused), so equal partitions may list them differently
    # (a YAML dump sorts the keys).
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Partition) and self.parts == other.parts and self.names == other.names

    def __hash__(self) -> int:
        return hash((frozenset(self.parts.items()), self.names))

    # -- names ------------------------------------------------------------------------
    def bind(self, names: Iterable[str]) -> "Partition":
        """The same partition, fixed for parameters with these names (in this order)."""
        return Partition(self.parts, list(names))

    def split(self, named: Iterable[tuple[str, torch.Tensor]]) -> list[tuple[str, list[tuple[str, torch.Tensor]]]]:
        """``(pattern, [(name, param), ...])`` for each part, in pattern order."""
        named = list(named)
        index = _assign(list(self.parts), [n for n, _ in named])
        return [(pattern, [named[j] for j in ix]) for pattern, ix in zip(self.parts, index)]

    def _index_for(self, n: int) -> tuple[tuple[int, ...], ...]:
        if self.index is None:
            raise ValueError(_NEEDS_NAMES)
        if n != len(self.names):
            raise ValueError(f"partition: bound to {len(self.names)} parameter names, got {n} tensors")
        return self.index

    # -- the protocol -----------------------------------------------------------------
    def init(self, params):
        index = self._index_for(len(params))
        return tuple(rule.init([params[j] for j in ix]) for rule, ix in zip(self.parts.values(), index))

    def update_(self, updates, state, params):
        index = self._index_for(len(updates))
        out = list(updates)
        new_states = list(state)
        applied = False
        for k, (rule, ix) in enumerate(zip(self.parts.values(), index)):
            part, new_states[k] = rule.update_([updates[j] for j in ix], state[k], [params[j] for j in ix])
            if part is None:
                # This part skipped (accumulating, non-finite) while others may not have: its
                # parameters get a zero update, which leaves them exactly as they are.
                for j in ix:
                    out[j] = torch.zeros_like(updates[j])
            else:
                applied = True
                for j, u in zip(ix, part):
                    out[j] = u
        return (out if applied else None), tuple(new_states)

    # -- hyperparameters: they live in the parts (per param group in an Optimizer) --------
    def hyper(self) -> dict[str, Any]:
        return {}

    def replace(self, **hyper: Any) -> "Partition":
        if hyper:
            raise ValueError(f"partition: hyperparameters belong to its parts; got {sorted(hyper)[0]!r}. Use "
                             "adjust(opt, group=<pattern>, ...) on an Optimizer, or rebuild the partition "
                             "with changed rules")
        return self

    # -- spec and display -------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        return {"partition": {p: r.to_spec() for p, r in self.parts.items()}}

    def to_code(self, module: str = "O") -> str:
        inner = ", ".join(f"{p!r}: {r.to_code(module)}" for p, r in self.parts.items())
        return f"{module}.partition({{{inner}}})"

    def __str__(self) -> str:
        return "partition(" + "; ".join(f"{p}: {r}" for p, r in self.parts.items()) + ")"

    def __repr__(self) -> str:
        inner = ", ".join(f"{p!r}: {r!r}" for p, r in self.parts.items())
        bound = "" if self.names is None else f".bind(<{len(self.names)} names>)"
        return f"partition({{{inner}}}){bound}"


def partition(parts: Mapping[str, Rule]) -> Partition:
    """Rules by parameter name: ``partition({"*.bias|*norm*": adam_no_decay, "*": adamw})``."""
    return Partition(parts)
