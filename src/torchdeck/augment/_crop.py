"""Crops and pads: they only set the output frame (the lazy crop). The warp then computes just
that region, so cropping a rotated, zoomed image costs no more than the crop itself."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from torchdeck.augment import _checks as C
from torchdeck.augment import _geometry as G
from torchdeck.augment._base import Projective, register_transform
from torchdeck.augment._rng import Rng

__all__ = ["CenterCrop", "RandomCrop", "RandomResizedCrop", "PadDivisible", "Region"]

Size = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Region:
    """A window of the current frame in pixels (it may reach outside: the border fills it)."""

    top: int
    left: int
    height: int
    width: int


def _window(r: Region, out: Size) -> tuple[np.ndarray, Size]:
    m = G.scale(out[1] / r.width, out[0] / r.height) @ G.translate(-r.left, -r.top)
    return m, out


@register_transform
@dataclasses.dataclass(frozen=True)
class CenterCrop(Projective):
    """The central ``size`` = (height, width) window (larger than the frame: padded by the border)."""

    name = "center_crop"
    size: int | tuple[int, int] = 224

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", C.size2("CenterCrop", "size", self.size))

    def sample(self, size: Size, rng: Rng) -> Region:
        h, w = self.size
        # Same rounding as torchvision's center_crop.
        return Region(int(round((size[0] - h) / 2.0)), int(round((size[1] - w) / 2.0)), h, w)

    def matrix(self, p: Region, size: Size) -> tuple[np.ndarray, Size]:
        return _window(p, self.size)


@register_transform
@dataclasses.dataclass(frozen=True)
class RandomCrop(Projective):
    """A ``size`` window at a uniformly random whole-pixel position (a window larger than the frame
    is placed so the frame lies inside it)."""

    name = "random_crop"
    size: int | tuple[int, int] = 224

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", C.size2("RandomCrop", "size", self.size))

    def sample(self, size: Size, rng: Rng) -> Region:
        h, w = self.size
        return Region(rng.integer(0, size[0] - h), rng.integer(0, size[1] - w), h, w)

    def matrix(self, p: Region, size: Size) -> tuple[np.ndarray, Size]:
        return _window(p, self.size)


@register_transform
@dataclasses.dataclass(frozen=True)
class RandomResizedCrop(Projective):
    """A window covering a fraction ``scale`` of the frame's area with aspect ratio (width/height)
    in ``ratio`` (log-uniform), resized to ``size``: torchvision's algorithm (10 tries, then the
    largest central window within ``ratio``)."""

    name = "random_resized_crop"
    size: int | tuple[int, int] = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        o = "RandomResizedCrop"
        object.__setattr__(self, "size", C.size2(o, "size", self.size))
        object.__setattr__(self, "scale", C.span(o, "scale", self.scale, minimum=0.0, exclusive_minimum=True,
                                                 maximum=1.0))
        object.__setattr__(self, "ratio", C.span(o, "ratio", self.ratio, minimum=0.0, exclusive_minimum=True))

    def sample(self, size: Size, rng: Rng) -> Region:
        height, width = size
        area = height * width
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = rng.log_uniform(*self.ratio)
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return Region(rng.integer(0, height - h), rng.integer(0, width - w), h, w)
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return Region((height - h) // 2, (width - w) // 2, max(h, 1), max(w, 1))

    def matrix(self, p: Region, size: Size) -> tuple[np.ndarray, Size]:
        return _window(p, self.size)


@register_transform
@dataclasses.dataclass(frozen=True)
class PadDivisible(Projective):
    """Pad the frame up to multiples of ``divisor`` (what strided networks need): at the bottom and
    right, or around the centre with ``center``. Coordinates do not move unless centred."""

    name = "pad_divisible"
    divisor: int = 32
    center: bool = False

    def __post_init__(self) -> None:
        C.integer("PadDivisible", "divisor", self.divisor, minimum=1)
        if not isinstance(self.center, bool):
            raise ValueError(f"PadDivisible: center must be true or false, got {self.center!r}")

    def matrix(self, p: None, size: Size) -> tuple[np.ndarray, Size]:
        d = self.divisor
        h, w = -(-size[0] // d) * d, -(-size[1] // d) * d
        if not self.center:
            return G.identity(), (h, w)
        return G.translate((w - size[1]) // 2, (h - size[0]) // 2), (h, w)
