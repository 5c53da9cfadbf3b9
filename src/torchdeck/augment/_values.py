"""Pointwise colour groups on images: on uint8 every step of a group is applied to a 256-entry
table per channel, and the image is looked up once (``cv2.LUT``); a group ending in Normalize
writes float32 straight into a C×H×W buffer, so the conversion to a tensor costs nothing more.

Values stay float between the steps of a group and are rounded once at the end, so a fused
group differs from running the steps one by one (rounding to uint8 after each) by at most a
level or two, and from exact float arithmetic by at most half a level. Contrast needs the
image's mean grey *at its point in the group*, computed exactly: while the steps are clipped
lines (brightness, contrast) from channel sums and a threshold or two; after others (gamma)
from per-channel histograms.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from torchdeck.augment._base import Options
from torchdeck.augment._items import Image
from torchdeck.augment._kernels import register_kernel
from torchdeck.augment._plan import Values

__all__ = ["apply_values", "colour_channels", "LUMA"]

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as torchvision's rgb_to_grayscale
_RAMP = np.arange(256, dtype=np.float64) / 255.0


def colour_channels(channels: int) -> int:
    """Channels a colour change touches: grey 1, RGB 3, RGBA 3 (alpha is left alone)."""
    return 1 if channels == 1 else 3


def _grey(means: np.ndarray) -> float:
    return float(means[0]) if len(means) == 1 else float(LUMA @ means[:3])


def _sums(data: np.ndarray, layout: str, channels: int) -> list[float]:
    """Per-channel sums (all channels): one cv2 pass over H×W×C, or one per plane of C×H×W.
    Plain floats: a handful of numbers, where numpy's per-call cost would dominate."""
    if layout == "hwc":
        return list(cv2.sumElems(data)[:channels])
    return [cv2.sumElems(p)[0] for p in data]


_INDEX = np.arange(256, dtype=np.float64)


def _clipped_line(row: np.ndarray, lo: int, hi: int) -> tuple[float, float] | None:
    """(a, b) with a > 0 if ``row[v] == clip(a·v + b, 0, 1)`` for the values v in lo..hi present:
    what brightness and contrast make (each step clips, and clipped lines compose into one)."""
    seg = row[lo:hi + 1]
    inner = np.flatnonzero((seg > 0.0) & (seg < 1.0))
    if len(inner) < 2:
        return None
    i, j = inner[0], inner[-1]
    a = (seg[j] - seg[i]) / (j - i)
    b = seg[i] - a * (i + lo)
    if a < 1e-12 or np.abs(np.clip(a * _INDEX[lo:hi + 1] + b, 0.0, 1.0) - seg).max() > 1e-12:
        return None
    return float(a), float(b)


def _clipped_means(item: Image, a: float, b: float, lo: int, hi: int) -> np.ndarray:
    """Per-channel mean(clip(a·x + b, 0, 1)) over uint8 pixels x, exactly: the line's mean minus
    what each clip cuts off, from the pixels beyond the clip point (a threshold, then sums)."""
    d, layout, ch = item.data, item.layout, item.channels
    n = item.size[0] * item.size[1]
    total = [a * s + b * n for s in _sums(d, layout, ch)]
    if a * hi + b > 1.0:  # x >= top is clipped to 1
        top = math.ceil((1.0 - b) / a - 1e-12)
        s = _sums(cv2.threshold(d, top - 1, 0, cv2.THRESH_TOZERO)[1], layout, ch) if top > 0 else _sums(d, layout, ch)
        c = _sums(cv2.threshold(d, top - 1, 1, cv2.THRESH_BINARY)[1], layout, ch) if top > 0 else [n] * ch
        total = [t - (a * si + (b - 1.0) * ci) for t, si, ci in zip(total, s, c)]
    if a * lo + b < 0.0:  # x <= bottom is clipped to 0
        bottom = math.floor(-b / a + 1e-12)
        s = _sums(cv2.threshold(d, bottom, 0, cv2.THRESH_TOZERO_INV)[1], layout, ch)
        above = _sums(cv2.threshold(d, bottom, 1, cv2.THRESH_BINARY)[1], layout, ch) if bottom < 255 else [0] * ch
        total = [t - (a * si + b * (n - ai)) for t, si, ai in zip(total, s, above)]
    return np.array(total) / n


def _table_means(item: Image, table: np.ndarray, cc: int) -> np.ndarray:
    """The exact per-channel means of ``table[c][pixel]`` (0..1), for the colour channels. Tables
    that are a clipped line over the values present (identity, brightness, contrast and their
    chains) need channel sums and a threshold or two; others (gamma) per-channel histograms."""
    flat = item.data.reshape(item.data.shape[0], -1)
    lo, hi = (int(v) for v in cv2.minMaxLoc(flat)[:2])
    line = _clipped_line(table[0], lo, hi) if (table[1:cc] == table[0]).all() else None
    if line is not None:
        return _clipped_means(item, *line, lo, hi)[:cc]
    n = item.size[0] * item.size[1]
    planes = item.planes()
    return np.array([cv2.calcHist([planes[c]], [0], None, [256], [0, 256]).ravel() @ table[c] / n for c in range(cc)])


def _compose_line(line: tuple[float, float], step: tuple[float, float], lo: int, hi: int) -> tuple[float, float] | None:
    """clip(s·clip(a·x + b) + o) as one clipped line over the pixel values lo..hi, or None when
    the inner clip shows (a plateau the outer line does not saturate)."""
    (a, b), (s, o) = line, step
    if s <= 0.0:
        return None
    if a * hi + b > 1.0 and s + o < 1.0:
        return None
    if a * lo + b < 0.0 and o > 0.0:
        return None
    return s * a, s * b + o


def _uint8(item: Image, stage: Values) -> Image:
    c_all, cc = item.channels, colour_channels(item.channels)
    steps = stage.steps[:-1] if stage.to_tensor else stage.steps
    # While every step is a clipped line (brightness, contrast), the table is two numbers kept
    # exactly: their means need no table inspection. Anything else makes the table explicit.
    line: tuple[float, float] | None = (1.0 / 255.0, 0.0)
    table: np.ndarray | None = None
    lo = hi = -1
    for t, p in steps:
        if line is not None:
            if lo < 0:
                lo, hi = (int(v) for v in cv2.minMaxLoc(item.data.reshape(item.data.shape[0], -1))[:2])
            mean = _grey(_clipped_means(item, *line, lo, hi)[:cc]) if t.needs_mean else 0.0
            step = t.line(p, mean)
            composed = None if step is None else _compose_line(line, step, lo, hi)
            if composed is not None:
                line = composed
                continue
            table = np.empty((c_all, 256))
            table[:] = _RAMP
            table[:cc] = np.clip(line[0] * _INDEX + line[1], 0.0, 1.0)
            line = None
        else:
            mean = _grey(_table_means(item, table, cc)) if t.needs_mean else 0.0
        table[:cc] = t.value_map(p, table[:cc], mean)
    if table is None:
        table = np.empty((c_all, 256))
        table[:] = _RAMP
        if line != (1.0 / 255.0, 0.0):
            table[:cc] = np.clip(line[0] * _INDEX + line[1], 0.0, 1.0)
    if stage.to_tensor:
        t, p = stage.steps[-1]
        ftable = np.ascontiguousarray(t.normalize(p, table), dtype=np.float32)
        h, w = item.size
        out = np.empty((c_all, h, w), np.float32)
        for c, plane in enumerate(item.planes()):
            cv2.LUT(plane, ftable[c], dst=out[c])
        return Image(out, "chw")
    u8 = np.clip(np.rint(table * 255.0), 0, 255).astype(np.uint8)
    if item.layout == "chw":
        return Image(np.stack([cv2.LUT(p, u8[c]) for c, p in enumerate(item.data)]), "chw")
    if c_all == 1:
        return Image(cv2.LUT(item.data[:, :, 0], u8[0])[:, :, None], "hwc")
    return Image(cv2.LUT(item.data, np.ascontiguousarray(u8.T).reshape(256, 1, c_all)), "hwc")


def _float(item: Image, stage: Values) -> Image:
    c_all, cc = item.channels, colour_channels(item.channels)
    h, w = item.size
    vals = (item.data.reshape(-1, c_all).T if item.layout == "hwc" else item.data.reshape(c_all, -1)).astype(np.float64)
    steps = stage.steps[:-1] if stage.to_tensor else stage.steps
    for t, p in steps:
        mean = _grey(vals[:cc].mean(axis=1)) if t.needs_mean else 0.0
        vals[:cc] = t.value_map(p, vals[:cc], mean)
    if stage.to_tensor:
        t, p = stage.steps[-1]
        return Image(np.ascontiguousarray(t.normalize(p, vals), dtype=np.float32).reshape(c_all, h, w), "chw")
    out = vals.astype(np.float32)
    if item.layout == "chw":
        return Image(out.reshape(c_all, h, w), "chw")
    return Image(np.ascontiguousarray(out.T).reshape(h, w, c_all), "hwc")


@register_kernel("values", Image)
def apply_values(item: Image, stage: Values, options: Options) -> Image:
    return _uint8(item, stage) if item.data.dtype == np.uint8 else _float(item, stage)
