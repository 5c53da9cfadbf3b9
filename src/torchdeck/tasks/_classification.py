"""Single-label image classification."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchdeck.data import ImageDataset, TensorLoader
from torchdeck.tasks._base import Grid, Task, register_task

__all__ = ["ImageClassification"]


@register_task("image-classification")
class ImageClassification(Task):
    """Image -> one class. Inputs are scaled to [0, 1], resized to ``size`` (if given) and
    normalised with the training split's per-channel mean and std.

    Args:
        data: an :class:`~torchdeck.data.ImageDataset`.
        size: side of the square input the model sees; ``None`` keeps the data's size.
    """

    blocks = ("image", "label")

    def __init__(self, data: ImageDataset, size: int | None = None, augment: Any = None) -> None:
        if not isinstance(data, ImageDataset):
            raise ValueError(f"image-classification: data must be an ImageDataset, got {type(data).__name__}")
        if size is not None and (not isinstance(size, int) or size < 2):
            raise ValueError(f"image-classification: size must be an integer >= 2 or null, got {size!r}")
        if augment is not None:
            raise ValueError("image-classification: augment is not supported yet; leave it null")
        self.data = data
        self.size = size
        train_x, _ = data.split("train")
        pixels = train_x.reshape(-1, train_x.shape[-1]).astype(np.float64) / 255.0
        self.mean = torch.tensor(pixels.mean(axis=0), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(pixels.std(axis=0) + 1e-6, dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    def input_channels(self) -> int:
        return int(self.data.images.shape[-1])

    def encode_inputs(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, C) uint8 -> (N, C, size, size) float32."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        if self.size is not None and x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def encode_targets(self, labels: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(labels, dtype=torch.int64)

    def decode(self, outputs: torch.Tensor) -> list[str]:
        """Logits (N, classes) -> class names."""
        return [self.classes[i] for i in outputs.argmax(dim=1).tolist()]

    def loaders(self, batch_size: int = 64, *, seed: int = 0) -> dict[str, TensorLoader]:
        out = {}
        for split in ("train", "valid"):
            images, labels = self.data.split(split)
            out[split] = TensorLoader(self.encode_inputs(images), self.encode_targets(labels), batch_size,
                                      shuffle=split == "train", seed=seed)
        return out

    def head(self, in_features: int) -> nn.Module:
        return nn.Linear(in_features, len(self.classes))

    def loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def metrics(self) -> tuple[str, ...]:
        return ("accuracy",)

    def show_batch(self, n: int = 16, *, split: str = "train") -> Grid:
        images, labels = self.data.split(split)
        n = min(n, len(images))
        return Grid(images[:n], [self.classes[int(i)] for i in labels[:n]])

    def show_results(self, predict: Any, n: int = 16, *, split: str = "valid") -> Grid:
        """Valid images captioned ``pred`` (correct) or ``pred≠true`` (wrong)."""
        images, labels = self.data.split(split)
        n = min(n, len(images))
        preds = self.decode(predict(self.encode_inputs(images[:n])))
        truth = [self.classes[int(i)] for i in labels[:n]]
        return Grid(images[:n], [p if p == t else f"{p}≠{t}" for p, t in zip(preds, truth)])
