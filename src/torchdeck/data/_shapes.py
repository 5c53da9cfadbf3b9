"""``shapes``: a procedural data set of circles, squares and triangles, generated from a seed.

Every target is derived from one pixel set per shape, so image, masks, boxes and labels agree
exactly: each shape's membership is computed once (pixel centres inside the analytic shape),
and that same boolean set paints the shape's colour into the image and its id into the masks.

Coordinates are continuous pixel coordinates: pixel (row i, column j) covers
``[j, j + 1) x [i, i + 1)``, so its centre is ``(j + 0.5, i + 0.5)`` (x first). Keypoints are
analytic (exact centres and corners); boxes are ``(x0, y0, x1, y1)`` edges of the hull of a
shape's *visible* pixels.

Image ``i`` depends only on ``(seed, i)``: it draws its parameters from its own generator,
in units of the image side, so ``n`` never changes the first images, and the same seed at
another ``size`` shows the same scene at another resolution.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import cv2
import numpy as np

from torchdeck.data._base import register_dataset, seeded_split

__all__ = ["ShapesDataset", "shapes", "SHAPE_CLASSES"]

SHAPE_CLASSES = ("circle", "square", "triangle")  # mask ids 1, 2, 3; 0 is background
_CIRCLE, _SQUARE, _TRIANGLE = 1, 2, 3
_MAX_SHAPES = 8
# Images per vectorised chunk: bounds the (chunk, size, size) temporaries to ~4 M pixels.
_CHUNK_PIXELS = 1 << 22
_NOISE_GRID = 5  # the smooth background noise is a 5x5 grid, upsampled: the same at any size


def _check_int(field: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"shapes: {field} must be {allowed}, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class ShapesDataset:
    """Images of shapes with every target they support, and a fixed train/valid split.

    Per image (``N`` images of ``S x S`` pixels, up to ``M = max_shapes`` shapes, drawn in
    slot order so later shapes cover earlier ones):

    - ``images``: (N, S, S, 3) uint8 RGB.
    - ``masks``: (N, S, S) uint8 class per pixel, 0 background, 1 circle, 2 square, 3 triangle.
    - ``instances``: (N, S, S) uint8, 0 background, ``m + 1`` where shape slot ``m`` is visible.
    - ``shape_labels``: (N, M) int64 class of each slot, 0 for an unused slot.
    - ``colours``: (N, M, 3) uint8 RGB of each slot.
    - ``centres``: (N, M, 2) float32 analytic centre (x, y); NaN for an unused slot.
    - ``radii``: (N, M) float32 circumradius (a circle's radius); NaN for an unused slot.
    - ``corners``: (N, M, 4, 2) float32 vertices (4 for a square, 3 for a triangle, then NaN).
    - ``boxes``: (N, M, 4) float32 ``(x0, y0, x1, y1)`` of the slot's visible pixels; NaN when
      the slot is unused or fully covered by later shapes.
    - ``labels``: (N, 3) float32 multi-hot over ``classes``: the classes present in the mask.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("labels", "masks", "instances", "shape_labels", "colours", "centres",
                                         "radii", "corners", "boxes")

    name: str
    images: np.ndarray
    masks: np.ndarray
    instances: np.ndarray
    shape_labels: np.ndarray
    colours: np.ndarray
    centres: np.ndarray
    radii: np.ndarray
    corners: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    train_idx: np.ndarray
    valid_idx: np.ndarray
    classes: tuple[str, ...] = SHAPE_CLASSES
    mask_classes: tuple[str, ...] = ("background", *SHAPE_CLASSES)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def field(self, name: str) -> np.ndarray:
        """The whole array of one target field, e.g. ``field("masks")``."""
        if name not in self.FIELDS:
            raise ValueError(f"{self.name}: unknown field {name!r}; allowed: {', '.join(self.FIELDS)}")
        return getattr(self, name)

    def split(self, which: str, field: str = "labels") -> tuple[np.ndarray, np.ndarray]:
        """``(images, targets)`` of one split; ``field`` picks the target (default the multi-label)."""
        idx = {"train": self.train_idx, "valid": self.valid_idx}.get(which)
        if idx is None:
            raise ValueError(f"{self.name}: unknown split {which!r}; allowed: train, valid")
        return self.images[idx], self.field(field)[idx]

    def keypoints_of(self, i: int) -> np.ndarray:
        """(K, 2) keypoints of image ``i``: per shape in drawing order, its centre then its corners."""
        points = []
        for m in np.flatnonzero(self.shape_labels[i]):
            corners = self.corners[i, m]
            points.append(self.centres[i, m][None])
            points.append(corners[~np.isnan(corners[:, 0])])
        return np.concatenate(points).astype(np.float32) if points else np.zeros((0, 2), np.float32)

    def boxes_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (k, 4), labels (k,))`` of the visible shapes of image ``i``, in drawing order."""
        keep = ~np.isnan(self.boxes[i, :, 0])
        return self.boxes[i, keep], self.shape_labels[i, keep]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        n, s = len(self.images), self.size
        return (f"ShapesDataset({self.name!r}, {n} images {s}x{s}x3, up to {self.shape_labels.shape[1]} shapes, "
                f"train {len(self.train_idx)} / valid {len(self.valid_idx)})")


@dataclasses.dataclass
class _Params:
    """Per-image drawing parameters, in units of the image side (so independent of size)."""

    kinds: np.ndarray      # (N, M) int64, 0 = unused slot
    centres: np.ndarray    # (N, M, 2)
    radii: np.ndarray      # (N, M) circumradius
    angles: np.ndarray     # (N, M)
    colours: np.ndarray    # (N, M, 3) uint8
    bg_colours: np.ndarray  # (N, 2, 3) float, gradient end points in [0, 1]
    bg_angles: np.ndarray  # (N,)
    noise: np.ndarray      # (N, g, g, 3) in [-1, 1]
    grain_seeds: np.ndarray  # (N,) seeds of the per-pixel grain (the only size-dependent draw)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hue, saturation, value in [0, 1] -> (..., 3) uint8 RGB."""
    hsv = np.stack([h * 360.0, s, v], axis=-1).astype(np.float32).reshape(1, -1, 3)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(*h.shape, 3)
    return np.round(rgb * 255.0).astype(np.uint8)


def _draw_params(n: int, seed: int, max_shapes: int) -> _Params:
    m = max_shapes
    kinds = np.zeros((n, m), np.int64)
    centres = np.zeros((n, m, 2))
    radii = np.zeros((n, m))
    angles = np.zeros((n, m))
    hsv = np.zeros((n, m, 3))
    bg_hsv = np.zeros((n, 2, 3))
    bg_angles = np.zeros(n)
    noise = np.zeros((n, _NOISE_GRID, _NOISE_GRID, 3))
    grain_seeds = np.zeros(n, np.uint64)
    for i in range(n):
        # One generator per image: image i is the same whatever n is.
        rng = np.random.default_rng([seed, i])
        count = rng.integers(1, m + 1)
        kinds[i] = np.where(np.arange(m) < count, rng.integers(1, 4, m), 0)
        radii[i] = rng.uniform(0.09, 0.2, m)
        # Whole shapes stay inside the image, so every corner is a visible-frame keypoint.
        centres[i] = radii[i, :, None] + rng.random((m, 2)) * (1.0 - 2.0 * radii[i, :, None])
        angles[i] = rng.uniform(0.0, 2.0 * np.pi, m)
        # Shapes are saturated and bright, backgrounds darker and greyer: visible, learnable.
        hsv[i] = np.stack([rng.random(m), rng.uniform(0.55, 1.0, m), rng.uniform(0.75, 1.0, m)], axis=-1)
        bg_hsv[i] = np.stack([rng.random(2), rng.uniform(0.0, 0.6, 2), rng.uniform(0.08, 0.5, 2)], axis=-1)
        bg_angles[i] = rng.uniform(0.0, 2.0 * np.pi)
        noise[i] = rng.uniform(-1.0, 1.0, noise.shape[1:])
        grain_seeds[i] = rng.integers(0, 2**63)
    colours = _hsv_to_rgb(hsv[..., 0], hsv[..., 1], hsv[..., 2])
    bg = _hsv_to_rgb(bg_hsv[..., 0], bg_hsv[..., 1], bg_hsv[..., 2]).astype(np.float32) / 255.0
    return _Params(kinds, centres, radii, angles, colours, bg, bg_angles, noise, grain_seeds)


def _vertices(kinds: np.ndarray, centres: np.ndarray, radii: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(N, M, 4, 2) polygon vertices in pixels, counter-clockwise in (x, y); NaN where none.

    A triangle's 4th vertex repeats its 3rd: that degenerate edge passes every inside test,
    so squares and triangles share one vectorised test.
    """
    step = np.where(kinds == _SQUARE, np.pi / 2, 2 * np.pi / 3)[..., None]
    k = np.array([0, 1, 2, 2], np.float64)
    k = np.where((kinds == _SQUARE)[..., None], np.arange(4.0), k)
    theta = angles[..., None] + k * step
    v = centres[..., None, :] + radii[..., None, None] * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    v[kinds == _CIRCLE] = np.nan
    v[kinds == 0] = np.nan
    return v


def _inside_circle(x: np.ndarray, y: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(B, S, S) pixel centres inside circles of centres c (B, 2) and radii r (B,)."""
    dx = x[None, None, :] - c[:, 0, None, None]
    dy = y[None, :, None] - c[:, 1, None, None]
    return dx * dx + dy * dy <= (r * r)[:, None, None]


def _inside_polygon(x: np.ndarray, y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(B, S, S) pixel centres inside convex counter-clockwise polygons v (B, V, 2)."""
    inside = np.ones((len(v), len(y), len(x)), bool)
    for k in range(v.shape[1]):
        a, b = v[:, k], v[:, (k + 1) % v.shape[1]]
        ex, ey = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
        cross = ex * (y[None, :, None] - a[:, 1, None, None]) - ey * (x[None, None, :] - a[:, 0, None, None])
        inside &= cross >= 0
    return inside


def _background(p: _Params, sl: slice, size: int) -> np.ndarray:
    """(B, S, S, 3) uint8: a two-colour gradient at an angle, smooth noise and fine grain.

    The gradient is linear, so bilinear interpolation reproduces it exactly: gradient and
    noise are summed on a small grid of nodes spanning the image edge to edge, then
    upsampled together, one matrix product per axis, in 0..255 units.
    """
    g = p.noise.shape[1]
    nodes = np.linspace(-0.5, 0.5, g)  # node positions across the image, edge to edge
    cos, sin = np.cos(p.bg_angles[sl]), np.sin(p.bg_angles[sl])
    proj = nodes[None, None, :] * cos[:, None, None] + nodes[None, :, None] * sin[:, None, None]
    t = proj / (np.abs(cos) + np.abs(sin))[:, None, None] + 0.5  # in [0, 1] across the image
    c0, c1 = p.bg_colours[sl, 0], p.bg_colours[sl, 1]
    grid = c0[:, None, None, :] + t[..., None] * (c1 - c0)[:, None, None, :] + 0.12 * p.noise[sl]
    grid = (grid * 255.0 + 0.5).astype(np.float32)  # + 0.5: the uint8 cast below then rounds
    pos = (np.arange(size) + 0.5) / size * (g - 1)  # pixel centres in node units
    lo = np.minimum(np.floor(pos).astype(int), g - 2)
    frac = (pos - lo).astype(np.float32)
    interp = np.zeros((size, g), np.float32)
    interp[np.arange(size), lo] = 1.0 - frac
    interp[np.arange(size), lo + 1] = frac
    img = np.einsum("sg,bghc,th->bstc", interp, grid, interp, optimize=True)
    grain = np.stack([np.random.default_rng(int(s)).random((size, size), dtype=np.float32)
                      for s in p.grain_seeds[sl]])
    grain -= 0.5
    grain *= 0.08 * 255.0
    img += grain[..., None]
    np.clip(img, 0.0, 255.0, out=img)
    return img.astype(np.uint8)


def _visible_boxes(visible: np.ndarray) -> np.ndarray:
    """(B, 4) edge coordinates of the hull of each image's ``visible`` (B, S, S) pixels; NaN if none."""
    rows, cols = visible.any(axis=2), visible.any(axis=1)
    present = rows.any(axis=1)
    s = visible.shape[1]
    y0, y1 = rows.argmax(axis=1), s - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), s - cols[:, ::-1].argmax(axis=1)
    box = np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)
    box[~present] = np.nan
    return box


def _render(p: _Params, size: int) -> dict[str, np.ndarray]:
    n, m = p.kinds.shape
    centres, radii = p.centres * size, p.radii * size
    vertices = _vertices(p.kinds, centres, radii, p.angles)
    x = y = np.arange(size, dtype=np.float64) + 0.5  # pixel centres
    out = {"images": np.empty((n, size, size, 3), np.uint8), "masks": np.empty((n, size, size), np.uint8),
           "instances": np.empty((n, size, size), np.uint8), "boxes": np.full((n, m, 4), np.nan, np.float32)}
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        kinds = p.kinds[sl]
        b = len(kinds)
        instances = np.zeros((b, size, size), np.uint8)
        for slot in range(m):
            # Each shape's pixel set is computed once; it paints both the image and the masks.
            member = np.zeros((b, size, size), bool)
            circ = kinds[:, slot] == _CIRCLE
            poly = (kinds[:, slot] == _SQUARE) | (kinds[:, slot] == _TRIANGLE)
            if circ.any():
                member[circ] = _inside_circle(x, y, centres[sl][circ, slot], radii[sl][circ, slot])
            if poly.any():
                member[poly] = _inside_polygon(x, y, vertices[sl][poly, slot])
            instances[member] = slot + 1
        image, mask = _background(p, sl, size), np.zeros((b, size, size), np.uint8)
        for slot in range(m):
            visible = instances == slot + 1
            np.copyto(image, p.colours[sl, slot, None, None, :], where=visible[..., None])
            np.copyto(mask, kinds[:, slot, None, None].astype(np.uint8), where=visible)
            out["boxes"][sl, slot] = _visible_boxes(visible)
        out["images"][sl], out["masks"][sl], out["instances"][sl] = image, mask, instances
    out["vertices"] = vertices.astype(np.float32)
    return out


@register_dataset("shapes")
def shapes(n: int = 1000, size: int = 64, seed: int = 0, max_shapes: int = 3,
           valid_fraction: float = 0.2) -> ShapesDataset:
    """``n`` images of ``size x size`` pixels with 1 to ``max_shapes`` shapes each.

    Args:
        n: number of images (>= 1).
        size: image side in pixels (>= 16).
        seed: the images depend only on it (and on ``max_shapes``): image ``i`` is the same for any ``n``.
        max_shapes: most shapes per image, 1 to 8; the count per image is uniform in [1, max_shapes].
        valid_fraction: share of images in the valid split (seeded by ``seed``).
    """
    n = _check_int("n", n, 1)
    size = _check_int("size", size, 16)
    seed = _check_int("seed", seed, 0)
    max_shapes = _check_int("max_shapes", max_shapes, 1, _MAX_SHAPES)
    train_idx, valid_idx = seeded_split(n, valid_fraction, seed)  # checks valid_fraction before any drawing
    params = _draw_params(n, seed, max_shapes)
    drawn = _render(params, size)
    masks = drawn["masks"]
    labels = np.stack([(masks == k).any(axis=(1, 2)) for k in range(1, len(SHAPE_CLASSES) + 1)], axis=1)
    unused = params.kinds == 0
    centres = (params.centres * size).astype(np.float32)
    centres[unused] = np.nan
    radii = (params.radii * size).astype(np.float32)
    radii[unused] = np.nan
    corners = drawn["vertices"]
    corners[params.kinds == _TRIANGLE, 3] = np.nan  # the repeated vertex was only for the inside test
    colours = params.colours.copy()
    colours[unused] = 0
    return ShapesDataset("shapes", drawn["images"], masks, drawn["instances"], params.kinds, colours,
                         centres, radii, corners, drawn["boxes"], labels.astype(np.float32), train_idx, valid_idx)

