"""3×3 matrices for the projective transforms, and the coordinate conventions.

All matrices here are *forward* maps in continuous image coordinates: pixel (row i, column j)
covers ``[j, j+1] × [i, i+1]``, so its centre is ``(j + 0.5, i + 0.5)`` and an image of width W
spans ``[0, W]``. In these coordinates flips and 90° turns are exact integer maps
(``x -> W - x``), resizes are pure scalings (``x -> x * w'/w``) and crops pure translations.

Conventions at the edges of the library (the same as torchvision's tv_tensors):
- boxes are xyxy in these continuous coordinates (a box over the whole image is ``[0, 0, W, H]``);
- keypoints are in pixel-index coordinates: ``(j, i)`` is the centre of pixel (i, j), i.e. the
  continuous point minus 0.5 (``to_continuous`` / ``from_continuous``);
- OpenCV puts pixel centres at integers too, so its matrix is ``T(-½) · M · T(+½)`` (``to_cv2``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "identity", "translate", "scale", "rotate", "shear", "flip_x", "flip_y", "rot90", "about",
    "homography", "is_affine", "is_identity", "to_cv2", "apply", "to_continuous", "from_continuous",
    "footprint", "integer_map", "corners", "affine", "inverse",
]

Size = tuple[int, int]  # (height, width)


def identity() -> np.ndarray:
    return np.eye(3)


def translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scale(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def rotate(degrees: float) -> np.ndarray:
    """Counter-clockwise as seen on screen (y points down), as cv2 and torchvision rotate."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def shear(x_degrees: float, y_degrees: float) -> np.ndarray:
    return np.array([[1.0, math.tan(math.radians(x_degrees)), 0.0],
                     [math.tan(math.radians(y_degrees)), 1.0, 0.0], [0.0, 0.0, 1.0]])


def about(m: np.ndarray, size: Size) -> np.ndarray:
    """``m`` applied about the centre of a frame of ``size`` rather than about the origin."""
    cy, cx = size[0] / 2.0, size[1] / 2.0
    if not is_affine(m):
        return translate(cx, cy) @ m @ translate(-cx, -cy)
    out = m.copy()  # T(c)·M·T(-c) for affine M: same linear part, translation c + t - L·c
    out[0, 2] += cx - m[0, 0] * cx - m[0, 1] * cy
    out[1, 2] += cy - m[1, 0] * cx - m[1, 1] * cy
    return out


def affine(degrees: float, scale_: float, shear_x_degrees: float, tx: float, ty: float, size: Size) -> np.ndarray:
    """Translate · rotate · shear(x) · scale about the frame's centre, in closed form (this runs
    once per sample; five 3×3 products cost more than the formula)."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    k = math.tan(math.radians(shear_x_degrees))
    # [[c, s], [-s, c]] @ [[1, k], [0, 1]] * scale
    a, b, d, e = c * scale_, (c * k + s) * scale_, -s * scale_, (c - s * k) * scale_
    return about(np.array([[a, b, tx], [d, e, ty], [0.0, 0.0, 1.0]]), size)


def flip_x(size: Size) -> np.ndarray:
    return np.array([[-1.0, 0.0, float(size[1])], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def flip_y(size: Size) -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0], [0.0, -1.0, float(size[0])], [0.0, 0.0, 1.0]])


def rot90(k: int, size: Size) -> tuple[np.ndarray, Size]:
    """``k`` quarter turns counter-clockwise, as ``np.rot90(image, k)``; returns the new size."""
    m, (h, w) = identity(), size
    for _ in range(k % 4):
        # np.rot90 once: new[i, j] = old[j, W-1-i]  <=>  x' = y, y' = W - x (continuous).
        m = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, float(w)], [0.0, 0.0, 1.0]]) @ m
        h, w = w, h
    return m, (h, w)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The projective map taking 4 points ``src`` (4×2) to ``dst`` (4×2), solved directly."""
    a, b = [], []
    for (x, y), (u, v) in zip(np.asarray(src, float), np.asarray(dst, float)):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y]); b.append(u)
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y]); b.append(v)
    h = np.linalg.solve(np.array(a), np.array(b))
    return np.append(h, 1.0).reshape(3, 3)


def is_affine(m: np.ndarray) -> bool:
    return abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12 and abs(m[2, 2] - 1.0) < 1e-12


_EYE = np.eye(3)


def is_identity(m: np.ndarray) -> bool:
    """Also for the 4×4 matrices of volumes."""
    return bool(np.abs(m - (_EYE if m.shape[0] == 3 else np.eye(m.shape[0]))).max() < 1e-12)


def inverse(m: np.ndarray) -> np.ndarray:
    """The inverse map; affine ones in closed form (np.linalg.inv's checks cost more than the
    arithmetic on 3×3). Volumes' 4×4 matrices go through np.linalg.inv."""
    if m.shape[0] != 3:
        if abs(np.linalg.det(m[:-1, :-1])) < 1e-12:
            raise ValueError("the transform collapses the volume (its matrix is singular)")
        return np.linalg.inv(m)
    if not is_affine(m):
        return np.linalg.inv(m)
    a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    det = a * d - b * c
    if det == 0:
        raise ValueError("the transform collapses the image (its matrix is singular)")
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    tx, ty = m[0, 2], m[1, 2]
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)], [0.0, 0.0, 1.0]])


_HALF, _MINUS_HALF = translate(0.5, 0.5), translate(-0.5, -0.5)


def to_cv2(m: np.ndarray) -> np.ndarray:
    """The same map with pixel centres at integers (what cv2.warp* expects)."""
    out = _MINUS_HALF @ m @ _HALF
    return out / out[2, 2]


def apply(m: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map N×2 points; also returns which stay in front of the projection (w > 0)."""
    h = points @ m[:2, :2].T + m[:2, 2]
    if is_affine(m):
        return h, np.ones(len(points), bool)
    w = points @ m[2, :2] + m[2, 2]
    ahead = w > 1e-12
    return h / np.where(ahead, w, 1e-12)[:, None], ahead


def to_continuous(xy: np.ndarray) -> np.ndarray:
    return xy + 0.5


def from_continuous(xy: np.ndarray) -> np.ndarray:
    return xy - 0.5


def corners(inv: np.ndarray, size: Size) -> tuple[np.ndarray, bool]:
    """Where the output frame's corners come from (4×2), given the inverse map; and whether all
    lie in front of the projection."""
    h, w = size
    pts, ahead = apply(inv, np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]]))
    return pts, bool(ahead.all())


def footprint(inv: np.ndarray, out_size: Size) -> tuple[float, float]:
    """How far apart, in source pixels along source x and y, neighbouring output pixels sample
    (the rows of the local Jacobian at the output centre; ``inv`` maps output to source). A
    rotation leaves it at the scale; above ~2 a bilinear warp skips source pixels (aliasing)."""
    c = np.array([out_size[1] / 2.0, out_size[0] / 2.0])
    pts, _ = apply(inv, np.array([c, c + (1.0, 0.0), c + (0.0, 1.0)]))
    dx, dy = pts[1] - pts[0], pts[2] - pts[0]  # columns of the local Jacobian (source per output)
    return math.hypot(dx[0], dy[0]), math.hypot(dx[1], dy[1])


def integer_map(inv: np.ndarray) -> tuple[bool, int, int, int, int] | None:
    """If the map moves whole pixels only (flips, quarter turns, integer crops and pads), the map
    from output pixel index (x', y') to source pixel index as ``(transposed, sx, bx, sy, by)``:
    ``src_x = sx * x' + bx, src_y = sy * y' + by``, or when transposed
    ``src_x = sx * y' + bx, src_y = sy * x' + by``. Else None. ``inv`` maps output to source."""
    if not is_affine(inv):
        return None
    # In pixel-index coordinates the translation shifts by the linear part's effect on ½.
    a00, a01, a10, a11 = inv[0, 0], inv[0, 1], inv[1, 0], inv[1, 1]
    if a00 * a01 != 0 or a10 * a11 != 0 or {abs(a00) + abs(a01), abs(a10) + abs(a11)} != {1.0}:
        return None
    bx = inv[0, 2] + 0.5 * (a00 + a01) - 0.5
    by = inv[1, 2] + 0.5 * (a10 + a11) - 0.5
    rx, ry = round(bx), round(by)
    if abs(bx - rx) > 1e-9 or abs(by - ry) > 1e-9:
        return None
    if a00 == 0:  # src_x follows output y
        if a11 != 0:
            return None
        return True, int(a01), rx, int(a10), ry
    if a10 != 0:
        return None
    return False, int(a00), rx, int(a11), ry
