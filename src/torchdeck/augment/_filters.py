"""Filters that look at neighbourhoods or draw per-pixel randomness: blur, noise, erasing.
Their kernels are in ``_cv2_pixel``; masks, keypoints and boxes pass through unchanged."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torchdeck.augment import _checks as C
from torchdeck.augment._base import SKIP, PixelOp, register_transform
from torchdeck.augment._rng import Rng

__all__ = ["GaussianBlur", "GaussianNoise", "RandomErasing"]

Size = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Sigma:
    sigma: float


@register_transform
@dataclasses.dataclass(frozen=True)
class GaussianBlur(PixelOp):
    """Blur with a Gaussian of standard deviation from ``sigma`` (pixels); ``kernel_size`` (odd)
    defaults to 2·ceil(3σ)+1."""

    name = "gaussian_blur"
    sigma: float | tuple[float, float] = (0.1, 2.0)
    kernel_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", C.span("GaussianBlur", "sigma", self.sigma, minimum=0.0,
                                                 exclusive_minimum=True))
        k = self.kernel_size
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0):
            raise ValueError(f"GaussianBlur: kernel_size must be an odd positive integer or null, got {k!r}")

    def sample(self, size: Size, rng: Rng) -> Sigma:
        return Sigma(rng.uniform(*self.sigma))

    def kernel_for(self, sigma: float) -> int:
        return self.kernel_size or 2 * math.ceil(3.0 * sigma) + 1


@dataclasses.dataclass(frozen=True)
class Noise:
    std: float  # in 0..1 units
    seed: int   # the noise itself is drawn when applied, from this seed


@register_transform
@dataclasses.dataclass(frozen=True)
class GaussianNoise(PixelOp):
    """Add Gaussian noise of standard deviation from ``std`` (0..1 units; ×255 for uint8) to the
    colour channels, clipped to range."""

    name = "gaussian_noise"
    needs_unit_range = True
    std: float | tuple[float, float] = (0.0, 0.05)

    def __post_init__(self) -> None:
        object.__setattr__(self, "std", C.span("GaussianNoise", "std", self.std, minimum=0.0))

    def sample(self, size: Size, rng: Rng) -> Noise:
        return Noise(rng.uniform(*self.std), rng.seed64())


@dataclasses.dataclass(frozen=True)
class Erase:
    top: int
    left: int
    height: int
    width: int
    seed: int  # for value="random"


@register_transform
@dataclasses.dataclass(frozen=True)
class RandomErasing(PixelOp):
    """With probability ``p`` erase a rectangle of ``scale`` × the area and aspect ``ratio``
    (torchvision's algorithm) with ``value`` (a number or one per channel, in the image's units)
    or ``"random"`` (normal noise; uniform 0..255 for uint8). Works after Normalize."""

    name = "random_erasing"
    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: Any = 0.0

    def __post_init__(self) -> None:
        o = "RandomErasing"
        object.__setattr__(self, "p", C.probability(o, "p", self.p))
        object.__setattr__(self, "scale", C.span(o, "scale", self.scale, minimum=0.0, exclusive_minimum=True,
                                                 maximum=1.0))
        object.__setattr__(self, "ratio", C.span(o, "ratio", self.ratio, minimum=0.0, exclusive_minimum=True))
        v = self.value
        if v == "random" or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            return
        if isinstance(v, (list, tuple)) and 1 <= len(v) <= 4:
            object.__setattr__(self, "value", tuple(C.number(o, "value", x) for x in v))
            return
        raise ValueError(f"{o}: value must be a number, 1-4 numbers (one per channel) or 'random', got {v!r}")

    def sample(self, size: Size, rng: Rng) -> Any:
        if rng.random() >= self.p:
            return SKIP
        height, width = size
        area = height * width
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = rng.log_uniform(*self.ratio)
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if 0 < h < height and 0 < w < width:
                return Erase(rng.integer(0, height - h), rng.integer(0, width - w), h, w, rng.seed64())
        return SKIP  # no rectangle fitted, as torchvision gives up
