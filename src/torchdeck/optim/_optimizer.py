"""``Optimizer``: any rule as a real ``torch.optim.Optimizer``."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from torchdeck._tree import tree_leaves, tree_unflatten
from torchdeck.optim._base import Rule
from torchdeck.optim._lowering import lowering_for

__all__ = ["Optimizer", "adjust"]


class Optimizer(torch.optim.Optimizer):
    """Run a rule as a torch optimiser: param groups, ``zero_grad``, ``state_dict``, LR
    schedulers and ``GradScaler`` all work as with torch's own.

    Each param group carries the rule's hyperparameters (``group["lr"]``, ``group["b1"]``, ...);
    changing them — by hand, by :func:`adjust`, or by a scheduler — changes the rule used for
    that group from the next step on. The rule's state is kept per group.

    Args:
        params: tensors, ``(name, tensor)`` pairs (e.g. ``model.named_parameters()``) or
            param-group dicts, as for any torch optimiser.
        rule: the rule (or chain) to apply.
    """

    def __init__(self, params: Iterable[Any], rule: Rule) -> None:
        if not isinstance(rule, Rule):
            raise TypeError(f"Optimizer: rule must be a torchdeck.optim rule, got {rule!r}")
        self.rule = rule
        # The rule's hyperparameter names; not ``self.defaults``, to which torch adds keys of its
        # own (``differentiable``) in ``load_state_dict``.
        self._hyper_keys = tuple(rule.hyper())
        self._rule_states: list[Any] = []
        self._group_rules: list[tuple[tuple, Rule]] = []
        self._buffers: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
        super().__init__(params, rule.hyper())

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Check the group's own values before torch keeps it: a refused group must not stay.
        self.rule.replace(**{k: param_group.get(k, self.defaults[k]) for k in self._hyper_keys})
        super().add_param_group(param_group)
        self._rule_states.append(None)
        self._group_rules.append(((), self.rule))

    def _hyper_of(self, group: dict[str, Any]) -> dict[str, Any]:
        return {k: group[k] for k in self._hyper_keys}

    def _rule_for(self, i: int, group: dict[str, Any]) -> Rule:
        # Rebuild the group's rule only when its values changed, and then only the parts that
        # changed: a schedule setting "lr" every step costs one dataclass replace (scale_lr's),
        # an unchanged group costs a tuple compare.
        values = tuple(group[k] for k in self._hyper_keys)
        cached_values, rule = self._group_rules[i]
        if values != cached_values:
            if cached_values:
                changed = {k: v for k, v, old in zip(self._hyper_keys, values, cached_values) if v != old}
            else:
                rule, changed = self.rule, dict(zip(self._hyper_keys, values))
            rule = rule.replace(**changed)
            self._group_rules[i] = (values, rule)
        return rule

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
            keep = [j for j, p in enumerate(all_params) if p.grad is not None]
            if not keep:
                continue
            params = [all_params[j] for j in keep]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("torchdeck.optim.Optimizer does not support sparse gradients")
            state = self._rule_states[i]
            if len(keep) != len(all_params):
                # Parameters without a gradient are skipped and their state left as it is.
                state = _select(state, keep, len(all_params))
            lowered = lowering_for(rule)
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

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["rule_state"] = [None if s is None else [t.clone() for t in tree_leaves(s)] for s in self._rule_states]
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("rule_state", None)
        super().load_state_dict(state_dict)
        self._group_rules = [((), self.rule) for _ in self.param_groups]
        if saved is None:
            self._rule_states = [None] * len(self.param_groups)
            return
        if len(saved) != len(self.param_groups):
            raise ValueError(f"state_dict has rule state for {len(saved)} param groups, optimiser has {len(self.param_groups)}")
        states = []
        for group, leaves in zip(self.param_groups, saved):
            if leaves is None:
                states.append(None)
                continue
            template = self.rule.init(group["params"])
            like = tree_leaves(template)
            if len(leaves) != len(like):
                raise ValueError(f"state_dict holds {len(leaves)} state tensors for a group, the rule {self.rule} needs {len(like)}")
            states.append(tree_unflatten(template, [src.to(device=t.device, dtype=t.dtype).clone()
                                                    for src, t in zip(leaves, like)]))
        self._rule_states = states


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


def adjust(target: Any, **hyper: Any) -> Any:
    """Change hyperparameters in place (Optimisers.jl ``adjust!``).

    ``adjust(opt, lr=1e-4)`` sets them on every param group of a torchdeck ``Optimizer``;
    ``adjust(rule, lr=1e-4)`` returns a changed copy of a rule. Values are validated first.
    """
    if isinstance(target, Rule):
        return target.replace(**hyper)
    if isinstance(target, Optimizer):
        for group in target.param_groups:
            target.rule.replace(**{**target._hyper_of(group), **hyper})
        for group in target.param_groups:
            group.update(hyper)
        return target
    raise TypeError(f"adjust: expected a torchdeck Optimizer or rule, got {type(target).__name__}")

