"""Multi-label image classification: which of the classes appear in an image."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from torchdeck import models
from torchdeck.data import ImageDataset, ShapesDataset
from torchdeck.tasks._augmented import checked_image
from torchdeck.tasks._base import Grid, register_task
from torchdeck.tasks._vision import FILE_IMAGE_SIZE, ShapesTask, is_csv
from torchdeck.tasks._vision_metrics import MultilabelF1

__all__ = ["MultilabelClassification"]


@register_task("multilabel-classification")
class MultilabelClassification(ShapesTask):
    """Image -> the set of classes present (any number, none included).

    One logit per class; binary cross-entropy with logits; a class is predicted where its
    sigmoid exceeds ``threshold``; metric: macro F1 over classes at that threshold.
    On ``shapes`` the classes are circle, square and triangle, present when visible.
    From files: ``data.image_csv(path, label_delimiter=" ")`` (labels like ``"cat dog"``).

    Args:
        data: a :class:`~torchdeck.data.ShapesDataset`, or an
            :class:`~torchdeck.data.ImageDataset` with multi-hot labels (square images, or
            give ``size``).
        size: side of the square input the model sees; ``None`` keeps the data's size.
        threshold: probability above which a class counts as predicted.
        augment: a transform, its spec, or ``None``: applied to training images only, each
            pass anew; the labels are kept as they are (so leave out crops that can cut a
            shape out of the picture). Its output is resized to ``size``.
    """

    blocks = ("image", "labels")
    target_field = "labels"
    accepts = (ShapesDataset, ImageDataset)
    builtin_data = {"shapes": ("shapes", {})}

    @classmethod
    def data_from_path(cls, path: str) -> tuple[str, dict[str, Any]]:
        """A CSV of image paths and space-separated labels (``image_csv`` with ``label_delimiter=" "``)."""
        if not is_csv(path):
            raise ValueError(f"{cls.name}: {path!r} is not a .csv file; multi-label images are read from a CSV with "
                             "columns image and label, the label listing classes separated by spaces ('cat dog')")
        return "image_csv", {"path": path, "label_delimiter": " ", "size": FILE_IMAGE_SIZE}
    accepts_text = ("a ShapesDataset (data.load('shapes')) or multi-label images (data.image_csv(..., "
                    "label_delimiter=' '))")

    def __init__(self, data: ShapesDataset | ImageDataset, size: int | None = None, threshold: float = 0.5,
                 augment: Any = None) -> None:
        if isinstance(data, ImageDataset) and not data.multilabel:
            raise ValueError(f"{self.name}: {data.name!r} has one label per image; use image-classification, or "
                             "read a CSV with label_delimiter=' ' for sets of labels")
        if isinstance(data, ImageDataset) and size is None and data.images.shape[1] != data.images.shape[2]:
            raise ValueError(f"{self.name}: {data.name!r} images are {data.images.shape[1]}x{data.images.shape[2]}; "
                             "give size (the square side the model sees) or read them with size=")
        super().__init__(data, size, augment)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise ValueError(f"{self.name}: threshold must be a probability in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)
        self._check_augment()

    def augment_sample(self, source: tuple[np.ndarray, np.ndarray], i: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The image moves; which classes it shows is taken to stay the same."""
        images, labels = source
        return checked_image(self.augment(images[i], seed=seed), images.shape[-1]), labels[i]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    def encode_targets(self, labels: np.ndarray) -> torch.Tensor:
        """(N, classes) multi-hot -> float32 of the same shape (what BCE-with-logits reads)."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[1] != len(self.classes):
            raise ValueError(f"{self.name}: targets must be (N, {len(self.classes)}) multi-hot, got {labels.shape}")
        return torch.as_tensor(labels, dtype=torch.float32)

    def decode(self, outputs: torch.Tensor) -> list[tuple[str, ...]]:
        """Logits (N, classes) -> per sample, the names of the predicted classes."""
        on = (outputs > math.log(self.threshold / (1.0 - self.threshold))).tolist()
        return [tuple(c for c, yes in zip(self.classes, row) if yes) for row in on]

    def head(self, in_features: int) -> nn.Module:
        return models.linear_head(in_features, len(self.classes))

    def loss(self) -> nn.Module:
        return nn.BCEWithLogitsLoss()

    def metrics(self) -> tuple[MultilabelF1, ...]:
        return (MultilabelF1(self.threshold, "multilabel_f1"),)

    def _text(self, names: tuple[str, ...]) -> str:
        return "+".join(names) if names else "(none)"

    def show_batch(self, n: int = 16, *, split: str = "train") -> Grid:
        """Images captioned with the classes present, ``circle+square``, or ``(none)``."""
        images, labels = self._first(n, split)
        return Grid(images, [self._text(tuple(c for c, y in zip(self.classes, row) if y)) for row in labels])

    def show_results(self, predict: Callable[[torch.Tensor], torch.Tensor], n: int = 16, *,
                     split: str = "valid") -> Grid:
        """Images captioned with the predicted classes, ``pred≠true`` where the sets differ."""
        images, labels = self._first(n, split)
        preds = self.decode(predict(self.encode_inputs(images)))
        truth = [tuple(c for c, y in zip(self.classes, row) if y) for row in labels]
        return Grid(images, [self._text(p) if p == t else f"{self._text(p)}≠{self._text(t)}"
                             for p, t in zip(preds, truth)])
