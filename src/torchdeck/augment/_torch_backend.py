"""The batched torch backend: the same plans as the OpenCV path, executed on a B×C×H×W tensor on
any device. Each sample's plan comes from ``Transform.plan`` (same seed, same parameters); the
batch then runs each round of Warp stages as ONE ``grid_sample`` (the grid built straight from
the per-sample 3×3 inverse matrices, so perspective needs nothing extra) and each round of
Values stages as tensor ops.

Plans alternate Warp and Values stages (the planner fuses runs of each); samples whose plan
lacks a stage another sample has (a Maybe that did not fire) get an identity there, so the
rounds line up. ItemOp stages (blur, noise, erasing, hue, ...) are not batched yet: such a
pipeline is refused with the transform's name.

Differences from the OpenCV path, all within interpolation tolerance: values stay float (no
rounding to uint8 between stages); colour maps other than clipped lines are applied through a
1025-point table with linear interpolation; there is no antialiasing prefilter for shrinks of
2x or more; ``border="reflect"`` is torch's reflection, which repeats the edge pixel (OpenCV's
REFLECT_101 does not).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from torchdeck.augment._base import Options, Transform
from torchdeck.augment._plan import Plan, Values, Warp
from torchdeck.augment._rng import make_rng
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
    for kind, stages in _rounds(plans, (h, w)):
        if kind == "warp":
            x, masks = _warp_round(x, masks, stages, opts, unit, pending)
        else:
            x = _values_round(x / pending if pending != 1.0 else x, stages)
        pending = 1.0
    return (x / pending if pending != 1.0 else x), masks


def _rounds(plans: Sequence[Plan], size: tuple[int, int]) -> list[tuple[str, list[Any]]]:
    """The plans as aligned rounds: warp, values, warp, ... with None where a sample has none."""
    seqs = []
    for plan in plans:
        seq: list[Any] = []
        for st in plan.stages:
            if not isinstance(st, (Warp, Values)):
                raise ValueError(f"apply_batch: {st.op} is not batched yet (only projective and pointwise colour "
                                 "transforms are); use the per-sample pipeline for it")
            if isinstance(st, Warp) != (len(seq) % 2 == 0):
                seq.append(None)  # the other kind's empty slot keeps warp rounds at even places
            seq.append(st)
        seqs.append(seq)
    n = max((len(s) for s in seqs), default=0)
    return [("warp" if r % 2 == 0 else "values", [s[r] if r < len(s) else None for s in seqs]) for r in range(n)]


def _grid(inverses: np.ndarray, in_size: tuple[int, int], size: tuple[int, int], clamp: np.ndarray,
          device: torch.device) -> torch.Tensor:
    """grid_sample's grid (B×H'×W'×2, align_corners=False) from output->input 3×3 maps in
    continuous coordinates (pixel centres at +0.5). ``clamp``: samples whose source points are
    held within the outermost pixel centres (the edge pixel repeats, as cv2's BORDER_REPLICATE)."""
    (ih, iw), (oh, ow) = in_size, size
    # float32: coordinates of a few thousand pixels keep ~1e-4 px, far below interpolation error.
    inv = torch.as_tensor(inverses, dtype=torch.float32, device=device)
    ys = torch.arange(oh, dtype=torch.float32, device=device) + 0.5
    xs = torch.arange(ow, dtype=torch.float32, device=device) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(1, -1, 3)  # 1×N×3
    src = pts @ inv.transpose(1, 2)                                             # B×N×3
    z = src[..., 2:].clamp_min(1e-6)  # points behind the projection land far outside: fill
    sx, sy = src[..., 0] / z[..., 0], src[..., 1] / z[..., 0]
    keep = torch.as_tensor(clamp, device=device)[:, None]
    sx = torch.where(keep, sx.clamp(0.5, iw - 0.5), sx)
    sy = torch.where(keep, sy.clamp(0.5, ih - 0.5), sy)
    grid = torch.stack([sx * (2.0 / iw) - 1.0, sy * (2.0 / ih) - 1.0], dim=-1)
    return grid.reshape(-1, oh, ow, 2)


def _warp_round(x: torch.Tensor, masks: torch.Tensor | None, stages: list[Warp | None],
                opts: Options, unit: float, pending: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    in_size = (x.shape[-2], x.shape[-1])
    sizes = {st.size for st in stages if st is not None} | ({in_size} if None in stages else set())
    if len(sizes) != 1:
        raise ValueError(f"apply_batch: the samples of a batch come out in different sizes {sorted(sizes)}; "
                         "end the pipeline with a fixed-size resize or crop")
    size = sizes.pop()
    eye = np.eye(3)
    inverses = np.stack([eye if st is None else st.inverse for st in stages])
    # As the OpenCV path: an output inside the input repeats the edge pixel for its last half pixel.
    clamp = np.array([opts.border == "replicate" or st is None or _within(st) for st in stages])
    grid = _grid(inverses, in_size, size, clamp, x.device)
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
