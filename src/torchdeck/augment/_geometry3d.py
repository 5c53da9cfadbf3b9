"""4×4 matrices for the 3-D transforms: forward maps on (x, y, z, 1) in continuous voxel
coordinates, as ``_geometry`` does in 2-D. Voxel (k, i, j) of a D×H×W array (depth k, row i,
column j) covers ``[j, j+1] × [i, i+1] × [k, k+1]``; its centre is (j+½, i+½, k+½), so flips and
quarter turns are exact integer maps. Sizes are (depth, height, width)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["AXES", "identity", "translate", "scale", "rotate", "about", "flip", "resize", "corners", "footprint"]

Size3 = tuple[int, int, int]
# Axis name -> coordinate index (x, y, z) and the size index (depth, height, width) it spans.
AXES = {"x": (0, 2), "y": (1, 1), "z": (2, 0)}
# The plane each rotation turns, as (p, q) coordinate indices: p' = c·p + s·q, q' = -s·p + c·q.
# "z" turns every slice as the 2-D Rotate turns an image (counter-clockwise on screen); the
# others follow cyclically (x -> y -> z), so each equals np.rot90 at 90° (see Rotate3D).
_PLANES = {"z": (0, 1), "x": (1, 2), "y": (2, 0)}


def identity() -> np.ndarray:
    return np.eye(4)


def translate(tx: float, ty: float, tz: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (tx, ty, tz)
    return m


def scale(sx: float, sy: float, sz: float) -> np.ndarray:
    return np.diag([sx, sy, sz, 1.0])


def rotate(axis: str, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    p, q = _PLANES[axis]
    m = np.eye(4)
    m[p, p], m[p, q], m[q, p], m[q, q] = c, s, -s, c
    return m


def about(m: np.ndarray, size: Size3) -> np.ndarray:
    """``m`` applied about the centre of a frame of ``size`` rather than about the origin."""
    d, h, w = size
    return translate(w / 2.0, h / 2.0, d / 2.0) @ m @ translate(-w / 2.0, -h / 2.0, -d / 2.0)


def flip(axis: str, size: Size3) -> np.ndarray:
    k, n = AXES[axis]
    m = np.eye(4)
    m[k, k], m[k, 3] = -1.0, float(size[n])
    return m


def resize(size: Size3, new: Size3) -> np.ndarray:
    """The frame itself rescaled to ``new``: faces map to faces."""
    return scale(new[2] / size[2], new[1] / size[1], new[0] / size[0])


def corners(inv: np.ndarray, size: Size3) -> np.ndarray:
    """Where the output frame's 8 corners come from (8×3 (x, y, z)), given the inverse map."""
    d, h, w = size
    pts = np.array([[x, y, z, 1.0] for x in (0.0, w) for y in (0.0, h) for z in (0.0, d)])
    return (pts @ inv.T)[:, :3]


def footprint(inv: np.ndarray) -> np.ndarray:
    """How far apart, in source voxels along source x, y and z, neighbouring output voxels sample
    (the norms of the rows of the inverse's linear part). Above ~2 a trilinear warp skips voxels."""
    return np.linalg.norm(inv[:3, :3], axis=1)
