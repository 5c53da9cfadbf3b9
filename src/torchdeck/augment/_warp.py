"""The fused warp on the CPU: one OpenCV call per item (per channel plane for C×H×W data),
computing only the output frame. Whole-pixel maps (flips, quarter turns, crops inside the
frame) are done by slicing instead: bit-exact and cheaper."""

from __future__ import annotations

import math

import cv2
import numpy as np

from torchdeck.augment import _geometry as G
from torchdeck.augment._base import Options
from torchdeck.augment._items import Boxes, Image, Keypoints, Mask
from torchdeck.augment._kernels import register_kernel
from torchdeck.augment._plan import Warp

__all__ = ["warp_image", "warp_mask", "warp_keypoints", "warp_boxes", "warp_plane"]

_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
# "reflect" as in numpy/torch padding (the edge pixel is not repeated): OpenCV's REFLECT_101.
_BORDER = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}


def _axis(step: int, start: int, n: int, limit: int) -> slice | None:
    last = start + step * (n - 1)
    if min(start, last) < 0 or max(start, last) >= limit:
        return None
    return slice(start, start + n) if step == 1 else slice(start, last - 1 if last > 0 else None, -1)


def _by_slicing(data: np.ndarray, row_axis: int, inv: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """The warp as a strided view copy when it moves whole pixels and stays inside the input."""
    im = G.integer_map(inv)
    if im is None:
        return None
    transposed, sx, bx, sy, by = im
    h, w = size
    if transposed:  # out[y, x] = src[sy*x + by, sx*y + bx] = srcᵀ[sx*y + bx, sy*x + by]
        data = np.swapaxes(data, row_axis, row_axis + 1)
        rows, cols = (sx, bx), (sy, by)
    else:
        rows, cols = (sy, by), (sx, bx)
    rs = _axis(*rows, h, data.shape[row_axis])
    cs = _axis(*cols, w, data.shape[row_axis + 1])
    if rs is None or cs is None:
        return None  # reaches outside: the warp fills the border
    index: list[slice] = [slice(None)] * data.ndim
    index[row_axis], index[row_axis + 1] = rs, cs
    return np.ascontiguousarray(data[tuple(index)])


def warp_plane(src: np.ndarray, m: np.ndarray, size: tuple[int, int], interpolation: int, border: int,
               fill: float | tuple[float, ...], dst: np.ndarray | None = None) -> np.ndarray:
    """One cv2 warp of an H×W or H×W×C (C <= 4) array by the forward continuous-coordinate map."""
    h, w = size
    cm = G.to_cv2(m)
    value = fill if isinstance(fill, tuple) else (fill,) * 4
    if G.is_affine(m):
        return cv2.warpAffine(src, cm[:2], (w, h), dst=dst, flags=interpolation, borderMode=border, borderValue=value)
    return cv2.warpPerspective(src, cm, (w, h), dst=dst, flags=interpolation, borderMode=border, borderValue=value)


def _fit(lo: int, hi: int, k: int, limit: int) -> tuple[int, int, int]:
    """Grow [lo, hi) to a multiple of k inside [0, limit); what does not fit is padded."""
    need = -(hi - lo) % k
    grow = min(need, limit - hi)
    hi += grow
    need -= grow
    grow = min(need, lo)
    return lo - grow, hi, need - grow


def _prefilter(src: np.ndarray, stage: Warp, border: int, fill: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Shrinking by 2x or more with a bilinear warp skips pixels (aliasing). First average whole
    k×k blocks (k = the integer part of the shrink, OpenCV's fast integer INTER_AREA path) of just
    the part of the input the output sees, and fold that into the matrix. H×W[×C] data."""
    m = stage.matrix
    fx, fy = G.footprint(stage.inverse, stage.size)
    kx, ky = (int(f) if f >= 2.0 else 1 for f in (fx, fy))
    if kx == 1 and ky == 1:
        return src, m
    pts, ahead = G.corners(stage.inverse, stage.size)
    sh, sw = src.shape[:2]
    if ahead and np.isfinite(pts).all():
        margin = 3.0 * max(fx, fy) + 2.0  # the bilinear taps at the edge stay inside the region
        x0 = max(0, math.floor(pts[:, 0].min() - margin)); x1 = min(sw, math.ceil(pts[:, 0].max() + margin))
        y0 = max(0, math.floor(pts[:, 1].min() - margin)); y1 = min(sh, math.ceil(pts[:, 1].max() + margin))
    else:
        x0, y0, x1, y1 = 0, 0, sw, sh
    if x1 - x0 < 2 * kx or y1 - y0 < 2 * ky:
        return src, m
    x0, x1, pad_x = _fit(x0, x1, kx, sw)
    y0, y1, pad_y = _fit(y0, y1, ky, sh)
    region = src[y0:y1, x0:x1]
    if pad_x or pad_y:  # the region is the whole input: extend it as the border would
        region = cv2.copyMakeBorder(region, 0, pad_y, 0, pad_x, border, value=fill)
    rh, rw = region.shape[:2]
    small = cv2.resize(region, (rw // kx, rh // ky), interpolation=cv2.INTER_AREA)
    if small.ndim == 2 and src.ndim == 3:
        small = small[:, :, None]
    return small, m @ G.translate(x0, y0) @ G.scale(kx, ky)


def _within(stage: Warp) -> bool:
    """Whether the whole output frame maps inside the input frame (continuous coordinates)."""
    pts, ahead = G.corners(stage.inverse, stage.size)
    h, w = stage.in_size
    eps = 1e-6
    return ahead and bool(pts[:, 0].min() >= -eps and pts[:, 0].max() <= w + eps
                          and pts[:, 1].min() >= -eps and pts[:, 1].max() <= h + eps)


def _border(options: Options, stage: Warp) -> int:
    """The cv2 border mode. An output that lies inside the input (a crop, a resize) still samples up
    to half a pixel beyond the outermost pixel centres: there the edge pixel is right (as cv2.resize
    and torch's interpolate do), not a blend with the fill."""
    return cv2.BORDER_REPLICATE if _within(stage) else _BORDER[options.border]


def _fill(options: Options, channels: int) -> tuple[float, ...]:
    f = options.fill
    if not isinstance(f, tuple):
        return (f,) * 4
    if len(f) not in (1, channels):
        raise ValueError(f"Pipeline: fill has {len(f)} values but the image has {channels} channels")
    return (f * 4)[:4] if len(f) == 1 else f + (0.0,) * (4 - len(f))


@register_kernel("warp", Image)
def warp_image(item: Image, stage: Warp, options: Options) -> Image:
    row_axis = 0 if item.layout == "hwc" else 1
    fast = _by_slicing(item.data, row_axis, stage.inverse, stage.size)
    if fast is not None:
        return Image(fast, item.layout)
    interp = _INTERPOLATION[options.interpolation]
    border = _border(options, stage)
    fill = _fill(options, item.channels)
    h, w = stage.size
    if item.layout == "hwc":
        src, m = (_prefilter(item.data, stage, border, fill) if options.antialias
                  else (item.data, stage.matrix))
        out = warp_plane(src, m, stage.size, interp, border, fill)
        return Image(out if out.ndim == 3 else out[:, :, None], "hwc")
    out = np.empty((item.channels, h, w), item.data.dtype)
    for c, plane in enumerate(item.data):
        src, m = (_prefilter(plane, stage, border, (fill[c],) * 4) if options.antialias
                      else (plane, stage.matrix))
        warp_plane(np.ascontiguousarray(src), m, stage.size, interp, border, (fill[c],) * 4, dst=out[c])
    return Image(out, "chw")


# cv2 warps uint8, uint16, int16, float32 and float64: other label types travel as one of them.
_MASK_CARRIER = {np.dtype(np.bool_): np.uint8, np.dtype(np.int8): np.int16}
_NATIVE = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16))


def _carrier(labels: np.ndarray, fill: int) -> type:
    if labels.dtype in _NATIVE:
        return labels.dtype.type
    if labels.dtype in _MASK_CARRIER:
        return _MASK_CARRIER[labels.dtype]
    lo, hi = min(int(labels.min()), fill), max(int(labels.max()), fill)
    if lo >= 0 and hi < 2**16:
        return np.uint16
    if lo >= -2**15 and hi < 2**15:
        return np.int16
    if max(-lo, hi) >= 2**53:
        raise ValueError(f"mask: labels beyond ±2**53 cannot be moved exactly (range {lo}..{hi})")
    return np.float64


@register_kernel("warp", Mask)
def warp_mask(item: Mask, stage: Warp, options: Options) -> Mask:
    data = item.data
    row_axis = data.ndim - 2
    fast = _by_slicing(data, row_axis, stage.inverse, stage.size)
    if fast is not None:
        return Mask(fast)
    fill = options.mask_fill
    info = np.iinfo(data.dtype) if data.dtype.kind in "iu" else None
    if info is not None and not info.min <= fill <= info.max or data.dtype == np.bool_ and fill not in (0, 1):
        raise ValueError(f"Pipeline: mask_fill {fill} does not fit the mask's dtype {data.dtype}")
    carrier = _carrier(data, fill)
    src = data.astype(carrier, copy=False)
    border = _border(options, stage)
    planes = [src] if src.ndim == 2 else list(src)
    out = [warp_plane(np.ascontiguousarray(p), stage.matrix, stage.size, cv2.INTER_NEAREST, border, float(fill))
           for p in planes]
    res = out[0] if data.ndim == 2 else np.stack(out)
    return Mask(res.astype(data.dtype, copy=False))


def _inside(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)


@register_kernel("warp", Keypoints)
def warp_keypoints(item: Keypoints, stage: Warp, options: Options) -> Keypoints:
    pts, ahead = G.apply(stage.matrix, G.to_continuous(item.xy))
    return Keypoints(G.from_continuous(pts), item.visible & ahead & _inside(pts, stage.size))


@register_kernel("warp", Boxes)
def warp_boxes(item: Boxes, stage: Warp, options: Options) -> Boxes:
    """The box around the four moved corners, clipped to the frame; boxes left with no area (or
    less than ``min_visibility`` of it) are dropped with their labels."""
    b = item.xyxy
    n = len(b)
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1).reshape(-1, 2)
    pts, ahead = G.apply(stage.matrix, corners)
    pts = pts.reshape(n, 4, 2)
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    h, w = stage.size
    clo, chi = np.clip(lo, 0, [w, h]), np.clip(hi, 0, [w, h])
    area = np.prod(hi - lo, axis=1)
    kept_area = np.prod(chi - clo, axis=1)
    keep = (chi - clo > 1e-6).all(axis=1) & ahead.reshape(n, 4).all(axis=1)
    if options.min_visibility > 0:
        keep &= kept_area >= options.min_visibility * np.maximum(area, 1e-12)
    labels = None if item.labels is None else item.labels[keep]
    return Boxes(np.concatenate([clo, chi], axis=1)[keep], labels)
