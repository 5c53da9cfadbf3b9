"""What the vision tasks on the ``shapes`` data share: the data check, the input encoding,
and drawing targets onto images for ``show_batch`` / ``show_results``."""

from __future__ import annotations

import colorsys
import functools
import os
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from torchdeck import augment as A
from torchdeck.data import ShapesDataset, TensorLoader
from torchdeck.tasks._augmented import AugmentedBatches, same_size
from torchdeck.tasks._base import Task

__all__ = ["ShapesTask", "palette", "overlay_masks", "draw_points", "FILE_IMAGE_SIZE", "is_csv"]

# Photos in a folder rarely share one size; read through a picker they are squished to this side.
FILE_IMAGE_SIZE = 64


def is_csv(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(".csv")


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB, hues spread evenly, fully saturated: one colour per class."""
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(k / max(n, 1), 1.0, 1.0)] for k in range(n)],
                    np.uint8)


def overlay_masks(images: np.ndarray, masks: np.ndarray, n_classes: int, *, alpha: float = 0.55) -> np.ndarray:
    """Images (N, H, W, 3) uint8 with class ``k >= 1`` of ``masks`` (N, H, W) tinted in
    ``palette(n_classes - 1)[k - 1]``; background (0) left as is."""
    colours = np.concatenate([np.zeros((1, 3), np.uint8), palette(n_classes - 1)])
    tint = colours[masks].astype(np.float32)
    out = images.astype(np.float32)
    fg = (masks > 0)[..., None]
    out = np.where(fg, (1 - alpha) * out + alpha * tint, out)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def draw_points(images: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], *, arm: int = 2) -> np.ndarray:
    """Images (N, H, W, 3) uint8 with a cross of ``arm`` pixels at each point (N, K, 2) (x, y
    in pixel coordinates: pixel (i, j) covers [j, j + 1) x [i, i + 1)); a copy."""
    out = images.copy()
    h, w = images.shape[1:3]
    for n, pts in enumerate(points):
        for x, y in pts:
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            j, i = int(np.floor(x)), int(np.floor(y))
            for d in range(-arm, arm + 1):
                if 0 <= i < h and 0 <= j + d < w:
                    out[n, i, j + d] = colour
                if 0 <= i + d < h and 0 <= j < w:
                    out[n, i + d, j] = colour
    return out


class ShapesTask(Task):
    """Base of the tasks that read images and one target field of a
    :class:`~torchdeck.data.ShapesDataset`.

    Inputs are scaled to [0, 1], resized to ``size`` (bilinear, antialiased when shrinking)
    and normalised with the training split's per-channel mean and std.

    ``augment`` (a transform, its spec, or ``None``) is applied to training samples only, each
    pass anew (seeding as :class:`~torchdeck.tasks._augmented.AugmentedBatches`); validation
    is never augmented. A subclass says how a sample is augmented (``augment_sample``: its
    target moves with the image, or not) and how an augmented batch is encoded
    (``encode_augmented``), and calls ``_check_augment()`` at the end of its ``__init__``.
    """

    target_field: ClassVar[str] = "labels"
    min_size: ClassVar[int] = 8
    # The data types a task takes; a subclass may widen it (multi-label also reads a CSV).
    accepts: ClassVar[tuple[type, ...]] = (ShapesDataset,)
    accepts_text: ClassVar[str] = "a ShapesDataset (data.load('shapes', ...))"

    def __init__(self, data: Any, size: int | None = None, augment: Any = None) -> None:
        if not isinstance(data, self.accepts):
            raise ValueError(f"{self.name}: data must be {self.accepts_text}, got {type(data).__name__}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < self.min_size):
            raise ValueError(f"{self.name}: size must be an integer >= {self.min_size} or null, got {size!r}")
        self.augment = None if augment is None else A.transform_from_spec(augment, where="augment")
        self.data = data
        self.size = size
        train_x, _ = data.split("train")
        pixels = train_x.reshape(-1, train_x.shape[-1]).astype(np.float64) / 255.0
        self.mean = torch.tensor(pixels.mean(axis=0), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(pixels.std(axis=0) + 1e-6, dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def side(self) -> int:
        """Side of the square input the model sees."""
        return self.size if self.size is not None else int(self.data.images.shape[1])

    def input_channels(self) -> int:
        return int(self.data.images.shape[-1])

    def samples(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.data, ShapesDataset):
            return self.data.split(split, self.target_field)
        return self.data.split(split)

    def encode_inputs(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, C) uint8 -> (N, C, size, size) float32."""
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images must be (N, H, W, C) uint8, got {images.shape} {images.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (self.side, self.side):
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    # --- training augmentation -------------------------------------------------------------
    def augment_source(self) -> tuple[Any, ...]:
        """What ``augment_sample`` reads, indexed by training sample: by default the raw
        ``(images, targets)`` of the training split."""
        return self.samples("train")

    def augment_sample(self, source: tuple[Any, ...], i: int, seed: int) -> tuple[np.ndarray, Any]:
        """Training sample ``i`` of ``source`` augmented with ``seed``: ``(H'×W'×C uint8 image,
        raw target)`` (the target in whatever form ``encode_augmented`` reads)."""
        raise NotImplementedError(f"{type(self).__name__} does not define augment_sample")

    def encode_augmented(self, images: np.ndarray, targets: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H', W', C) uint8 augmented images and their targets -> ``(inputs, targets)``;
        by default ``encode_inputs`` (which resizes to ``side``) and ``encode_targets``."""
        return self.encode_inputs(images), self.encode_targets(np.stack(targets))

    def _check_augment(self) -> None:
        """Refuse a pipeline that cannot run on this data now, not mid-epoch."""
        if self.augment is None:
            return
        source = self.augment_source()
        if len(source[0]):
            try:
                self.augment_sample(source, 0, 0)
            except ValueError as e:
                raise ValueError(f"{self.name}: augment fails on a training sample: {e}") from None

    def _augmented_batch(self, source: tuple[Any, ...], indices: list[int],
                         seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        samples = [self.augment_sample(source, i, s) for i, s in zip(indices, seeds)]
        images = same_size(self.name, [im for im, _ in samples])
        return self.encode_augmented(images, [t for _, t in samples])

    def loaders(self, batch_size: int = 64, *, seed: int = 0) -> dict[str, Any]:
        """Encoded splits; with ``augment``, training batches are augmented afresh each pass."""
        out: dict[str, Any] = {}
        for split in ("train", "valid"):
            if split == "train" and self.augment is not None:
                source = self.augment_source()
                out[split] = AugmentedBatches(len(source[0]), functools.partial(self._augmented_batch, source),
                                              batch_size, shuffle=True, seed=seed)
                continue
            inputs, targets = self.samples(split)
            out[split] = TensorLoader(self.encode_inputs(inputs), self.encode_targets(targets), batch_size,
                                      shuffle=split == "train", seed=seed)
        return out

    def _first(self, n: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        images, targets = self.samples(split)
        n = min(n, len(images))
        return images[:n], targets[:n]
