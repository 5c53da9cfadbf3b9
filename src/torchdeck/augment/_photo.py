"""A photo to try augmentations on, offline: scikit-image's astronaut when it is installed, else
a synthetic photo-like image (smooth shading, edges, texture, saturated colours)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["sample_photo", "synthetic_photo"]


def synthetic_photo(size: int = 512, seed: int = 0) -> np.ndarray:
    """H×W×3 uint8 with the statistics warps and colour changes care about: large smooth regions,
    sharp edges at all angles, fine texture, highlights and shadows."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([0.55 + 0.35 * np.sin(3.0 * xx + 1.0), 0.45 + 0.3 * yy, 0.35 + 0.3 * np.cos(4.0 * xx * yy)], -1)
    img = (img * 255).astype(np.uint8)
    for _ in range(14):
        colour = tuple(int(c) for c in g.integers(0, 256, 3))
        cx, cy = (int(v) for v in g.integers(0, size, 2))
        r = int(g.integers(size // 20, size // 5))
        if g.random() < 0.5:
            cv2.circle(img, (cx, cy), r, colour, -1, lineType=cv2.LINE_AA)
        else:
            box = cv2.boxPoints(((cx, cy), (2 * r, r), float(g.uniform(0, 180)))).astype(np.int32)
            cv2.fillConvexPoly(img, box, colour, lineType=cv2.LINE_AA)
    texture = cv2.GaussianBlur(g.normal(0, 18, (size, size)).astype(np.float32), (0, 0), 1.2)
    img = np.clip(img.astype(np.float32) + texture[:, :, None], 0, 255)
    return cv2.GaussianBlur(img, (0, 0), 0.7).astype(np.uint8)


def sample_photo(size: int = 512) -> tuple[np.ndarray, str]:
    """(an RGB uint8 photo resized to size×size, where it came from)."""
    try:
        from skimage import data  # optional: not a runtime dependency
        img = data.astronaut()
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA), "skimage.data.astronaut"
    except ImportError:
        return synthetic_photo(size), "synthetic (scikit-image is not installed)"
