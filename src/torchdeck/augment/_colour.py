"""Colour transforms. Brightness, contrast, gamma and Normalize are pointwise per channel, so
consecutive ones fold into one lookup table (``_values``). Saturation, hue and grayscale mix
channels and run as their own kernels (``_cv2_pixel``). Values are 0..1 (uint8 is /255);
each step clips to 0..1, as torchvision's do."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from torchdeck.augment import _checks as C
from torchdeck.augment._base import SKIP, PixelOp, Pointwise, register_transform
from torchdeck.augment._rng import Rng

__all__ = ["Brightness", "Contrast", "Gamma", "Normalize", "Saturation", "Hue", "Grayscale",
           "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Size = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Factor:
    factor: float


def _unit(x: np.ndarray) -> np.ndarray:
    """Clip to 0..1 in place (the ufuncs directly: np.clip's wrappers cost more than the work on
    a 3×256 table)."""
    return np.minimum(np.maximum(x, 0.0, out=x), 1.0, out=x)


def _factor_span(owner: str, field: str, value: Any) -> tuple[float, float]:
    # torchvision's ColorJitter convention: 0.2 means factors 0.8..1.2.
    return C.span(owner, field, value, around=1.0, minimum=0.0)


@register_transform
@dataclasses.dataclass(frozen=True)
class Brightness(Pointwise):
    """Multiply by a factor from ``brightness`` (0.2 means 0.8..1.2; a pair is the range)."""

    name = "brightness"
    brightness: float | tuple[float, float] = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "brightness", _factor_span("Brightness", "brightness", self.brightness))

    def sample(self, size: Size, rng: Rng) -> Factor:
        return Factor(rng.uniform(*self.brightness))

    def value_map(self, p: Factor, values: np.ndarray, mean: float) -> np.ndarray:
        return _unit(values * p.factor)

    def line(self, p: Factor, mean: float) -> tuple[float, float]:
        """value_map is clip(scale·v + offset, 0, 1): (scale, offset), so chains stay exact numbers."""
        return p.factor, 0.0


@register_transform
@dataclasses.dataclass(frozen=True)
class Contrast(Pointwise):
    """Scale the distance from the image's mean grey by a factor from ``contrast`` (as torchvision
    and PIL; the mean is the image's at this step)."""

    name = "contrast"
    needs_mean = True
    contrast: float | tuple[float, float] = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "contrast", _factor_span("Contrast", "contrast", self.contrast))

    def sample(self, size: Size, rng: Rng) -> Factor:
        return Factor(rng.uniform(*self.contrast))

    def value_map(self, p: Factor, values: np.ndarray, mean: float) -> np.ndarray:
        return _unit(mean + p.factor * (values - mean))

    def line(self, p: Factor, mean: float) -> tuple[float, float]:
        return p.factor, mean * (1.0 - p.factor)


@dataclasses.dataclass(frozen=True)
class Exponent:
    gamma: float


@register_transform
@dataclasses.dataclass(frozen=True)
class Gamma(Pointwise):
    """``value ** gamma`` with gamma drawn log-uniformly from ``gamma`` (so 0.8..1.25 brightens as
    often as it darkens)."""

    name = "gamma"
    gamma: float | tuple[float, float] = (0.8, 1.25)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", C.span("Gamma", "gamma", self.gamma, minimum=0.0, exclusive_minimum=True))

    def sample(self, size: Size, rng: Rng) -> Exponent:
        return Exponent(rng.log_uniform(*self.gamma))

    def value_map(self, p: Exponent, values: np.ndarray, mean: float) -> np.ndarray:
        return np.power(values, p.gamma)


def _per_channel(owner: str, field: str, value: Any, positive: bool) -> tuple[float, ...]:
    vals = (value,) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(vals, (tuple, list)) or not 1 <= len(vals) <= 4:
        raise ValueError(f"{owner}: {field} must be a number or 1-4 numbers (one per channel), got {value!r}")
    return tuple(C.number(owner, field, v, minimum=0.0 if positive else None, exclusive_minimum=positive)
                 for v in vals)


@register_transform
@dataclasses.dataclass(frozen=True)
class Normalize(Pointwise):
    """``(value - mean) / std`` per channel (values 0..1), written as a float32 C×H×W torch tensor:
    the conversion to a tensor is part of the same lookup. Put it last among the colour steps."""

    name = "normalize"
    to_tensor = True
    mean: float | tuple[float, ...] = IMAGENET_MEAN
    std: float | tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _per_channel("Normalize", "mean", self.mean, positive=False))
        object.__setattr__(self, "std", _per_channel("Normalize", "std", self.std, positive=True))

    def normalize(self, p: None, values: np.ndarray) -> np.ndarray:
        """``values``: C×N (all channels, 0..1)."""
        c = values.shape[0]
        for field in ("mean", "std"):
            n = len(getattr(self, field))
            if n not in (1, c):
                raise ValueError(f"Normalize: {field} has {n} values but the image has {c} channels")
        # one value broadcasts over the channels
        return (values - np.array(self.mean)[:, None]) * (1.0 / np.array(self.std))[:, None]

    def value_map(self, p: None, values: np.ndarray, mean: float) -> np.ndarray:
        raise AssertionError("Normalize ends its colour group; _values calls normalize()")


@register_transform
@dataclasses.dataclass(frozen=True)
class Saturation(PixelOp):
    """Blend with the grey image by a factor from ``saturation`` (0 grey, 1 unchanged, >1 more vivid)."""

    name = "saturation"
    needs_unit_range = True
    saturation: float | tuple[float, float] = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "saturation", _factor_span("Saturation", "saturation", self.saturation))

    def sample(self, size: Size, rng: Rng) -> Factor:
        return Factor(rng.uniform(*self.saturation))


@dataclasses.dataclass(frozen=True)
class HueShift:
    shift: float  # fraction of the hue circle


@register_transform
@dataclasses.dataclass(frozen=True)
class Hue(PixelOp):
    """Rotate the hue by a fraction of the circle from ``hue`` (0.05 means -0.05..0.05; at most 0.5)."""

    name = "hue"
    needs_unit_range = True
    hue: float | tuple[float, float] = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "hue", C.span("Hue", "hue", self.hue, around=0.0, minimum=-0.5, maximum=0.5))

    def sample(self, size: Size, rng: Rng) -> HueShift:
        return HueShift(rng.uniform(*self.hue))


@register_transform
@dataclasses.dataclass(frozen=True)
class Grayscale(PixelOp):
    """With probability ``p``, replace the colour by its grey (BT.601 luma), keeping the channel count."""

    name = "grayscale"
    needs_unit_range = True
    p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", C.probability("Grayscale", "p", self.p))

    def sample(self, size: Size, rng: Rng) -> Any:
        return None if rng.random() < self.p else SKIP
