"""``chain``: rules applied one after another; the state is the tuple of their states."""

from __future__ import annotations

from collections import Counter
from typing import Any

from torchdeck.optim._base import Rule

__all__ = ["Chain", "chain"]


class Chain(Rule):
    """Rules run in order, each on the previous one's updates (Optimisers.jl ``OptimiserChain``).

    Hyperparameters are exposed flat, as param groups need them: a name used by one rule
    only stays bare (``max_norm``); a name several rules share belongs bare to the *last*
    of them — so ``lr`` is ``scale_lr``'s in ``chain(adam(), scale_lr(3e-3))`` and torch's LR
    schedulers drive the rate people mean — and is ``<rule>.<name>`` for the others
    (``adam.lr``), ``<index>.<rule>.<name>`` if that is still ambiguous.
    """

    name = "chain"

    def __init__(self, *rules: Rule) -> None:
        flat: list[Rule] = []
        for i, r in enumerate(rules):
            if not isinstance(r, Rule):
                raise TypeError(f"chain: item {i} must be a rule, got {r!r}")
            # A chain inside a chain is the same as its rules in place (one flat set of names).
            flat.extend(r.rules if isinstance(r, Chain) else (r,))
        object.__setattr__(self, "rules", tuple(flat))
        object.__setattr__(self, "_keys", _hyper_keys(self.rules))
        object.__setattr__(self, "may_skip", any(r.may_skip for r in self.rules))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("a chain is immutable; use .replace(...) or optim.adjust")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chain) and self.rules == other.rules

    def __hash__(self) -> int:
        return hash(self.rules)

    def init(self, params):
        return tuple(r.init(params) for r in self.rules)

    def update_(self, updates, state, params):
        new_states = list(state)
        for i, rule in enumerate(self.rules):
            updates, new_states[i] = rule.update_(updates, state[i], params)
            if updates is None:  # skipped: the rules after this one keep their state
                break
        return updates, tuple(new_states)

    def hyper(self) -> dict[str, Any]:
        return {key: getattr(self.rules[i], field) for key, (i, field) in self._keys.items()}

    def replace(self, **hyper: Any) -> "Chain":
        unknown = sorted(set(hyper) - set(self._keys))
        if unknown:
            raise ValueError(f"chain: unknown hyperparameter {unknown[0]!r}; allowed: {', '.join(self._keys) or 'none'}")
        per_rule: list[dict[str, Any]] = [{} for _ in self.rules]
        for key, value in hyper.items():
            i, field = self._keys[key]
            per_rule[i][field] = value
        rules = tuple(r.replace(**kw) if kw else r for r, kw in zip(self.rules, per_rule))
        # Replacing values keeps every rule's name and fields, so the flat keys stay valid:
        # reuse them (an Optimizer under a schedule calls this every step).
        new = object.__new__(Chain)
        object.__setattr__(new, "rules", rules)
        object.__setattr__(new, "_keys", self._keys)
        object.__setattr__(new, "may_skip", self.may_skip)
        return new

    def to_spec(self) -> dict[str, Any]:
        return {"chain": [r.to_spec() for r in self.rules]}

    def to_code(self, module: str = "O") -> str:
        return f"{module}.chain({', '.join(r.to_code(module) for r in self.rules)})"

    def __str__(self) -> str:
        return " → ".join(str(r) for r in self.rules)

    def __repr__(self) -> str:
        return f"chain({', '.join(repr(r) for r in self.rules)})"


def _hyper_keys(rules: tuple[Rule, ...]) -> dict[str, tuple[int, str]]:
    owners = Counter(field for r in rules for field in r.hyper())
    names = Counter(r.name for r in rules)
    keys: dict[str, tuple[int, str]] = {}
    last_owner = {field: i for i, r in enumerate(rules) for field in r.hyper()}
    for i, r in enumerate(rules):
        for field in r.hyper():
            if owners[field] == 1 or last_owner[field] == i:
                key = field
            elif names[r.name] == 1:
                key = f"{r.name}.{field}"
            else:
                key = f"{i}.{r.name}.{field}"
            keys[key] = (i, field)
    return keys


def chain(*rules: Rule) -> Chain:
    """Compose rules: ``chain(clip_norm(1.0), adam(), scale_lr(3e-3))``."""
    return Chain(*rules)
