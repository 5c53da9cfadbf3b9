"""Per-item-type kernels: ``(operation, item type) -> function``, found through the item's class
hierarchy; registering the same pair twice is an error. No branching on types anywhere else.

A kernel is ``fn(item, stage, options) -> item``; ``stage`` is the plan stage (``Warp``,
``Values`` or ``ItemOp``, holding the sampled parameters). Kernels never write into their input.

The batched torch backend has its own registry, by operation only (its batch is images):
``BATCH_KERNELS[op] = fn(x, stages, context) -> x`` with ``x`` an n×C×H×W float tensor and one
``ItemOp`` stage per sample (see ``_torch_pixel``).
"""

from __future__ import annotations

from typing import Any, Callable

from torchdeck.augment._items import Item

__all__ = ["KERNELS", "register_kernel", "find_kernel", "BATCH_KERNELS", "register_batch_kernel"]

Kernel = Callable[[Any, Any, Any], Any]
KERNELS: dict[tuple[str, type], Kernel] = {}


def register_kernel(op: str, item_type: type[Item]) -> Callable[[Kernel], Kernel]:
    def deco(fn: Kernel) -> Kernel:
        key = (op, item_type)
        if key in KERNELS:
            raise ValueError(f"kernel for {op!r} on {item_type.__name__} registered twice "
                             f"({KERNELS[key].__qualname__}, {fn.__qualname__})")
        KERNELS[key] = fn
        return fn
    return deco


def find_kernel(op: str, item_type: type) -> Kernel | None:
    for cls in item_type.__mro__:
        fn = KERNELS.get((op, cls))
        if fn is not None:
            return fn
    return None


BATCH_KERNELS: dict[str, Kernel] = {}


def register_batch_kernel(op: str) -> Callable[[Kernel], Kernel]:
    def deco(fn: Kernel) -> Kernel:
        if op in BATCH_KERNELS:
            raise ValueError(f"batch kernel for {op!r} registered twice ({BATCH_KERNELS[op].__qualname__}, "
                             f"{fn.__qualname__})")
        BATCH_KERNELS[op] = fn
        return fn
    return deco
