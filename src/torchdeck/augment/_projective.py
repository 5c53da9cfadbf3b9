"""Projective transforms that keep or rescale the whole frame: rotate, zoom, scale, resize,
shear, translate, affine, perspective, flips and quarter turns. Each samples a small record and
turns it into a forward 3×3 matrix (continuous coordinates, see ``_geometry``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from torchdeck.augment import _checks as C
from torchdeck.augment import _geometry as G
from torchdeck.augment._base import Projective, register_transform
from torchdeck.augment._rng import Rng

__all__ = ["Rotate", "Zoom", "Scale", "ScaleKeepAspect", "Resize", "Shear", "Translate", "Affine", "Perspective",
           "FlipX", "FlipY", "Rot90"]

Size = tuple[int, int]


def _set(obj: object, field: str, value: object) -> None:
    object.__setattr__(obj, field, value)


@dataclasses.dataclass(frozen=True)
class Angle:
    degrees: float


@dataclasses.dataclass(frozen=True)
class Factor:
    factor: float


@register_transform
@dataclasses.dataclass(frozen=True)
class Rotate(Projective):
    """Rotate about the frame's centre by an angle from ``degrees`` (counter-clockwise positive;
    ``15`` means -15..15, a pair is (low, high)). The frame keeps its size: corners are cut and the
    border fills what comes in."""

    name = "rotate"
    degrees: float | tuple[float, float] = 15.0

    def __post_init__(self) -> None:
        _set(self, "degrees", C.span("Rotate", "degrees", self.degrees, around=0.0))

    def sample(self, size: Size, rng: Rng) -> Angle:
        return Angle(rng.uniform(*self.degrees))

    def matrix(self, p: Angle, size: Size) -> tuple[np.ndarray, Size]:
        return G.about(G.rotate(p.degrees), size), size


@register_transform
@dataclasses.dataclass(frozen=True)
class Zoom(Projective):
    """Scale the content about the centre by a factor from ``scale`` (> 1 zooms in); the frame
    keeps its size."""

    name = "zoom"
    scale: float | tuple[float, float] = (1.0, 1.2)

    def __post_init__(self) -> None:
        _set(self, "scale", C.span("Zoom", "scale", self.scale, minimum=0.0, exclusive_minimum=True))

    def sample(self, size: Size, rng: Rng) -> Factor:
        return Factor(rng.uniform(*self.scale))

    def matrix(self, p: Factor, size: Size) -> tuple[np.ndarray, Size]:
        return G.about(G.scale(p.factor, p.factor), size), size


def _resize(size: Size, new: Size) -> tuple[np.ndarray, Size]:
    """The frame itself rescaled to ``new``: edges map to edges."""
    return G.scale(new[1] / size[1], new[0] / size[0]), new


@register_transform
@dataclasses.dataclass(frozen=True)
class Scale(Projective):
    """Rescale the frame by a factor from ``factor`` (a number, or a (low, high) range): the
    output is round(H·f) × round(W·f)."""

    name = "scale"
    factor: float | tuple[float, float] = 1.0

    def __post_init__(self) -> None:
        _set(self, "factor", C.span("Scale", "factor", self.factor, minimum=0.0, exclusive_minimum=True))

    def sample(self, size: Size, rng: Rng) -> Factor:
        return Factor(rng.uniform(*self.factor))

    def matrix(self, p: Factor, size: Size) -> tuple[np.ndarray, Size]:
        return _resize(size, (max(1, round(size[0] * p.factor)), max(1, round(size[1] * p.factor))))


@register_transform
@dataclasses.dataclass(frozen=True)
class ScaleKeepAspect(Projective):
    """Rescale so the shorter side is ``size`` pixels, keeping the aspect ratio."""

    name = "scale_keep_aspect"
    size: int = 256

    def __post_init__(self) -> None:
        C.integer("ScaleKeepAspect", "size", self.size, minimum=1)

    def matrix(self, p: None, size: Size) -> tuple[np.ndarray, Size]:
        f = self.size / min(size)
        return _resize(size, (max(1, round(size[0] * f)), max(1, round(size[1] * f))))


@register_transform
@dataclasses.dataclass(frozen=True)
class Resize(Projective):
    """Rescale the frame to exactly ``size`` = (height, width) (one integer: a square)."""

    name = "resize"
    size: int | tuple[int, int] = 224

    def __post_init__(self) -> None:
        _set(self, "size", C.size2("Resize", "size", self.size))

    def matrix(self, p: None, size: Size) -> tuple[np.ndarray, Size]:
        return _resize(size, self.size)


@dataclasses.dataclass(frozen=True)
class ShearParams:
    x_degrees: float
    y_degrees: float


@register_transform
@dataclasses.dataclass(frozen=True)
class Shear(Projective):
    """Shear about the centre: ``x`` and ``y`` are angle ranges in degrees (a number d is -d..d)."""

    name = "shear"
    x: float | tuple[float, float] = 10.0
    y: float | tuple[float, float] = 0.0

    def __post_init__(self) -> None:
        _set(self, "x", C.span("Shear", "x", self.x, around=0.0, minimum=-80.0, maximum=80.0))
        _set(self, "y", C.span("Shear", "y", self.y, around=0.0, minimum=-80.0, maximum=80.0))

    def sample(self, size: Size, rng: Rng) -> ShearParams:
        return ShearParams(rng.uniform(*self.x), rng.uniform(*self.y))

    def matrix(self, p: ShearParams, size: Size) -> tuple[np.ndarray, Size]:
        return G.about(G.shear(p.x_degrees, p.y_degrees), size), size


@dataclasses.dataclass(frozen=True)
class Offset:
    x: float  # pixels
    y: float


@register_transform
@dataclasses.dataclass(frozen=True)
class Translate(Projective):
    """Shift by fractions of the frame: ``x`` and ``y`` are ranges (a number f is -f..f of the width
    or height)."""

    name = "translate"
    x: float | tuple[float, float] = 0.1
    y: float | tuple[float, float] = 0.1

    def __post_init__(self) -> None:
        _set(self, "x", C.span("Translate", "x", self.x, around=0.0, minimum=-1.0, maximum=1.0))
        _set(self, "y", C.span("Translate", "y", self.y, around=0.0, minimum=-1.0, maximum=1.0))

    def sample(self, size: Size, rng: Rng) -> Offset:
        return Offset(rng.uniform(*self.x) * size[1], rng.uniform(*self.y) * size[0])

    def matrix(self, p: Offset, size: Size) -> tuple[np.ndarray, Size]:
        return G.translate(p.x, p.y), size


@dataclasses.dataclass(frozen=True)
class AffineParams:
    degrees: float
    scale: float
    shear: float
    x: float  # pixels
    y: float


@register_transform
@dataclasses.dataclass(frozen=True)
class Affine(Projective):
    """Rotation, scale, shear (along x) and translation about the centre in one step, as
    torchvision's RandomAffine: ``degrees`` and ``shear`` are angle ranges (d means -d..d),
    ``scale`` a factor range, ``translate`` the largest shift as a fraction of (width, height)."""

    name = "affine"
    degrees: float | tuple[float, float] = 0.0
    scale: float | tuple[float, float] = 1.0
    shear: float | tuple[float, float] = 0.0
    translate: float | tuple[float, float] = 0.0

    def __post_init__(self) -> None:
        o = "Affine"
        _set(self, "degrees", C.span(o, "degrees", self.degrees, around=0.0))
        _set(self, "scale", C.span(o, "scale", self.scale, minimum=0.0, exclusive_minimum=True))
        _set(self, "shear", C.span(o, "shear", self.shear, around=0.0, minimum=-80.0, maximum=80.0))
        t = self.translate
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            t = (t, t)
        if not (isinstance(t, (tuple, list)) and len(t) == 2):
            raise ValueError(f"{o}: translate must be a fraction or an (x, y) pair of fractions in 0..1, got {t!r}")
        _set(self, "translate", tuple(C.number(o, "translate", v, minimum=0.0, maximum=1.0) for v in t))

    def sample(self, size: Size, rng: Rng) -> AffineParams:
        tx, ty = self.translate
        return AffineParams(rng.uniform(*self.degrees), rng.uniform(*self.scale), rng.uniform(*self.shear),
                            rng.uniform(-tx, tx) * size[1], rng.uniform(-ty, ty) * size[0])

    def matrix(self, p: AffineParams, size: Size) -> tuple[np.ndarray, Size]:
        return G.affine(p.degrees, p.scale, p.shear, p.x, p.y, size), size


@dataclasses.dataclass(frozen=True)
class Corners:
    """Where the frame's corners (top-left, top-right, bottom-right, bottom-left) go, in pixels."""

    points: tuple[tuple[float, float], ...]


@register_transform
@dataclasses.dataclass(frozen=True)
class Perspective(Projective):
    """Move each corner of the frame inwards by up to ``distortion`` × half the width and height
    (as torchvision's RandomPerspective); the frame keeps its size."""

    name = "perspective"
    distortion: float = 0.3

    def __post_init__(self) -> None:
        _set(self, "distortion", C.number("Perspective", "distortion", self.distortion, minimum=0.0, maximum=1.0))

    def sample(self, size: Size, rng: Rng) -> Corners:
        h, w = size
        dx, dy = self.distortion * w / 2.0, self.distortion * h / 2.0
        inward = ((1, 1), (-1, 1), (-1, -1), (1, -1))
        pts = tuple((cx + sx * rng.uniform(0.0, dx), cy + sy * rng.uniform(0.0, dy))
                    for (cx, cy), (sx, sy) in zip(((0.0, 0.0), (w, 0.0), (w, h), (0.0, h)), inward))
        return Corners(pts)

    def matrix(self, p: Corners, size: Size) -> tuple[np.ndarray, Size]:
        h, w = size
        return G.homography(np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]]), np.array(p.points)), size


@dataclasses.dataclass(frozen=True)
class Flip:
    flip: bool


@register_transform
@dataclasses.dataclass(frozen=True)
class FlipX(Projective):
    """Mirror left-right with probability ``p`` (exact: a reversed view, no interpolation)."""

    name = "flip_x"
    p: float = 0.5

    def __post_init__(self) -> None:
        _set(self, "p", C.probability("FlipX", "p", self.p))

    def sample(self, size: Size, rng: Rng) -> Flip:
        return Flip(rng.random() < self.p)

    def matrix(self, p: Flip, size: Size) -> tuple[np.ndarray, Size]:
        return (G.flip_x(size) if p.flip else G.identity()), size


@register_transform
@dataclasses.dataclass(frozen=True)
class FlipY(Projective):
    """Mirror top-bottom with probability ``p``."""

    name = "flip_y"
    p: float = 0.5

    def __post_init__(self) -> None:
        _set(self, "p", C.probability("FlipY", "p", self.p))

    def sample(self, size: Size, rng: Rng) -> Flip:
        return Flip(rng.random() < self.p)

    def matrix(self, p: Flip, size: Size) -> tuple[np.ndarray, Size]:
        return (G.flip_y(size) if p.flip else G.identity()), size


@dataclasses.dataclass(frozen=True)
class Turns:
    k: int


@register_transform
@dataclasses.dataclass(frozen=True)
class Rot90(Projective):
    """Quarter turns counter-clockwise (as ``np.rot90``), a number drawn from ``turns``; odd turns
    swap height and width."""

    name = "rot90"
    turns: int | tuple[int, ...] = (0, 1, 2, 3)

    def __post_init__(self) -> None:
        t = (self.turns,) if isinstance(self.turns, int) and not isinstance(self.turns, bool) else self.turns
        if not (isinstance(t, (tuple, list)) and t
                and all(isinstance(k, int) and not isinstance(k, bool) for k in t)):
            raise ValueError(f"Rot90: turns must be an integer or a non-empty list of them, got {self.turns!r}")
        _set(self, "turns", tuple(int(k) % 4 for k in t))

    def sample(self, size: Size, rng: Rng) -> Turns:
        return Turns(rng.pick(self.turns))

    def matrix(self, p: Turns, size: Size) -> tuple[np.ndarray, Size]:
        return G.rot90(p.k, size)

