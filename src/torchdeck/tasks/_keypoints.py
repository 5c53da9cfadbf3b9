"""Keypoint regression: a fixed number ``K`` of (x, y) points per image.

The points must be well defined for every image, in a fixed order, or the regression has
no single answer. On ``shapes`` that means one shape per image (``max_shapes=1``) and a
named set of points of it (:data:`KEYPOINT_SETS`): ``"centre"`` (K = 1, the analytic
centre) or ``"box"`` (K = 2, the top-left and bottom-right corners of the box of its
visible pixels). A shape's own corners are not offered: a square turned by 90 degrees is
the same square with its corners renumbered, so "corner 1" has no single answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from torchdeck import augment as A
from torchdeck import models
from torchdeck._registry import Registry
from torchdeck.data import ShapesDataset
from torchdeck.tasks._augmented import checked_image
from torchdeck.tasks._base import Grid, register_task
from torchdeck.tasks._vision import ShapesTask, draw_points
from torchdeck.train._metrics import SummedMetric

__all__ = ["KeypointRegression", "KEYPOINT_SETS", "KeypointSet", "VisibleL1Loss", "VisibleKeypointError"]

# (pipeline, image H×W×C, shape mask H×W uint8 (1 on the shape), points (K, 2), seed)
#   -> (augmented image, its points (K, 2), NaN where the point has no place in the frame)
Follow = Callable[[A.Transform, np.ndarray, np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class KeypointSet:
    """A named set of points: ``read(data, indices) -> (n, K, 2)`` float32 pixel coordinates
    (x, y) of the one shape per image, and how the set ``follow``s an augmentation. Calling
    it reads (``KEYPOINT_SETS["centre"](data, idx)``)."""

    read: Callable[[ShapesDataset, np.ndarray], np.ndarray]
    follow: Follow
    # whether ``follow`` reads the shape's mask (else it is not computed)
    needs_mask: bool = False

    def __call__(self, data: ShapesDataset, idx: np.ndarray) -> np.ndarray:
        return self.read(data, idx)


KEYPOINT_SETS = Registry("keypoint set")


def _moved(pipe: A.Transform, image: np.ndarray, mask: np.ndarray, points: np.ndarray,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points that are landmarks (a centre) move with the image as points. Ours put a pixel's
    centre at (j + 0.5, i + 0.5), the augment engine at (j, i). A point the warp takes out of
    the frame keeps no target (NaN): clamping it to the edge would teach a wrong place."""
    out = pipe(image=image, keypoints=points.astype(np.float64) - 0.5, seed=seed)
    xy = out["keypoints"] + 0.5
    xy[~out["visibility"]] = np.nan
    return out["image"], xy.astype(np.float32)


def _box_of_mask(pipe: A.Transform, image: np.ndarray, mask: np.ndarray, points: np.ndarray,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The box of the visible pixels is no landmark: after a flip its moved top-left corner is a
    top-right one, after a rotation no corner of the shape's box at all. So it is measured
    again, on the shape's mask moved with the image; NaN when the shape left the frame."""
    out = pipe(image=image, mask=mask, seed=seed)
    rows, cols = np.nonzero(out["mask"] == 1)
    if len(rows) == 0:
        return out["image"], np.full((2, 2), np.nan, np.float32)
    return out["image"], np.array([[cols.min(), rows.min()], [cols.max() + 1, rows.max() + 1]], np.float32)


def _centre(data: ShapesDataset, idx: np.ndarray) -> np.ndarray:
    return data.centres[idx, :1].astype(np.float32)


def _box(data: ShapesDataset, idx: np.ndarray) -> np.ndarray:
    return data.boxes[idx, 0].reshape(-1, 2, 2).astype(np.float32)


KEYPOINT_SETS.register("centre")(KeypointSet(_centre, _moved))
KEYPOINT_SETS.register("box")(KeypointSet(_box, _box_of_mask, needs_mask=True))


def _with_mask_fill_0(pipe: A.Transform) -> A.Transform:
    """The pipeline with nothing of the shape coming in from beyond the border (mask_fill 0)."""
    if pipe.options.mask_fill == 0:
        return pipe
    options = dataclasses.asdict(pipe.options)
    options["mask_fill"] = 0
    return A.Pipeline(*pipe.transforms, **options)  # only a Pipeline carries options


class VisibleL1Loss(nn.Module):
    """L1 over the target coordinates that are known: a NaN target (a keypoint an augmentation
    took out of the frame) adds nothing, gradient included. Mean over the known coordinates;
    with none known, 0 (still a function of ``pred``). Equal to ``nn.L1Loss`` without NaNs.

    pred, target: (N, K, 2).
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        known = torch.isfinite(target)
        # where(), not indexing: the unknown entries are exact zeros, with no NaN in the graph
        diff = torch.where(known, pred - torch.nan_to_num(target), torch.zeros((), dtype=pred.dtype,
                                                                                device=pred.device))
        return diff.abs().sum() / known.sum().clamp(min=1)


class VisibleKeypointError(SummedMetric):
    """Mean Euclidean distance between predicted and true keypoints, in pixels, over the
    keypoints whose target is known (not NaN).

    pred, target: (N, K, 2) normalised coordinates; ``pixels_per_unit`` converts them (half the
    image side, for coordinates in [-1, 1] across it). Statistics: (summed distance, count)
    over an epoch, so the epoch value is the mean over all its known keypoints.
    """

    def __init__(self, pixels_per_unit: float, name: str = "keypoint_error_px") -> None:
        number = isinstance(pixels_per_unit, (int, float)) and not isinstance(pixels_per_unit, bool)
        if not number or not pixels_per_unit > 0:
            raise ValueError(f"VisibleKeypointError: pixels_per_unit must be a positive number, got "
                             f"{pixels_per_unit!r}")
        self.pixels_per_unit = float(pixels_per_unit)
        self.__name__ = name

    def statistics(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
            raise ValueError(f"{self.__name__}: pred and target must both be (N, K, 2), got {tuple(pred.shape)} "
                             f"and {tuple(target.shape)}")
        known = torch.isfinite(target).all(dim=-1)
        dist = (pred.double() - torch.nan_to_num(target.double())).norm(dim=-1)
        return torch.stack([torch.where(known, dist, 0.0).sum(), known.sum().double()])

    def reduce(self, total: torch.Tensor) -> torch.Tensor:
        return total[0] / total[1] * self.pixels_per_unit

    def __repr__(self) -> str:
        return f"VisibleKeypointError(pixels_per_unit={self.pixels_per_unit:g})"


@register_task("keypoint-regression")
class KeypointRegression(ShapesTask):
    """Image -> ``K`` points (x, y) in pixels of the data's images.

    Targets are encoded as coordinates normalised to [-1, 1] across the image (so they do not
    depend on ``size``). On feature maps the head is a heatmap per point read by a
    soft-argmax (:class:`~torchdeck.models.HeatmapKeypoints`); on a pooled vector, a linear
    regressor. Loss: L1 on the normalised coordinates; metric: mean distance in pixels of the
    data's images (``keypoint_error_px``). A target coordinate may be NaN (a keypoint that an
    augmentation moved out of the frame): the loss and the metric leave it out.

    Args:
        data: a :class:`~torchdeck.data.ShapesDataset` with exactly one shape per image
            (``data.load("shapes", max_shapes=1)``).
        size: side of the square input the model sees; ``None`` keeps the data's size.
        points: a name in :data:`KEYPOINT_SETS`: ``"centre"`` or ``"box"``.
        heatmap_stride: resolution of the heatmaps relative to the input (1, 2, 4, ...).
        augment: a transform, its spec, or ``None``: applied to training samples only, each
            pass anew. ``"centre"`` moves with the image as a point; a point the warp takes out
            of the frame gets a NaN target (left out of loss and metric, not clamped).
            ``"box"`` is measured again on the shape's mask moved with the image (a flipped
            box's top-left corner is not the old one). Targets are normalised across the
            augmented frame, so crops and resizes of any fixed size are fine.
    """

    blocks = ("image", "keypoints")
    builtin_data = {"shapes (one per image)": ("shapes", {"max_shapes": 1})}

    def __init__(self, data: ShapesDataset, size: int | None = None, points: str = "centre",
                 heatmap_stride: int = 2, augment: Any = None) -> None:
        super().__init__(data, size, augment)
        if not isinstance(points, str) or points not in KEYPOINT_SETS:
            raise ValueError(f"{self.name}: points must be one of {', '.join(KEYPOINT_SETS.names())}, got {points!r}")
        if isinstance(heatmap_stride, bool) or not isinstance(heatmap_stride, int) or heatmap_stride < 1:
            raise ValueError(f"{self.name}: heatmap_stride must be a positive integer, got {heatmap_stride!r}")
        counts = (data.shape_labels > 0).sum(axis=1)
        several = np.flatnonzero(counts != 1)
        if len(several):
            i = int(several[0])
            raise ValueError(f"{self.name}: needs exactly one shape per image, so that each point is well defined; "
                             f"image {i} has {int(counts[i])} ({len(several)} images have several). Load the data "
                             "with max_shapes=1")
        self.points = points
        self.heatmap_stride = heatmap_stride
        self.keypoints = int(KEYPOINT_SETS[points](data, np.zeros(1, np.int64)).shape[1])
        if self.augment is not None and KEYPOINT_SETS[points].needs_mask:
            self.augment = _with_mask_fill_0(self.augment)
        self._check_augment()

    def augment_source(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Training ``(images, points, shape masks)``; the masks only for a set that reads them."""
        images, points = self.samples("train")
        needs_mask = KEYPOINT_SETS[self.points].needs_mask
        masks = (self.data.masks[self.data.train_idx] > 0).astype(np.uint8) if needs_mask else None
        return images, points, masks

    def augment_sample(self, source: tuple[np.ndarray, np.ndarray, np.ndarray | None], i: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
        images, points, masks = source
        image, xy = KEYPOINT_SETS[self.points].follow(self.augment, images[i], None if masks is None else masks[i],
                                                      points[i], seed)
        return checked_image(image, images.shape[-1]), xy

    def encode_augmented(self, images: np.ndarray, targets: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Points normalised across the augmented frame (W', H'), NaN kept; images as ``encode_inputs``."""
        h, w = images.shape[1:3]
        points = np.stack(targets).astype(np.float32)
        return self.encode_inputs(images), torch.from_numpy(points / np.array([w, h], np.float32) * 2.0 - 1.0)

    def samples(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        idx = {"train": self.data.train_idx, "valid": self.data.valid_idx}.get(split)
        if idx is None:
            raise ValueError(f"{self.name}: unknown split {split!r}; allowed: train, valid")
        return self.data.images[idx], KEYPOINT_SETS[self.points](self.data, idx)

    def encode_targets(self, points: np.ndarray) -> torch.Tensor:
        """(N, K, 2) pixel coordinates -> (N, K, 2) float32 in [-1, 1]."""
        points = np.asarray(points, np.float32)
        if points.ndim != 3 or points.shape[1:] != (self.keypoints, 2):
            raise ValueError(f"{self.name}: points must be (N, {self.keypoints}, 2), got shape {points.shape}")
        return torch.from_numpy(points / self.data.size * 2.0 - 1.0)

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        """(N, K, 2) normalised -> (N, K, 2) float32 pixel coordinates of the data's images."""
        return ((outputs.detach().float().cpu().numpy() + 1.0) / 2.0 * self.data.size).astype(np.float32)

    def head(self, features: int | Sequence[models.FeatureShape]) -> nn.Module:
        """Heatmaps and a soft-argmax on feature maps; a linear regressor on a pooled width."""
        if isinstance(features, int):
            return models.CoordinateRegressor(features, self.keypoints)
        return models.HeatmapKeypoints(features, self.keypoints, heatmap_stride=self.heatmap_stride)

    def build_model(self, backbone: str, options: Mapping[str, Any] | None = None) -> nn.Module:
        """``Model(encoder, heatmap head)`` built from the backbone's feature shapes."""
        encoder = models.build_encoder(backbone, self.input_channels(), **dict(options or {}))
        return models.Model(encoder, self.head(encoder.feature_shapes(self.side)))

    def loss(self) -> nn.Module:
        return VisibleL1Loss()

    def metrics(self) -> tuple[VisibleKeypointError, ...]:
        return (VisibleKeypointError(self.data.size / 2.0),)

    def show_batch(self, n: int = 16, *, split: str = "train") -> Grid:
        """Images with their points drawn (green crosses), captioned with the coordinates."""
        images, points = self._first(n, split)
        captions = [" ".join(f"({x:.0f},{y:.0f})" for x, y in p) for p in points]
        return Grid(draw_points(images, points, (0, 255, 0)), captions)

    def show_results(self, predict: Callable[[torch.Tensor], torch.Tensor], n: int = 16, *,
                     split: str = "valid") -> Grid:
        """True points in green, predicted in red, captioned with the mean error in pixels."""
        images, points = self._first(n, split)
        preds = self.decode(predict(self.encode_inputs(images)))
        errors = np.linalg.norm(preds - points, axis=-1).mean(axis=1)
        drawn = draw_points(draw_points(images, points, (0, 255, 0)), preds, (255, 0, 0))
        return Grid(drawn, [f"err {e:.1f} px" for e in errors])
