"""Optimiser state to and from safetensors: readable keys, a structure check on load, exact round trip.

Keys spell the path to each tensor through the rule and its state:
``group0.chain.1.adam.mu.3`` is the first moment of the 4th parameter, kept by the ``adam`` that
is rule 1 of group 0's chain (a partitioned Optimizer has one group per pattern). A lone state
(the functional API) is rooted at ``state.`` instead of ``group<i>.``; a bound partition in it
adds ``partition[<pattern>]`` (``state.chain.1.partition[*.bias].sgd...``).

The file's metadata (``"torchdeck.optim"``, JSON) records each group's rule spec, its
param-group entries (hyperparameters, names), frozen parameters and the state's non-tensor
leaves, so :func:`load_state` can check the structure before it changes anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from torchdeck.optim._base import Rule
from torchdeck.optim._chain import Chain
from torchdeck.optim._optimizer import Optimizer
from torchdeck.optim._partition import Partition
from torchdeck.optim._spec import rule_from_spec

__all__ = ["save_state", "load_state", "state_keys"]

FORMAT = 1
META_KEY = "torchdeck.optim"
# Leaves that aren't tensors but may sit in a state (a Python counter); kept in the metadata.
_SCALARS = (bool, int, float, str)
# How many differing keys an error lists.
_SHOWN = 6

Leaf = Callable[[str, Any], Any]


# -- walking a state along its rule -------------------------------------------------------

def _walk(state: Any, rule: Rule | None, path: str, leaf: Leaf) -> Any:
    """Rebuild ``state`` with ``leaf(key, x)`` at each leaf; keys name rules where ``rule`` is known.

    Where the rule and the state disagree (a state of another rule) the walk carries on
    without the rule, so the keys differ and the caller reports the difference.
    """
    if isinstance(rule, Chain) and _is_plain_tuple(state) and len(state) == len(rule.rules):
        return tuple(_walk(s, r, f"{path}.{rule.name}.{k}", leaf) for k, (s, r) in enumerate(zip(state, rule.rules)))
    if isinstance(rule, Partition) and _is_plain_tuple(state) and len(state) == len(rule.parts):
        return tuple(_walk(s, r, f"{path}.partition[{p}]", leaf) for s, (p, r) in zip(state, rule.parts.items()))
    if isinstance(rule, Rule) and not isinstance(rule, (Chain, Partition)):
        path = f"{path}.{rule.name}"
    return _walk_plain(state, path, leaf)


def _walk_plain(state: Any, path: str, leaf: Leaf) -> Any:
    if isinstance(state, torch.Tensor) or isinstance(state, _SCALARS):
        return leaf(path, state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(_walk_plain(v, f"{path}.{f}", leaf) for f, v in zip(state._fields, state)))
    if isinstance(state, (tuple, list)):
        return type(state)(_walk_plain(v, f"{path}.{k}", leaf) for k, v in enumerate(state))
    if state is None:
        return None
    raise ValueError(f"save_state: the state at {path!r} is a {type(state).__name__}; a rule state holds "
                     "tensors, numbers and (named) tuples of them")


def _is_plain_tuple(x: Any) -> bool:
    return isinstance(x, tuple) and not hasattr(x, "_fields")


def state_keys(state: Any, rule: Rule | None = None, root: str = "state") -> dict[str, Any]:
    """``{key: leaf}`` for a state, in order; the keys :func:`save_state` writes."""
    out: dict[str, Any] = {}

    def record(key: str, x: Any) -> Any:
        out[key] = x
        return x

    _walk(state, rule, root, record)
    return out


# -- saving -------------------------------------------------------------------------------

def _json_entries(group: dict[str, Any], i: int) -> dict[str, Any]:
    entries = {}
    for k, v in group.items():
        if k == "params":
            continue
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            raise ValueError(f"save_state: param group {i} entry {k!r} holds a {type(v).__name__}, which the "
                             "file's metadata cannot store; use torch.save(opt.state_dict()) instead") from None
        entries[k] = v
    return entries


def _entry(leaves: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Move the tensor leaves into ``tensors``; return the scalar leaves (for the metadata)."""
    scalars = {}
    seen: set[int] = set()
    for key, x in leaves.items():
        if isinstance(x, torch.Tensor):
            t = x.detach().to("cpu").contiguous()
            # safetensors refuses tensors sharing memory; a state may hold one tensor twice.
            if t.untyped_storage().data_ptr() in seen:
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
            tensors[key] = t
        else:
            scalars[key] = x
    return scalars


def save_state(path: str | os.PathLike, obj: Any, *, rule: Rule | None = None) -> None:
    """Save an ``Optimizer``'s state (rule states, hyperparameters, frozen parameters), or a
    lone rule state, to a safetensors file.

    Args:
        path: the file; written next to itself first and then renamed, so a crash while
            saving leaves an older file whole.
        obj: a torchdeck ``Optimizer`` or a state from ``rule.init`` / ``rule.update``.
        rule: for a lone state, the rule it belongs to: its names go into the keys and its
            spec into the metadata (optional).
    """
    tensors: dict[str, torch.Tensor] = {}
    if isinstance(obj, Optimizer):
        if rule is not None:
            raise ValueError("save_state: rule= is for a lone state; an Optimizer knows its rules")
        groups = []
        for i, group in enumerate(obj.param_groups):
            group_rule = obj.group_rule(i)
            state = obj.rule_state(i)
            leaves = {} if state is None else state_keys(state, group_rule, root=f"group{i}")
            groups.append({"rule": group_rule.to_spec(), "entries": _json_entries(group, i),
                           "n_params": len(group["params"]), "frozen": sorted(obj._frozen[i]),
                           "initialized": state is not None, "scalars": _entry(leaves, tensors)})
        meta = {"format": FORMAT, "kind": "optimizer", "groups": groups}
    elif isinstance(obj, torch.optim.Optimizer):
        raise ValueError(f"save_state: {type(obj).__name__} is not a torchdeck Optimizer; use "
                         "torch.save(opt.state_dict()) for torch's own optimisers")
    else:
        if rule is not None and not isinstance(rule, Rule):
            raise ValueError(f"save_state: rule must be a torchdeck.optim rule, got {rule!r}")
        scalars = _entry(state_keys(obj, rule), tensors)
        meta = {"format": FORMAT, "kind": "state", "rule": None if rule is None else rule.to_spec(), "scalars": scalars}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    os.replace(tmp, path)


# -- loading ------------------------------------------------------------------------------

def _read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not Path(path).is_file():
        raise ValueError(f"load_state: no file at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_text = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a damaged or foreign file
        raise ValueError(f"load_state: {str(path)!r} is not a readable safetensors file ({e})") from None
    if meta_text is None:
        raise ValueError(f"load_state: {str(path)!r} has no {META_KEY!r} metadata; it was not written by save_state")
    meta = json.loads(meta_text)
    if meta.get("format") != FORMAT:
        raise ValueError(f"load_state: {str(path)!r} has format {meta.get('format')!r}; this version reads {FORMAT}")
    return meta, tensors


def _describe(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (f" ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _rebuild(template: Any, rule: Rule | None, root: str, tensors: dict[str, torch.Tensor],
             scalars: dict[str, Any], where: str, saved_rule: Any) -> Any:
    """``template`` with the file's leaves, after checking the file has exactly its keys and shapes."""
    expected = state_keys(template, rule, root)
    in_file = sorted([k for k in tensors if k == root or k.startswith(root + ".")] + list(scalars))
    missing = sorted(set(expected) - set(in_file))
    extra = sorted(set(in_file) - set(expected))
    if missing or extra:
        here = "" if rule is None else f"; this rule: {rule}"
        raise ValueError(f"load_state: {where} holds the state of another rule structure (saved rule: "
                         f"{_spec_text(saved_rule)}{here}). Keys missing from the file: {_describe(missing) or 'none'}; "
                         f"keys only in the file: {_describe(extra) or 'none'}")
    for key, like in expected.items():
        if isinstance(like, torch.Tensor) and tuple(tensors[key].shape) != tuple(like.shape):
            raise ValueError(f"load_state: {where}: {key} has shape {tuple(tensors[key].shape)} in the file, "
                             f"{tuple(like.shape)} here (parameters of another model?)")

    def take(key: str, like: Any) -> Any:
        if isinstance(like, torch.Tensor):
            # On the template's device and dtype, as torch's load_state_dict casts state to its parameter.
            return tensors[key].to(device=like.device, dtype=like.dtype)
        return scalars[key]

    return _walk(template, rule, root, take)


def _spec_text(spec: Any) -> str:
    if spec is None:
        return "not recorded"
    try:
        return str(rule_from_spec(spec))
    except ValueError:
        return json.dumps(spec)


def load_state(path: str | os.PathLike, like: Any, *, rule: Rule | None = None) -> Any:
    """Load what :func:`save_state` wrote.

    Args:
        path: the safetensors file.
        like: a torchdeck ``Optimizer`` to load into (in place; returned), or a template state
            (``rule.init(params)``) whose structure, devices and dtypes the loaded state takes
            (a new state is returned).
        rule: for a lone state, the rule it belongs to; by default the rule recorded in the file.

    Raises ``ValueError`` naming the difference when the file holds another structure
    (another rule, other parameters, another partition); nothing is changed then.
    """
    meta, tensors = _read(path)
    where = repr(str(path))
    if isinstance(like, Optimizer):
        if meta["kind"] != "optimizer":
            raise ValueError(f"load_state: {where} holds a lone rule state; load it with load_state(path, like=<state>)")
        return _load_optimizer(like, meta, tensors, where)
    if meta["kind"] != "state":
        raise ValueError(f"load_state: {where} holds an Optimizer's state; load it with load_state(path, opt)")
    if rule is None and meta.get("rule") is not None:
        rule = rule_from_spec(meta["rule"])  # for the names in the keys
    return _rebuild(like, rule, "state", tensors, meta["scalars"], where, meta.get("rule"))


def _load_optimizer(opt: Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor], where: str) -> Optimizer:
    groups = meta["groups"]
    if len(groups) != len(opt.param_groups):
        raise ValueError(f"load_state: {where} holds {len(groups)} param groups, the optimiser has {len(opt.param_groups)}")
    # Check and build everything first; change the optimiser only when all groups passed.
    loaded = []
    for i, (saved, group) in enumerate(zip(groups, opt.param_groups)):
        entries = saved["entries"]
        gwhere = f"{where} group {i}"
        if saved["n_params"] != len(group["params"]):
            raise ValueError(f"load_state: {gwhere} has {saved['n_params']} parameters, the optimiser's has "
                             f"{len(group['params'])}")
        if "name" in group and entries.get("name") != group["name"]:
            raise ValueError(f"load_state: {gwhere} is named {entries.get('name')!r}, the optimiser's is "
                             f"{group['name']!r}; was it saved from another partition?")
        ours, theirs = group.get("param_names"), entries.get("param_names")
        if ours is not None and theirs is not None and ours != theirs:
            j = next(j for j, (a, b) in enumerate(zip(ours, theirs)) if a != b)
            raise ValueError(f"load_state: {gwhere} parameter {j} is {theirs[j]!r} in the file, {ours[j]!r} here")
        base = opt._group_base[i]
        if saved["initialized"]:
            state = _rebuild(base.init(group["params"]), base, f"group{i}", tensors, saved["scalars"], gwhere, saved["rule"])
        else:
            state = None
        missing = [k for k in opt._group_keys[i] if k not in entries]
        if missing:
            raise ValueError(f"load_state: {gwhere} lacks hyperparameters {missing} of the rule {base}; saved "
                             f"rule: {_spec_text(saved['rule'])}")
        base.replace(**{k: entries[k] for k in opt._group_keys[i]})  # the saved values must still be allowed
        loaded.append((entries, state, set(saved["frozen"])))
    for i, (entries, state, frozen) in enumerate(loaded):
        opt.param_groups[i].update({k: v for k, v in entries.items() if k != "param_names"})
        opt._rule_states[i] = state
        opt._frozen[i] = frozen
    opt._group_rules = [((), base) for base in opt._group_base]
    return opt
