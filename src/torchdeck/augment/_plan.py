"""Planning: every random choice of a pipeline is made first, without touching pixels, and
written down as a ``Plan`` of stages. Any backend then executes the plan: the OpenCV one here
(per sample), or a batched torch one, which needs only the matrices and output sizes.

Consecutive projective steps fuse into one ``Warp`` stage (one 3×3 matrix, one output size: the
lazy crop); consecutive pointwise colour steps fuse into one ``Values`` stage (one lookup table
for uint8). Anything else is an ``ItemOp`` stage of its own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from torchdeck.augment import _geometry as G

if TYPE_CHECKING:
    from torchdeck.augment._base import Transform

__all__ = ["Step", "Warp", "Values", "ItemOp", "Stage", "Plan", "Planner"]

Size = tuple[int, ...]  # (height, width), or (depth, height, width) for volumes


class Step(NamedTuple):
    """One transform as the plan met it: its sampled parameters (a small record), whether it ran
    (a ``Maybe`` may skip it), how deep it sits in the pipeline, and which stage executes it.
    (A NamedTuple: a plan makes several per sample, and these are the cheapest records.)"""

    transform: "Transform"
    params: Any
    applied: bool
    depth: int
    stage: int | None
    sample_us: float


@dataclasses.dataclass(frozen=True)
class Warp:
    """Move every item by ``matrix`` (forward, continuous coordinates, 3×3) into a frame of
    ``size`` = (height, width); the input frame is ``in_size``. Volumes: 4×4 and
    (depth, height, width)."""

    op = "warp"
    matrix: np.ndarray
    in_size: Size
    size: Size
    steps: tuple[int, ...]
    # Output pixel -> input pixel: what a sampling grid (``affine_grid``) is built from.
    inverse: np.ndarray = dataclasses.field(repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.inverse is None:
            object.__setattr__(self, "inverse", G.inverse(self.matrix))


@dataclasses.dataclass(frozen=True)
class Values:
    """Pointwise colour steps applied in order to images (one lookup table for uint8)."""

    op = "values"
    steps: tuple[tuple["Transform", Any], ...]
    step_ids: tuple[int, ...]

    @property
    def to_tensor(self) -> bool:
        """Whether the group ends with Normalize (a float C×H×W tensor comes out)."""
        return bool(self.steps) and getattr(self.steps[-1][0], "to_tensor", False)


@dataclasses.dataclass(frozen=True)
class ItemOp:
    """One transform with its own per-item kernels (blur, hue, erasing, ...)."""

    transform: "Transform"
    params: Any
    step_ids: tuple[int, ...]

    @property
    def op(self) -> str:
        return self.transform.name


Stage = Warp | Values | ItemOp


@dataclasses.dataclass(frozen=True)
class Plan:
    in_size: Size
    size: Size
    stages: tuple[Stage, ...]
    steps: tuple[Step, ...]


class Planner:
    """Collects steps into stages while a pipeline samples. ``size`` is the current (lazy) frame."""

    def __init__(self, size: Size, fuse: bool = True) -> None:
        # (height, width) for images, (depth, height, width) for volumes
        self.in_size = self.size = tuple(int(v) for v in size)
        self.fuse = fuse
        self.depth = 0
        self.normalized = False
        self._stages: list[Stage] = []
        self._steps: list[Step] = []
        self._warp: tuple[np.ndarray, Size, list[int]] | None = None  # matrix, input size, steps
        self._values: list[tuple[Any, Any, int]] = []
        self._t0 = 0.0

    # --- recording ---------------------------------------------------------------------------
    def start(self) -> None:
        self._t0 = time.perf_counter()

    def _record(self, transform: Any, params: Any, stage: int | None, applied: bool = True) -> int:
        us = (time.perf_counter() - self._t0) * 1e6 if self._t0 else 0.0
        self._steps.append(Step(transform, params, applied, self.depth, stage, us))
        self._t0 = 0.0
        return len(self._steps) - 1

    def note(self, transform: Any, params: Any, applied: bool = True) -> None:
        """A step that makes no stage (a composite's choice, a skipped Maybe, an identity)."""
        self._record(transform, params, None, applied)

    def check_dims(self, transform: Any, dims: int) -> None:
        """A 2-D transform needs an image's frame, a 3-D one a volume's."""
        if dims != len(self.size):
            kind = {2: "an image (height, width)", 3: "a volume (depth, height, width)"}.get(len(self.size), "a frame")
            raise ValueError(f"{transform.name}: a {dims}-D transform cannot move {kind} of size {self.size}; use the "
                             f"{'3-D transforms (Rotate3D, ...)' if len(self.size) == 3 else '2-D ones (Rotate, ...)'}")

    # --- the three kinds of step --------------------------------------------------------------
    def geometry(self, transform: Any, params: Any, matrix: np.ndarray, size: Size) -> None:
        self.check_dims(transform, matrix.shape[0] - 1)
        if self._values:
            self._flush_values()
        step = self._record(transform, params, len(self._stages))
        if self._warp is None:
            self._warp = (matrix, self.size, [step])
        else:
            m, in_size, steps = self._warp
            steps.append(step)
            self._warp = (matrix @ m, in_size, steps)
        self.size = tuple(int(v) for v in size)
        if not self.fuse:
            self._flush_warp()

    def values(self, transform: Any, params: Any) -> None:
        if self.normalized:
            raise ValueError(f"{transform.name}: colour changes need 0..1 values, but Normalize already ran; "
                             "put Normalize after the colour transforms")
        self._flush_warp()
        self._values.append((transform, params, self._record(transform, params, len(self._stages))))
        if getattr(transform, "to_tensor", False):
            self.normalized = True
            self._flush_values()
        elif not self.fuse:
            self._flush_values()

    def item_op(self, transform: Any, params: Any) -> None:
        if self.normalized and getattr(transform, "needs_unit_range", False):
            raise ValueError(f"{transform.name}: needs 0..1 values, but Normalize already ran; put it before Normalize")
        self._flush_warp()
        self._flush_values()
        i = self._record(transform, params, len(self._stages))
        self._stages.append(ItemOp(transform, params, (i,)))

    # --- stages ------------------------------------------------------------------------------
    def _flush_warp(self) -> None:
        if self._warp is None:
            return
        m, in_size, steps = self._warp
        self._warp = None
        if in_size == self.size and G.is_identity(m):
            # Nothing moves (a flip that did not happen, a resize to the same size): no stage.
            for i in steps:
                self._steps[i] = self._steps[i]._replace(stage=None)
            return
        self._stages.append(Warp(m, in_size, self.size, tuple(steps)))

    def _flush_values(self) -> None:
        if not self._values:
            return
        vals, self._values = self._values, []
        self._stages.append(Values(tuple((t, p) for t, p, _ in vals), tuple(i for _, _, i in vals)))

    def finish(self) -> Plan:
        self._flush_warp()
        self._flush_values()
        return Plan(self.in_size, self.size, tuple(self._stages), tuple(self._steps))
