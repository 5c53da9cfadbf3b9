"""Shared by the augmentation tests: test scenes whose truth is known analytically."""

from __future__ import annotations

import numpy as np


def smooth_field(h: int, w: int) -> callable:
    """A smooth function of continuous (x, y), 0..255: its exact warp is itself at the mapped point."""
    def f(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 127.5 + 60.0 * np.sin(2 * np.pi * x / 41.0 + 0.3) * np.cos(2 * np.pi * y / 53.0) + 50.0 * (x / w - 0.5)
    return f


def sample_field(f, h: int, w: int) -> np.ndarray:
    """The field at pixel centres (continuous x + 0.5), as a float32 H×W×1 image in 0..1."""
    y, x = np.mgrid[0:h, 0:w] + 0.5
    return (f(x, y) / 255.0).astype(np.float32)[:, :, None]


def scene(h: int, w: int, n: int, rng: np.random.Generator, radius: int = 3):
    """An image with one Gaussian marker per keypoint, a mask with a square label patch (label i+1)
    around each keypoint, the keypoints (pixel-index coordinates) and their patches' boxes."""
    margin = radius + 4
    pts = np.stack([rng.uniform(margin, w - margin, n), rng.uniform(margin, h - margin, n)], axis=1)
    # keep markers apart so each window holds one
    keep = [0]
    for i in range(1, n):
        if all(np.hypot(*(pts[i] - pts[j])) > 4 * radius + 4 for j in keep):
            keep.append(i)
    pts = np.floor(pts[keep]) + 0.0  # markers centred on pixel centres
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), np.uint8)
    for i, (x, y) in enumerate(pts):
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2 ** 2)).astype(np.float32)
        mask[int(y) - radius:int(y) + radius + 1, int(x) - radius:int(x) + radius + 1] = i + 1
    boxes = np.stack([pts[:, 0] - radius, pts[:, 1] - radius, pts[:, 0] + radius + 1, pts[:, 1] + radius + 1], 1)
    return np.clip(img, 0, 1)[:, :, None], mask, pts, boxes


def centroid(img: np.ndarray, xy: np.ndarray, r: int) -> tuple[np.ndarray, float]:
    """Intensity centroid (pixel-index coordinates) in a (2r+1)² window around ``xy``, and its mass."""
    h, w = img.shape[:2]
    x0, y0 = int(round(xy[0])), int(round(xy[1]))
    ys, xs = slice(max(0, y0 - r), min(h, y0 + r + 1)), slice(max(0, x0 - r), min(w, x0 + r + 1))
    win = img[ys, xs].astype(np.float64)
    if win.ndim == 3:
        win = win[..., 0]
    mass = win.sum()
    yy, xx = np.mgrid[ys, xs]
    if mass <= 0:
        return np.array([np.nan, np.nan]), 0.0
    return np.array([(xx * win).sum() / mass, (yy * win).sum() / mass]), mass


def mask_hull(mask: np.ndarray, label: int) -> np.ndarray | None:
    """xyxy (continuous, pixel edges) around the pixels holding ``label``."""
    ys, xs = np.nonzero(mask == label)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
