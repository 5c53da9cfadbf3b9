"""Tiny pytree helpers for rule states: nested NamedTuples / tuples / lists of tensors.

Rule states are plain nested tuples so they print readably and need no registration;
these helpers flatten them to a list of tensors (for saving) and rebuild them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["tree_leaves", "tree_map", "tree_unflatten"]


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def tree_map(fn: Callable[[torch.Tensor], Any], tree: Any) -> Any:
    """Apply ``fn`` to every tensor leaf, keeping the container structure."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if _is_namedtuple(tree):
        return type(tree)(*(tree_map(fn, x) for x in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, x) for x in tree)
    return tree


def tree_leaves(tree: Any) -> list[torch.Tensor]:
    """The tensor leaves in a fixed depth-first order."""
    out: list[torch.Tensor] = []
    tree_map(out.append, tree)
    return out


def tree_unflatten(template: Any, leaves: list[torch.Tensor]) -> Any:
    """Rebuild ``template``'s structure from ``leaves`` (in ``tree_leaves`` order)."""
    it = iter(leaves)

    def take(_: torch.Tensor) -> torch.Tensor:
        leaf = next(it, None)
        if leaf is None:
            raise ValueError(f"state has fewer tensors than the rule expects ({len(leaves)} given)")
        return leaf

    rebuilt = tree_map(take, template)
    if next(it, None) is not None:
        raise ValueError(f"state has more tensors than the rule expects ({len(leaves)} given)")
    return rebuilt
