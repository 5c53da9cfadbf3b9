"""Writers for the image-file tests: small seeded images saved with Pillow, returned as written."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def pixels(seed: int, h: int = 8, w: int = 10) -> np.ndarray:
    """(h, w, 3) uint8 noise that depends only on the seed."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path, array: np.ndarray, **kwargs) -> np.ndarray:
    """Write ``array`` (format from the extension) under ``path``, making folders; returns it."""
    os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return array


def class_tree(root, counts: dict[str, int], *, h: int = 8, w: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/<class>/<k>.png`` for each class; path -> the pixels written."""
    written = {}
    for c, name in enumerate(counts):
        for k in range(counts[name]):
            path = os.path.join(os.fspath(root), name, f"{k}.png")
            written[path] = save(path, pixels(seed * 1000 + c * 100 + k, h, w))
    return written


def truncated_png(path) -> None:
    """A PNG cut in half: a valid header and signature, then its data ends."""
    os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    Image.fromarray(pixels(99, 16, 16)).save(path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def text_as_image(path) -> None:
    os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("this is not a JPEG\n")
