"""Keypoint regression: a fixed number ``K`` of (x, y) points per image.

The points must be well defined for every image, in a fixed order, or the regression has
no single answer. On ``shapes`` that means one shape per image (``max_shapes=1``) and a
named set of points of it (:data:`KEYPOINT_SETS`): ``"centre"`` (K = 1, the analytic
centre) or ``"box"`` (K = 2, the top-left and bottom-right corners of the box of its
visible pixels). A shape's own corners are not offered: a square turned by 90 degrees is
the same square with its corners renumbered, so "corner 1" has no single answer.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from torchdeck import models
from torchdeck._registry import Registry
from torchdeck.data import ShapesDataset
from torchdeck.tasks._base import Grid, register_task
from torchdeck.tasks._vision import ShapesTask, draw_points
from torchdeck.tasks._vision_metrics import KeypointError

__all__ = ["KeypointRegression", "KEYPOINT_SETS"]

# name -> fn(data, indices) -> (n, K, 2) float32 pixel coordinates (x, y) of the one shape per image
KEYPOINT_SETS = Registry("keypoint set")


@KEYPOINT_SETS.register("centre")
def _centre(data: ShapesDataset, idx: np.ndarray) -> np.ndarray:
    return data.centres[idx, :1].astype(np.float32)


@KEYPOINT_SETS.register("box")
def _box(data: ShapesDataset, idx: np.ndarray) -> np.ndarray:
    return data.boxes[idx, 0].reshape(-1, 2, 2).astype(np.float32)


@register_task("keypoint-regression")
class KeypointRegression(ShapesTask):
    """Image -> ``K`` points (x, y) in pixels of the data's images.

    Targets are encoded as coordinates normalised to [-1, 1] across the image (so they do not
    depend on ``size``). On feature maps the head is a heatmap per point read by a
    soft-argmax (:class:`~torchdeck.models.HeatmapKeypoints`); on a pooled vector, a linear
    regressor. Loss: L1 on the normalised coordinates; metric: mean distance in pixels of the
    data's images (``keypoint_error_px``).

    Args:
        data: a :class:`~torchdeck.data.ShapesDataset` with exactly one shape per image
            (``data.load("shapes", max_shapes=1)``).
        size: side of the square input the model sees; ``None`` keeps the data's size.
        points: a name in :data:`KEYPOINT_SETS`: ``"centre"`` or ``"box"``.
        heatmap_stride: resolution of the heatmaps relative to the input (1, 2, 4, ...).
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
        return nn.L1Loss()

    def metrics(self) -> tuple[KeypointError, ...]:
        return (KeypointError(self.data.size / 2.0),)

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
