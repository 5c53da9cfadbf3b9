"""3-D projective transforms for volumes: rotations about an axis, a random affine, zoom, scale,
resize, flips and crops. Each samples a small record and turns it into a forward 4×4 matrix
(``_geometry3d``); consecutive ones fuse into one matrix and one warp per item, which computes
only the output frame (crops are lazy, as in 2-D). They need a volume's (depth, height, width)
frame; a 2-D transform in the same pipeline is refused by the planner, and so are these on images."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from torchdeck.augment import _checks as C
from torchdeck.augment import _geometry3d as G3
from torchdeck.augment._base import Projective, register_transform
from torchdeck.augment._rng import Rng

__all__ = ["Rotate3D", "Affine3D", "Zoom3D", "Scale3D", "Resize3D", "Flip3D", "CenterCrop3D", "RandomCrop3D"]

Size3 = tuple[int, int, int]


def _set(obj: object, field: str, value: object) -> None:
    object.__setattr__(obj, field, value)


def _axis(owner: str, value: Any) -> str:
    return C.choice(owner, "axis", value, tuple(G3.AXES))


@dataclasses.dataclass(frozen=True)
class Angle3:
    axis: str
    degrees: float


@register_transform
@dataclasses.dataclass(frozen=True)
class Rotate3D(Projective):
    """Rotate about the volume's centre, around ``axis`` ("x", "y" or "z"), by an angle from
    ``degrees`` (``15`` means -15..15). "z" turns each slice as the 2-D Rotate turns an image;
    at +90° the result is ``np.rot90(volume, 1, axes=...)`` with axes (1, 2) for "z", (0, 1) for
    "x" and (2, 0) for "y" (array axes D, H, W). The frame keeps its size."""

    name = "rotate3d"
    dims = 3
    axis: str = "z"
    degrees: float | tuple[float, float] = 15.0

    def __post_init__(self) -> None:
        _axis("Rotate3D", self.axis)
        _set(self, "degrees", C.span("Rotate3D", "degrees", self.degrees, around=0.0))

    def sample(self, size: Size3, rng: Rng) -> Angle3:
        return Angle3(self.axis, rng.uniform(*self.degrees))

    def matrix(self, p: Angle3, size: Size3) -> tuple[np.ndarray, Size3]:
        return G3.about(G3.rotate(p.axis, p.degrees), size), size


@dataclasses.dataclass(frozen=True)
class Affine3Params:
    x_degrees: float
    y_degrees: float
    z_degrees: float
    scale: float
    x: float  # voxels
    y: float
    z: float


@register_transform
@dataclasses.dataclass(frozen=True)
class Affine3D(Projective):
    """Rotation about x, then y, then z (angles from ``degrees``, the same range for each axis in
    ``axes``), an isotropic scale from ``scale`` and a shift of up to ``translate`` of the frame
    (one fraction, or (x, y, z) fractions), all about the centre. The frame keeps its size."""

    name = "affine3d"
    dims = 3
    degrees: float | tuple[float, float] = 15.0
    axes: str = "xyz"
    scale: float | tuple[float, float] = 1.0
    translate: float | tuple[float, float, float] = 0.0

    def __post_init__(self) -> None:
        o = "Affine3D"
        _set(self, "degrees", C.span(o, "degrees", self.degrees, around=0.0))
        if not isinstance(self.axes, str) or not set(self.axes) <= set("xyz") or len(set(self.axes)) != len(self.axes):
            raise ValueError(f"{o}: axes must name each of x, y, z at most once (e.g. 'xyz', 'z'), got {self.axes!r}")
        _set(self, "scale", C.span(o, "scale", self.scale, minimum=0.0, exclusive_minimum=True))
        t = self.translate
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            t = (t, t, t)
        if not (isinstance(t, (tuple, list)) and len(t) == 3):
            raise ValueError(f"{o}: translate must be a fraction or (x, y, z) fractions in 0..1, got {t!r}")
        _set(self, "translate", tuple(C.number(o, "translate", v, minimum=0.0, maximum=1.0) for v in t))

    def sample(self, size: Size3, rng: Rng) -> Affine3Params:
        angles = {a: (rng.uniform(*self.degrees) if a in self.axes else 0.0) for a in "xyz"}
        d, h, w = size
        tx, ty, tz = self.translate
        return Affine3Params(angles["x"], angles["y"], angles["z"], rng.uniform(*self.scale),
                             rng.uniform(-tx, tx) * w, rng.uniform(-ty, ty) * h, rng.uniform(-tz, tz) * d)

    def matrix(self, p: Affine3Params, size: Size3) -> tuple[np.ndarray, Size3]:
        m = (G3.translate(p.x, p.y, p.z) @ G3.rotate("z", p.z_degrees) @ G3.rotate("y", p.y_degrees)
             @ G3.rotate("x", p.x_degrees) @ G3.scale(p.scale, p.scale, p.scale))
        return G3.about(m, size), size


@dataclasses.dataclass(frozen=True)
class Factor3:
    factor: float


@register_transform
@dataclasses.dataclass(frozen=True)
class Zoom3D(Projective):
    """Scale the content about the centre by a factor from ``scale`` (> 1 zooms in); the frame
    keeps its size."""

    name = "zoom3d"
    dims = 3
    scale: float | tuple[float, float] = (1.0, 1.2)

    def __post_init__(self) -> None:
        _set(self, "scale", C.span("Zoom3D", "scale", self.scale, minimum=0.0, exclusive_minimum=True))

    def sample(self, size: Size3, rng: Rng) -> Factor3:
        return Factor3(rng.uniform(*self.scale))

    def matrix(self, p: Factor3, size: Size3) -> tuple[np.ndarray, Size3]:
        return G3.about(G3.scale(p.factor, p.factor, p.factor), size), size


@register_transform
@dataclasses.dataclass(frozen=True)
class Scale3D(Projective):
    """Rescale the frame by a factor from ``factor``: the output is round(D·f)×round(H·f)×round(W·f)."""

    name = "scale3d"
    dims = 3
    factor: float | tuple[float, float] = 1.0

    def __post_init__(self) -> None:
        _set(self, "factor", C.span("Scale3D", "factor", self.factor, minimum=0.0, exclusive_minimum=True))

    def sample(self, size: Size3, rng: Rng) -> Factor3:
        return Factor3(rng.uniform(*self.factor))

    def matrix(self, p: Factor3, size: Size3) -> tuple[np.ndarray, Size3]:
        new = tuple(max(1, round(s * p.factor)) for s in size)
        return G3.resize(size, new), new


@register_transform
@dataclasses.dataclass(frozen=True)
class Resize3D(Projective):
    """Rescale the frame to exactly ``size`` = (depth, height, width) (one integer: a cube)."""

    name = "resize3d"
    dims = 3
    size: int | tuple[int, int, int] = 64

    def __post_init__(self) -> None:
        _set(self, "size", C.size3("Resize3D", "size", self.size))

    def matrix(self, p: None, size: Size3) -> tuple[np.ndarray, Size3]:
        return G3.resize(size, self.size), self.size


@dataclasses.dataclass(frozen=True)
class Flip3:
    flip: bool


@register_transform
@dataclasses.dataclass(frozen=True)
class Flip3D(Projective):
    """Mirror along ``axis`` ("x": left-right, "y": top-bottom, "z": front-back) with probability
    ``p`` (exact: whole voxels move, no interpolation)."""

    name = "flip3d"
    dims = 3
    axis: str = "x"
    p: float = 0.5

    def __post_init__(self) -> None:
        _axis("Flip3D", self.axis)
        _set(self, "p", C.probability("Flip3D", "p", self.p))

    def sample(self, size: Size3, rng: Rng) -> Flip3:
        return Flip3(rng.random() < self.p)

    def matrix(self, p: Flip3, size: Size3) -> tuple[np.ndarray, Size3]:
        return (G3.flip(self.axis, size) if p.flip else G3.identity()), size


@dataclasses.dataclass(frozen=True)
class Region3:
    """A box of the current frame in voxels (it may reach outside: the border fills it)."""

    front: int
    top: int
    left: int
    depth: int
    height: int
    width: int


def _window(r: Region3) -> tuple[np.ndarray, Size3]:
    return G3.translate(-r.left, -r.top, -r.front), (r.depth, r.height, r.width)


@register_transform
@dataclasses.dataclass(frozen=True)
class CenterCrop3D(Projective):
    """The central ``size`` = (depth, height, width) box (larger than the frame: padded by the border)."""

    name = "center_crop3d"
    dims = 3
    size: int | tuple[int, int, int] = 64

    def __post_init__(self) -> None:
        _set(self, "size", C.size3("CenterCrop3D", "size", self.size))

    def sample(self, size: Size3, rng: Rng) -> Region3:
        # Same rounding as the 2-D CenterCrop (torchvision's).
        start = [int(round((s - n) / 2.0)) for s, n in zip(size, self.size)]
        return Region3(*start, *self.size)

    def matrix(self, p: Region3, size: Size3) -> tuple[np.ndarray, Size3]:
        return _window(p)


@register_transform
@dataclasses.dataclass(frozen=True)
class RandomCrop3D(Projective):
    """A ``size`` box at a uniformly random whole-voxel position (a box larger than the frame is
    placed so the frame lies inside it)."""

    name = "random_crop3d"
    dims = 3
    size: int | tuple[int, int, int] = 64

    def __post_init__(self) -> None:
        _set(self, "size", C.size3("RandomCrop3D", "size", self.size))

    def sample(self, size: Size3, rng: Rng) -> Region3:
        start = [rng.integer(0, s - n) for s, n in zip(size, self.size)]
        return Region3(*start, *self.size)

    def matrix(self, p: Region3, size: Size3) -> tuple[np.ndarray, Size3]:
        return _window(p)
