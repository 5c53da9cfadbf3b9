"""The CPU (OpenCV) backend: execute a plan's stages on the items, one kernel per item type."""

from __future__ import annotations

import time

from torchdeck.augment import _cv2_pixel, _values, _warp, _warp3d  # noqa: F401  (they register the kernels)
from torchdeck.augment._base import Options
from torchdeck.augment._items import Item
from torchdeck.augment._kernels import find_kernel
from torchdeck.augment._plan import Plan

__all__ = ["execute"]


def execute(plan: Plan, items: dict[str, Item], options: Options, times: list[float] | None = None) -> dict[str, Item]:
    """Run ``plan`` on ``items`` (not modified); with ``times``, append each stage's seconds."""
    items = dict(items)
    for stage in plan.stages:
        t0 = time.perf_counter()
        op = stage.op
        for name, item in items.items():
            kernel = find_kernel(op, type(item))
            if kernel is not None:
                items[name] = kernel(item, stage, options)
        if times is not None:
            times.append(time.perf_counter() - t0)
    return items
