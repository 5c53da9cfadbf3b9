"""The batched torch backend: the same plans as the OpenCV path, executed on a B×C×H×W tensor on
any device. Each sample's plan comes from ``Transform.plan`` (same seed, same parameters); the
batch then runs each round of Warp stages as ONE ``grid_sample`` (the grid built straight from
the per-sample 3×3 inverse matrices, so perspective needs nothing extra) and each round of
Values stages as tensor ops.

Samples' plans need not have the same stages (a Maybe that did not fire, a RandomErasing that
skipped, a OneOf's other choice): the stages are scheduled into rounds in pipeline order, each
round one kind (a warp, a colour group, or one ItemOp such as blur), run once for the samples
that have it while the others wait. ItemOp stages (blur, noise, erasing, hue, saturation,
grayscale) run through the batch kernels in ``_torch_pixel``; an ItemOp without one is refused
with the transform's name.

Differences from the OpenCV path, all within interpolation tolerance: values stay float (no
rounding to uint8 between stages); colour maps other than clipped lines are applied through a
1025-point table with linear interpolation; there is no antialiasing prefilter for shrinks of
2x or more; ``border="reflect"`` is torch's reflection, which repeats the edge pixel (OpenCV's
REFLECT_101 does not); hue is turned in float HSV (see ``_torch_pixel``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from torchdeck.augment import _torch_pixel  # noqa: F401  (it registers the batch kernels)
from torchdeck.augment._base import Options, Transform
from torchdeck.augment._grid import sampling_grid
from torchdeck.augment._kernels import BATCH_KERNELS
from torchdeck.augment._plan import ItemOp, Plan, Stage, Values, Warp
from torchdeck.augment._rng import make_rng
from torchdeck.augment._torch_pixel import BatchContext
from torchdeck.augment._values import LUMA, colour_channels
from torchdeck.augment._warp import _within

__all__ = ["apply_batch", "sample_seeds"]

_MODES = {"nearest": "nearest", "linear": "bilinear", "cubic": "bicubic"}
_TABLE = 1025  # knots of the table a non-linear colour map is applied through


def sample_seeds(seed: Any, n: int) -> list[int]:
    """Per-sample seeds for a batch: ``base + i`` with ``base`` one 64-bit draw from ``seed``
    (an int, a torch.Generator or None), so sample i's plan is ``pipe.plan(size, seed=seeds[i])``."""
    base = make_rng(seed).seed64()
    return [base + i for i in range(n)]


def apply_batch(pipe: Transform, images: torch.Tensor, masks: torch.Tensor | None = None, *, seed: Any = None,
                plans: Sequence[Plan] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``images``: B×C×H×W, uint8 (0..255) or float (0..1), on any device; ``masks``: B×H×W
    integer labels (nearest-neighbour, ``mask_fill`` outside). Returns float images (0..1, or
    normalised if the pipeline ends with Normalize) and the masks (or None). ``plans``: one per
    sample, else sampled from ``seed`` (see :func:`sample_seeds`)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"apply_batch: images must be a B×C×H×W tensor, got {getattr(images, 'shape', images)!r}")
    b, c, h, w = images.shape
    if masks is not None and (not isinstance(masks, torch.Tensor) or tuple(masks.shape) != (b, h, w)):
        raise ValueError(f"apply_batch: masks must be a B×H×W tensor of shape {(b, h, w)}, "
                         f"got {getattr(masks, 'shape', masks)!r}")
    if plans is None:
        plans = [pipe.plan((h, w), seed=s) for s in sample_seeds(seed, b)]
    if len(plans) != b:
        raise ValueError(f"apply_batch: {len(plans)} plans for a batch of {b}")
    unit = 255.0 if images.dtype == torch.uint8 else 1.0  # fill is given in the images' units
    # The warp is linear in the values: scaling to 0..1 after it spares a pass over the input.
    x, pending = images.float(), unit
    opts = pipe.options
    normalized = False
    for kind, stages in _rounds(plans, pipe):
        if kind == "warp":
            x, masks = _warp_round(x, masks, stages, opts, unit, pending)
        else:
            x = x / pending if pending != 1.0 else x
            if kind == "values":
                x = _values_round(x, stages)
                normalized = normalized or any(st is not None and st.to_tensor for st in stages)
            else:
                x = _item_round(x, stages, BatchContext(opts, images.dtype == torch.uint8, normalized))
        pending = 1.0
    return (x / pending if pending != 1.0 else x), masks


def _kind(stage: Stage) -> str:
    """The round a stage runs in: "warp", "values", or the ItemOp's operation."""
    if isinstance(stage, ItemOp) and stage.op not in BATCH_KERNELS:
        raise ValueError(f"apply_batch: {stage.op} is not batched yet (batched: projective and pointwise colour "
                         f"transforms, {', '.join(sorted(BATCH_KERNELS))}); use the per-sample pipeline for it")
    return stage.op


def _pipeline_order(pipe: Transform) -> dict[int, int]:
    """Each transform of the pipeline's tree (by identity) -> its place in depth-first order, all
    members of a OneOf / SomeOf included, so samples that chose differently still agree."""
    order: dict[int, int] = {}

    def visit(t: Transform) -> None:
        order.setdefault(id(t), len(order))
        for field in t.nested:
            v = getattr(t, field)
            for inner in (v if isinstance(v, tuple) else (v,)):
                visit(inner)
    visit(pipe)
    return order


def _stage_steps(stage: Stage) -> tuple[int, ...]:
    return stage.steps if isinstance(stage, Warp) else stage.step_ids


def _rounds(plans: Sequence[Plan], pipe: Transform) -> list[tuple[str, list[Any]]]:
    """The plans as rounds: (kind, one stage or None per sample), each sample's stages in order.

    Each round runs the waiting stage that comes first in pipeline order, placed by its *last*
    step: a warp fused across a step another sample still has to run (Rotate, Maybe(Blur),
    Resize without the blur is one warp) then waits until that step has run, so every warp
    round sees one frame size. Samples without a stage of the round's kind (or, for a warp, of
    its output size) wait: an identity there. Running a sample's stage in an earlier round than
    another's is harmless (each sample's own order is kept); only the frame size must agree."""
    order = _pipeline_order(pipe)
    queues = []
    for plan in plans:
        queue = []
        for st in plan.stages:
            place = max((order.get(id(plan.steps[i].transform), math.inf) for i in _stage_steps(st)),
                        default=math.inf)
            queue.append((place, _kind(st), st))
        queues.append(queue)
    heads = [0] * len(plans)
    rounds = []
    while True:
        waiting = [(q[i][0], k, q[i][1]) for k, (q, i) in enumerate(zip(queues, heads)) if i < len(q)]
        if not waiting:
            return rounds
        _, first, kind = min(waiting)
        # A warp into another frame size cannot share the round (the batch is one tensor); it
        # waits for a round of its own size.
        size = queues[first][heads[first]][2].size if kind == "warp" else None
        stages: list[Any] = []
        for k, q in enumerate(queues):
            if heads[k] < len(q) and q[heads[k]][1] == kind and (size is None or q[heads[k]][2].size == size):
                stages.append(q[heads[k]][2])
                heads[k] += 1
            else:
                stages.append(None)
        rounds.append((kind, stages))


def _item_round(x: torch.Tensor, stages: list[ItemOp | None], ctx: BatchContext) -> torch.Tensor:
    """One ItemOp for the samples that have it (the others pass through)."""
    idx = [i for i, st in enumerate(stages) if st is not None]
    kernel = BATCH_KERNELS[stages[idx[0]].op]
    if len(idx) == len(stages):
        return kernel(x, stages, ctx)
    rows = torch.tensor(idx, device=x.device)
    return x.index_copy(0, rows, kernel(x.index_select(0, rows), [stages[i] for i in idx], ctx))


def _warp_round(x: torch.Tensor, masks: torch.Tensor | None, stages: list[Warp | None],
                opts: Options, unit: float, pending: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    in_size = (x.shape[-2], x.shape[-1])
    sizes = {st.size for st in stages if st is not None} | ({in_size} if None in stages else set())
    if len(sizes) != 1:
        raise ValueError(f"apply_batch: the samples of a batch come out in different sizes {sorted(sizes)}; "
                         "a batch is one tensor: end the pipeline with a fixed-size resize or crop, and put "
                         "random-size steps where no blur, noise or other per-sample op separates them from it")
    size = sizes.pop()
    eye = np.eye(3)
    inverses = np.stack([eye if st is None else st.inverse for st in stages])
    # As the OpenCV path: an output inside the input repeats the edge pixel for its last half pixel.
    clamp = np.array([opts.border == "replicate" or st is None or _within(st) for st in stages])
    grid = sampling_grid(inverses, in_size, size, clamp, x.device)
    pad = {"constant": "zeros", "replicate": "border", "reflect": "reflection"}[opts.border]
    out = F.grid_sample(x, grid, mode=_MODES[opts.interpolation], padding_mode=pad, align_corners=False)
    if pending != 1.0:
        out = out.div_(pending)
    fill = opts.fill if isinstance(opts.fill, tuple) else (opts.fill,)
    if opts.border == "constant" and any(f != 0 for f in fill):
        # What the zero padding left uncovered takes the fill (a partial cover blends, as cv2 does).
        cover = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode=_MODES[opts.interpolation], padding_mode="zeros",
                              align_corners=False)
        f = torch.tensor(fill if len(fill) > 1 else fill * x.shape[1], dtype=out.dtype, device=out.device)
        out = out + (1.0 - cover) * (f / unit).view(1, -1, 1, 1)
    if masks is not None:
        m = masks.to(torch.float64)[:, None]
        mm = F.grid_sample(m, grid.double(), mode="nearest", padding_mode="zeros" if pad == "zeros" else pad,
                           align_corners=False)
        if opts.border == "constant" and opts.mask_fill != 0:
            inside = F.grid_sample(torch.ones_like(m), grid.double(), mode="nearest", align_corners=False)
            mm = torch.where(inside > 0.5, mm, torch.full_like(mm, float(opts.mask_fill)))
        masks = mm[:, 0].round().to(masks.dtype)
    return out, masks


def _values_round(x: torch.Tensor, stages: list[Values | None]) -> torch.Tensor:
    """Each sample's colour group, step by step; steps are per sample (different parameters), the
    pixel work is whole-image tensor ops."""
    c = x.shape[1]
    cc = colour_channels(c)
    out = []
    for i, st in enumerate(stages):
        v = x[i]
        if st is not None:
            for t, p in st.steps:
                if getattr(t, "to_tensor", False):
                    v = _through_table(v, lambda r: t.normalize(p, r), all_channels=True)
                    continue
                mean = _grey(v[:cc]) if t.needs_mean else 0.0
                line = t.line(p, mean)
                if line is not None:
                    v = torch.cat([(v[:cc] * line[0] + line[1]).clamp(0.0, 1.0), v[cc:]])
                else:
                    v = _through_table(v, lambda r: t.value_map(p, r, mean), all_channels=False)
        out.append(v)
    return torch.stack(out)


def _grey(v: torch.Tensor) -> float:
    means = v.mean(dim=(1, 2)).double().cpu().numpy()
    return float(means[0]) if len(means) == 1 else float(LUMA @ means[:3])


def _through_table(v: torch.Tensor, fn: Any, all_channels: bool) -> torch.Tensor:
    """``fn`` (numpy, C×N values -> C×N) sampled on a ramp and applied with linear interpolation."""
    c = v.shape[0]
    cc = c if all_channels else colour_channels(c)
    ramp = np.linspace(0.0, 1.0, _TABLE)
    table = torch.as_tensor(np.asarray(fn(np.tile(ramp, (cc, 1))), dtype=np.float64), dtype=v.dtype,
                            device=v.device)                                  # cc×K
    pos = v[:cc].clamp(0.0, 1.0).reshape(cc, -1) * (_TABLE - 1)
    lo = pos.floor().long().clamp_max(_TABLE - 2)
    frac = pos - lo
    a, b = table.gather(1, lo), table.gather(1, lo + 1)
    mapped = (a + (b - a) * frac).reshape(v[:cc].shape)
    return torch.cat([mapped, v[cc:]]) if cc < c else mapped
