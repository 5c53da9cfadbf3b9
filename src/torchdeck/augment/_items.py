"""Items: the typed things a pipeline moves together (DataAugmentation.jl's ``Item``s).

Each holds numpy data in one canonical form and checks it on construction, so every kernel
can trust what it gets. The same matrix moves all items of a sample; how each one is moved
(interpolated, nearest-neighbour, mapped as points, or as boxes) is the kernel registered
for its type.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

__all__ = ["Item", "Image", "Mask", "Keypoints", "Boxes", "IMAGE_DTYPES", "MASK_DTYPES"]

IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
MASK_DTYPES = tuple(np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32,
                                          np.int64))
_LAYOUTS = {"hwc": (0, 1, 2), "chw": (1, 2, 0)}  # axes of (height, width, channels)


def _shape(a: Any) -> str:
    return f"shape {tuple(np.shape(a))} dtype {getattr(a, 'dtype', type(a).__name__)}"


class Item:
    """Base of the item types; ``kind`` is the word used in errors and specs."""

    kind: ClassVar[str] = "item"

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) of the frame the item fills, if it fills one."""
        return None


@dataclasses.dataclass(eq=False)
class Image(Item):
    """Pixels: ``data`` is H×W×C (``layout="hwc"``, numpy's usual) or C×H×W (``"chw"``, torch's),
    uint8 (0..255) or float32 (0..1), with C = 1 (grey), 3 (RGB) or 4 (RGBA)."""

    kind: ClassVar[str] = "image"
    data: np.ndarray
    layout: str = "hwc"

    def __post_init__(self) -> None:
        d = self.data
        if not isinstance(d, np.ndarray):
            raise ValueError(f"image must be a numpy array here, got {type(d).__name__}")
        if self.layout not in _LAYOUTS:
            raise ValueError(f"image: layout must be 'hwc' or 'chw', got {self.layout!r}")
        if d.dtype not in IMAGE_DTYPES:
            raise ValueError(f"image: pixels must be uint8 (0..255) or float32 (0..1), got {_shape(d)}")
        if d.ndim != 3:
            raise ValueError(f"image must be H×W×C (numpy) or C×H×W (torch), got {_shape(d)}")
        ah, aw, ac = _LAYOUTS[self.layout]
        h, w, c = d.shape[ah], d.shape[aw], d.shape[ac]
        if h == 0 or w == 0:
            raise ValueError(f"image is empty: {_shape(d)}")
        if c not in (1, 3, 4):
            raise ValueError(f"image must have 1, 3 or 4 channels ({self.layout}), got {_shape(d)}")

    @property
    def size(self) -> tuple[int, int]:
        axes = _LAYOUTS[self.layout]
        return self.data.shape[axes[0]], self.data.shape[axes[1]]

    @property
    def channels(self) -> int:
        return self.data.shape[_LAYOUTS[self.layout][2]]

    def hwc(self) -> np.ndarray:
        """H×W×C, contiguous (cv2 needs it)."""
        return self.data if self.layout == "hwc" else np.ascontiguousarray(self.data.transpose(1, 2, 0))

    def planes(self) -> list[np.ndarray]:
        """One contiguous H×W array per channel."""
        if self.layout == "chw":
            return list(self.data)
        import cv2
        return list(cv2.split(self.data)) if self.channels > 1 else [self.data[:, :, 0]]


@dataclasses.dataclass(eq=False)
class Mask(Item):
    """Labels per pixel: H×W, or K×H×W (K masks, e.g. one per instance). Integer or bool; moved by
    nearest neighbour so no new label appears."""

    kind: ClassVar[str] = "mask"
    data: np.ndarray

    def __post_init__(self) -> None:
        d = self.data
        if not isinstance(d, np.ndarray):
            raise ValueError(f"mask must be a numpy array here, got {type(d).__name__}")
        if d.dtype not in MASK_DTYPES:
            raise ValueError(f"mask: labels must be bool or integers ({', '.join(t.name for t in MASK_DTYPES)}), "
                             f"got {_shape(d)}")
        if d.ndim not in (2, 3) or 0 in d.shape:
            raise ValueError(f"mask must be a non-empty H×W (or K×H×W) array, got {_shape(d)}")

    @property
    def size(self) -> tuple[int, int]:
        return self.data.shape[-2], self.data.shape[-1]


@dataclasses.dataclass(eq=False)
class Keypoints(Item):
    """N points, ``xy`` N×2 in pixel-index coordinates (the centre of the top-left pixel is (0, 0)),
    with ``visible`` (N bools). Points that leave the frame become invisible; none is dropped or
    reordered, so index i is always the same landmark."""

    kind: ClassVar[str] = "keypoints"
    xy: np.ndarray
    visible: np.ndarray | None = None

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy)
        if xy.ndim != 2 or xy.shape[1] != 2 or not (np.issubdtype(xy.dtype, np.number) and xy.dtype.kind != "c"):
            raise ValueError(f"keypoints must be an N×2 array of (x, y) numbers, got {_shape(xy)}")
        xy = xy.astype(np.float64)
        if not np.isfinite(xy).all():
            bad = np.flatnonzero(~np.isfinite(xy).all(axis=1))
            raise ValueError(f"keypoints: coordinates must be finite, got NaN/inf at rows {bad[:10].tolist()}")
        vis = np.ones(len(xy), bool) if self.visible is None else np.asarray(self.visible)
        if vis.shape != (len(xy),):
            raise ValueError(f"keypoints: visibility must have one flag per point ({len(xy)}), got {_shape(vis)}")
        self.xy, self.visible = xy, vis.astype(bool)


@dataclasses.dataclass(eq=False)
class Boxes(Item):
    """N boxes, ``xyxy`` N×4 with x1 <= x2 and y1 <= y2 in continuous coordinates (a box over the
    whole W×H image is [0, 0, W, H]); ``labels`` (N values, any dtype) travel with them and are
    dropped with them."""

    kind: ClassVar[str] = "boxes"
    xyxy: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        b = np.asarray(self.xyxy)
        if b.ndim != 2 or b.shape[1] != 4 or not (np.issubdtype(b.dtype, np.number) and b.dtype.kind != "c"):
            raise ValueError(f"boxes must be an N×4 array of (x1, y1, x2, y2), got {_shape(b)}")
        b = b.astype(np.float64)
        if not np.isfinite(b).all():
            bad = np.flatnonzero(~np.isfinite(b).all(axis=1))
            raise ValueError(f"boxes: coordinates must be finite, got NaN/inf at rows {bad[:10].tolist()}")
        flipped = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
        if len(flipped):
            raise ValueError(f"boxes must be xyxy with x1 <= x2 and y1 <= y2; rows {flipped[:10].tolist()} are not "
                             f"(first: {b[flipped[0]].tolist()})")
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim == 0 or len(labels) != len(b):
                raise ValueError(f"labels: need one per box ({len(b)}), got {_shape(labels)}")
            self.labels = labels
        self.xyxy = b
