"""``Optimizer``: any rule as a real ``torch.optim.Optimizer``; ``adjust``, ``freeze``, ``thaw``."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from torchdeck._tree import tree_leaves, tree_unflatten
from torchdeck.optim._base import Rule
from torchdeck.optim._lowering import lowering_for
from torchdeck.optim._partition import Partition, contains_partition, match_names, name_listing

__all__ = ["Optimizer", "adjust", "freeze", "thaw"]


class Optimizer(torch.optim.Optimizer):
    """Run a rule as a torch optimiser: param groups, ``zero_grad``, ``state_dict``, LR
    schedulers and ``GradScaler`` all work as with torch's own.

    Each param group carries its rule's hyperparameters (``group["lr"]``, ``group["b1"]``, ...);
    changing them — by hand, by :func:`adjust`, or by a scheduler — changes the rule used for
    that group from the next step on. The rule's state is kept per group.

    With a :func:`~torchdeck.optim.partition` rule the optimiser makes one param group per
    pattern (``group["name"]`` is the pattern), each with its own rule and hyperparameters;
    it needs ``model.named_parameters()``.

    Args:
        params: tensors, ``(name, tensor)`` pairs (e.g. ``model.named_parameters()``) or
            param-group dicts, as for any torch optimiser. Names are kept in
            ``group["param_names"]`` as torch does, and let :func:`freeze` match patterns.
        rule: the rule (or chain, or partition) to apply.
        write_grads: let a fused step leave the clipped gradients in ``.grad``, as
            ``clip_grad_norm_`` does (one pass over the gradients less). By default the
            optimiser never changes ``.grad``.
    """

    def __init__(self, params: Iterable[Any], rule: Rule, *, write_grads: bool = False) -> None:
        if not isinstance(rule, Rule):
            raise TypeError(f"Optimizer: rule must be a torchdeck.optim rule, got {rule!r}")
        if not isinstance(rule, Partition) and contains_partition(rule):
            # Each part must be a param group of its own (LR schedulers, adjust, state per part).
            raise ValueError("Optimizer: a partition must be the outermost rule; put chains inside it: "
                             "partition({'*.bias': chain(...), '*': chain(...)})")
        self.rule = rule
        self.write_grads = bool(write_grads)
        # Per param group: the rule its hyperparameters apply to, and their names. Not
        # ``self.defaults``, to which torch adds keys of its own (``differentiable``) in
        # ``load_state_dict``, and which a partition's groups don't share.
        self._group_base: list[Rule] = []
        self._group_keys: list[tuple[str, ...]] = []
        self._rule_states: list[Any] = []
        self._group_rules: list[tuple[tuple, Rule]] = []
        # Per param group: indices of frozen parameters (see ``freeze``).
        self._frozen: list[set[int]] = []
        self._buffers: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
        if isinstance(rule, Partition):
            super().__init__(_partition_groups(rule, params), {})
        else:
            super().__init__(params, rule.hyper())

    def _base_rule_of(self, group: dict[str, Any]) -> Rule:
        if not isinstance(self.rule, Partition):
            return self.rule
        name = group.get("name")
        if name not in self.rule.parts:
            raise ValueError(f"Optimizer.add_param_group: a partitioned optimiser's group needs 'name' set to one "
                             f"of its patterns ({', '.join(repr(p) for p in self.rule.parts)}), got {name!r}")
        return self.rule.parts[name]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        base = self._base_rule_of(param_group)
        defaults = base.hyper()
        # Check the group's own values before torch keeps it: a refused group must not stay.
        base.replace(**{k: param_group.get(k, v) for k, v in defaults.items()})
        for k, v in defaults.items():
            param_group.setdefault(k, v)
        super().add_param_group(param_group)
        self._group_base.append(base)
        self._group_keys.append(tuple(defaults))
        self._rule_states.append(None)
        self._group_rules.append(((), base))
        self._frozen.append(set())

    def _hyper_of(self, i: int) -> dict[str, Any]:
        group = self.param_groups[i]
        return {k: group[k] for k in self._group_keys[i]}

    def _rule_for(self, i: int, group: dict[str, Any]) -> Rule:
        # Rebuild the group's rule only when its values changed, and then only the parts that
        # changed: a schedule setting "lr" every step costs one dataclass replace (scale_lr's),
        # an unchanged group costs a tuple compare.
        keys = self._group_keys[i]
        values = tuple(group[k] for k in keys)
        cached_values, rule = self._group_rules[i]
        if values != cached_values:
            if cached_values:
                changed = {k: v for k, v, old in zip(keys, values, cached_values) if v != old}
            else:
                rule, changed = self._group_base[i], dict(zip(keys, values))
            rule = rule.replace(**changed)
            self._group_rules[i] = (values, rule)
        return rule

    def group_rule(self, group: int = 0) -> Rule:
        """The rule one param group runs, with that group's current hyperparameters."""
        return self._rule_for(group, self.param_groups[group])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for i, group in enumerate(self.param_groups):
            rule = self._rule_for(i, group)
            all_params = group["params"]
            if self._rule_states[i] is None:
                self._rule_states[i] = rule.init(all_params)
            frozen = self._frozen[i]
            keep = [j for j, p in enumerate(all_params) if p.grad is not None and j not in frozen]
            if not keep:
                continue
            params = [all_params[j] for j in keep]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("torchdeck.optim.Optimizer does not support sparse gradients")
            state = self._rule_states[i]
            if len(keep) != len(all_params):
                # Parameters without a gradient, or frozen, are skipped and their state left as it is.
                state = _select(state, keep, len(all_params))
            lowered = lowering_for(rule, write_grads=self.write_grads)
            if lowered is not None:  # a fused/foreach kernel does the whole update in place
                lowered(params, [p.grad for p in params], state)
                continue
            updates = self._update_buffers(i, keep, params)
            updates, new_state = rule.update_(updates, state, params)
            if len(keep) == len(all_params):
                self._rule_states[i] = new_state
            if updates is not None:  # None: the rule skipped this step (accumulating, non-finite)
                torch._foreach_sub_(params, updates)
        return loss

    def _update_buffers(self, i: int, keep: list[int], params: list[torch.Tensor]) -> list[torch.Tensor]:
        """The group's gradients copied into tensors the rules may overwrite (never ``.grad``).

        The tensors are kept from step to step: a fresh params-sized allocation each step
        costs more than the arithmetic of a whole Adam update on CPU.
        """
        key, buffers = self._buffers.get(i, (None, None))
        if key != keep:  # gradients have their parameter's shape, so the kept indices identify the buffers
            buffers = [torch.empty_like(p.grad) for p in params]
            self._buffers[i] = (keep, buffers)
        torch._foreach_copy_(buffers, [p.grad for p in params])
        return buffers

    def rule_state(self, group: int = 0) -> Any:
        """The rule's state for one param group (``None`` before the first step)."""
        return self._rule_states[group]

    def frozen_params(self) -> list[torch.Tensor]:
        """The parameters :func:`freeze` holds, in param-group order."""
        return [p for g, frozen in zip(self.param_groups, self._frozen) for j, p in enumerate(g["params"]) if j in frozen]

    # -- saving -------------------------------------------------------------------------
    # torch's __getstate__ keeps only defaults, state and param_groups; without the rule, its
    # state and the frozen sets a pickled or deep-copied optimiser could not step.
    _PICKLED = ("rule", "write_grads", "_group_base", "_group_keys", "_rule_states", "_group_rules", "_frozen")

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), **{k: self.__dict__[k] for k in self._PICKLED}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_buffers", {})  # a cache: rebuilt on the next step

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["rule_state"] = [None if s is None else [t.clone() for t in tree_leaves(s)] for s in self._rule_states]
        sd["frozen"] = [sorted(f) for f in self._frozen]
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("rule_state", None)
        frozen = state_dict.pop("frozen", None)
        # Check everything before torch changes anything: a refused state dict leaves the optimiser as it was.
        saved_groups = state_dict.get("param_groups", [])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups, the optimiser has {len(self.param_groups)}")
        for i, (ours, theirs) in enumerate(zip(self.param_groups, saved_groups)):
            if "name" in ours and theirs.get("name") != ours["name"]:
                raise ValueError(f"state_dict param group {i} is named {theirs.get('name')!r}, the optimiser's "
                                 f"is {ours['name']!r}; was it saved from another partition?")
        states = self._states_from(saved)
        frozen_sets = self._frozen_from(frozen)
        for i, theirs in enumerate(saved_groups):
            missing = [k for k in self._group_keys[i] if k not in theirs]
            if missing:
                raise ValueError(f"state_dict param group {i} lacks hyperparameters {missing} of the rule "
                                 f"{self._group_base[i]}; was it saved from another rule?")
        super().load_state_dict(state_dict)
        self._group_rules = [((), base) for base in self._group_base]
        self._rule_states = states
        self._frozen = frozen_sets

    def _states_from(self, saved: list[Any] | None) -> list[Any]:
        if saved is None:
            return [None] * len(self.param_groups)
        if len(saved) != len(self.param_groups):
            raise ValueError(f"state_dict has rule state for {len(saved)} param groups, "
                             f"optimiser has {len(self.param_groups)}")
        states = []
        for i, (group, leaves) in enumerate(zip(self.param_groups, saved)):
            if leaves is None:
                states.append(None)
                continue
            template = self._group_base[i].init(group["params"])
            like = tree_leaves(template)
            if len(leaves) != len(like):
                raise ValueError(f"state_dict holds {len(leaves)} state tensors for a group, the rule "
                                 f"{self._group_base[i]} needs {len(like)}")
            states.append(tree_unflatten(template, [src.to(device=t.device, dtype=t.dtype).clone()
                                                    for src, t in zip(leaves, like)]))
        return states

    def _frozen_from(self, frozen: list[Any] | None) -> list[set[int]]:
        if frozen is None:  # saved before freeze existed, or by hand: nothing frozen
            return [set() for _ in self.param_groups]
        if len(frozen) != len(self.param_groups):
            raise ValueError(f"state_dict has frozen lists for {len(frozen)} param groups, "
                             f"optimiser has {len(self.param_groups)}")
        out = []
        for i, (group, js) in enumerate(zip(self.param_groups, frozen)):
            bad = [j for j in js if not isinstance(j, int) or not 0 <= j < len(group["params"])]
            if bad:
                raise ValueError(f"state_dict freezes parameter {bad[0]!r} of group {i}, which has "
                                 f"{len(group['params'])} parameters")
            out.append(set(js))
        return out


def _partition_groups(rule: Partition, params: Iterable[Any]) -> list[dict[str, Any]]:
    """One param group per pattern, named after it, holding ``(name, param)`` pairs."""
    params = list(params)
    if not params:
        raise ValueError("Optimizer: got an empty parameter list")
    if any(isinstance(p, dict) for p in params):
        raise ValueError("Optimizer: a partition makes the param groups itself (one per pattern); pass "
                         "model.named_parameters(), not param-group dicts")
    if not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in params):
        raise ValueError("Optimizer: partition matches parameter names, but the parameters came without "
                         "names; pass model.named_parameters() instead of model.parameters()")
    return [{"params": named, "name": pattern} for pattern, named in rule.split(params)]


def _select(state: Any, keep: list[int], n: int) -> Any:
    """The part of a state that belongs to the parameters in ``keep``.

    Per-parameter entries are plain tuples of tensors with one entry per parameter; the
    selection shares their tensors, so in-place updates reach the full state.
    """
    if isinstance(state, tuple) and not hasattr(state, "_fields") and len(state) == n \
            and all(isinstance(t, torch.Tensor) for t in state):
        return tuple(state[j] for j in keep)
    if isinstance(state, tuple):
        items = [_select(s, keep, n) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return state


# -- adjust, freeze, thaw: Optimisers.jl's adjust!, freeze!, thaw! ---------------------------

def _group_indices(opt: Optimizer, group: Any, verb: str) -> list[int]:
    """Param-group indices for ``group=``: None (all), an index, a group name, or a list of them."""
    if group is None:
        return list(range(len(opt.param_groups)))
    if isinstance(group, (list, tuple)):
        return sorted({i for g in group for i in _group_indices(opt, g, verb)})
    if isinstance(group, int) and not isinstance(group, bool):
        if not 0 <= group < len(opt.param_groups):
            raise ValueError(f"{verb}: group index {group} out of range; the optimiser has "
                             f"{len(opt.param_groups)} param groups")
        return [group]
    if isinstance(group, str):
        hits = [i for i, g in enumerate(opt.param_groups) if g.get("name") == group]
        if not hits:
            names = [g["name"] for g in opt.param_groups if "name" in g]
            raise ValueError(f"{verb}: no param group named {group!r}; named groups: "
                             f"{', '.join(repr(n) for n in names) or 'none'}")
        return hits
    raise ValueError(f"{verb}: group must be a group index, a group name or a list of them, got {group!r}")


def adjust(target: Any, *, group: Any = None, **hyper: Any) -> Any:
    """Change hyperparameters in place (Optimisers.jl ``adjust!``).

    ``adjust(opt, lr=1e-4)`` sets them on every param group of a torchdeck ``Optimizer`` whose
    rule has them (``group=`` picks groups by index or name, e.g. a partition's pattern);
    ``adjust(rule, lr=1e-4)`` returns a changed copy of a rule. Values are validated first:
    nothing changes unless all are allowed.
    """
    if isinstance(target, Rule):
        if group is not None:
            raise ValueError(f"adjust: group= picks param groups of an Optimizer; a rule has none (got {group!r})")
        return target.replace(**hyper)
    if not isinstance(target, Optimizer):
        raise TypeError(f"adjust: expected a torchdeck Optimizer or rule, got {type(target).__name__}")
    indices = _group_indices(target, group, "adjust")
    known = {k for i in indices for k in target._group_keys[i]}
    unknown = [k for k in hyper if k not in known]
    if unknown:
        bases = {id(target._group_base[i]): target._group_base[i] for i in indices}
        if len(bases) == 1:  # one rule: its own error says what it allows
            next(iter(bases.values())).replace(**{unknown[0]: hyper[unknown[0]]})
        raise ValueError(f"adjust: no param group has hyperparameter {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    changes = []
    for i in indices:
        mine = {k: v for k, v in hyper.items() if k in target._group_keys[i]}
        target._group_base[i].replace(**{**target._hyper_of(i), **mine})
        changes.append((target.param_groups[i], mine))
    for g, mine in changes:
        g.update(mine)
    return target


def _locate(opt: Optimizer, target: Any, verb: str) -> dict[int, list[int]]:
    """``{group index: [param indices]}`` for a module, a name pattern, or tensors."""
    if not isinstance(opt, Optimizer):
        raise TypeError(f"{verb}: expected a torchdeck Optimizer, got {type(opt).__name__}")
    if isinstance(target, str):
        return _locate_pattern(opt, target, verb)
    if isinstance(target, nn.Module):
        tensors, what = list(target.parameters()), f"the module {type(target).__name__}"
        if not tensors:
            raise ValueError(f"{verb}: {what} has no parameters")
    elif isinstance(target, torch.Tensor):
        tensors, what = [target], f"the tensor of shape {tuple(target.shape)}"
    elif isinstance(target, Iterable):
        tensors, what = list(target), "the given tensors"
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise ValueError(f"{verb}: expected a module, a name pattern, or tensors; got {target!r}")
    else:
        raise TypeError(f"{verb}: expected a module, a name pattern (str) or tensors, got {type(target).__name__}")
    ids = {id(t) for t in tensors}
    found: dict[int, list[int]] = {}
    for i, g in enumerate(opt.param_groups):
        js = [j for j, p in enumerate(g["params"]) if id(p) in ids]
        if js:
            found[i] = js
    if not found:
        raise ValueError(f"{verb}: none of the {len(ids)} parameters of {what} are in this optimiser")
    return found


def _locate_pattern(opt: Optimizer, pattern: str, verb: str) -> dict[int, list[int]]:
    if not any("param_names" in g for g in opt.param_groups):
        raise ValueError(f"{verb}: matching {pattern!r} needs parameter names; build the Optimizer from "
                         "model.named_parameters(), or pass the module")
    found = {i: js for i, g in enumerate(opt.param_groups) if (js := match_names(pattern, g.get("param_names", [])))}
    if not found:
        names = [n for g in opt.param_groups for n in g.get("param_names", [])]
        raise ValueError(f"{verb}: pattern {pattern!r} matches no parameter (globs, '|' between alternatives); "
                         f"names are {name_listing(names)}")
    return found


def freeze(opt: Optimizer, target: Any) -> Optimizer:
    """Stop updating some parameters (Optimisers.jl ``freeze!``), keeping their rule state.

    ``target`` is an ``nn.Module`` (its parameters, by identity), a name pattern (globs as in
    :func:`~torchdeck.optim.partition`, needs ``named_parameters()``) or tensors. Frozen
    parameters are skipped as if their gradient were ``None``: no update, state untouched,
    so :func:`thaw` continues exactly where they left. Gradients are still computed; set
    ``requires_grad_(False)`` as well to save that work.
    """
    for i, js in _locate(opt, target, "freeze").items():
        opt._frozen[i].update(js)
    return opt


def thaw(opt: Optimizer, target: Any = None) -> Optimizer:
    """Resume updating parameters that :func:`freeze` stopped; ``thaw(opt)`` thaws all."""
    if target is None:
        if not isinstance(opt, Optimizer):
            raise TypeError(f"thaw: expected a torchdeck Optimizer, got {type(opt).__name__}")
        for frozen in opt._frozen:
            frozen.clear()
        return opt
    for i, js in _locate(opt, target, "thaw").items():
        opt._frozen[i].difference_update(js)
    return opt
