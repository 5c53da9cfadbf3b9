"""Single-label image classification, with optional training augmentation."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchdeck import augment as A
from torchdeck.data import ImageDataset, TensorLoader
from torchdeck.tasks._augmented import AugmentedBatches
from torchdeck.tasks._base import Grid, Task, register_task
from torchdeck.tasks._vision import FILE_IMAGE_SIZE, is_csv

__all__ = ["ImageClassification", "AugmentedLoader"]


class AugmentedLoader(AugmentedBatches):
    """Training batches augmented afresh each pass: ``(encode(augment(images[idx])), y[idx])``.

    Randomness comes only from ``generator`` (seeded by ``seed``): each pass draws the order and
    then one epoch seed; sample ``i`` (its index in the data set, not its place in the batch)
    is augmented with seed ``epoch_seed + i``. So a run replays exactly from ``seed``, a sample
    looks different every epoch, and a checkpoint that saves ``generator`` resumes the same
    augmentations. The same interface as :class:`~torchdeck.data.TensorLoader`; the pass is
    :class:`~torchdeck.tasks._augmented.AugmentedBatches`'s, so a data-parallel rank augments
    only its share of each batch.

    Args:
        images: (N, H, W, C) uint8, the un-augmented training images.
        y: (N,) encoded targets.
        augment: the pipeline; it must return uint8 images (the task normalises afterwards).
        encode: (N, H', W', C) uint8 -> model inputs.
    """

    images: np.ndarray
    y: torch.Tensor
    augment: A.Transform
    encode: Any

    def __init__(self, images: np.ndarray, y: torch.Tensor, augment: A.Transform,
                 encode: Any, batch_size: int = 64, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        if len(images) != len(y):
            raise ValueError(f"AugmentedLoader: images has {len(images)} samples, y has {len(y)}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"AugmentedLoader: batch_size must be a positive integer, got {batch_size!r}")
        self.images, self.y = images, y
        self.augment, self.encode = augment, encode
        super().__init__(len(images), self._augmented_batch, batch_size, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)

    def _augmented_batch(self, indices: Sequence[int], seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        images = [augment_image(self.augment, self.images[i], s) for i, s in zip(indices, seeds)]
        if len({im.shape for im in images}) > 1:
            raise ValueError("image-classification: augment gives images of different sizes "
                             f"({sorted({im.shape[:2] for im in images})}); end it with resize or a fixed-size crop")
        return self.encode(np.stack(images)), self.y[torch.as_tensor(indices, dtype=torch.int64)]


def augment_image(augment: A.Transform, image: np.ndarray, seed: int) -> np.ndarray:
    """One H×W×C uint8 image through ``augment``; the result must still be H'×W'×C uint8."""
    out = augment(image, seed=seed)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != image.shape[2]:
        got = f"{type(out).__name__} {getattr(out, 'dtype', '')} {tuple(getattr(out, 'shape', ()))}".strip()
        raise ValueError(f"augment must give uint8 images like its input (the task scales and "
                         f"normalises them itself: leave normalize out), got {got}")
    return out


@register_task("image-classification")
class ImageClassification(Task):
    """Image -> one class. Inputs are scaled to [0, 1], resized to ``size`` (if given) and
    normalised with the training split's per-channel mean and std.

    Args:
        data: an :class:`~torchdeck.data.ImageDataset`.
        size: side of the square input the model sees; ``None`` keeps the data's size.
        augment: a transform (``A.Pipeline(A.FlipX(), A.Rotate(10))``), its spec, or ``None``;
            applied to training samples only, each pass anew (see :class:`AugmentedLoader`).
            Its output is resized to ``size`` (or the data's size) before normalising.
    """

    blocks = ("image", "label")
    builtin_data = {"digits": ("digits", {})}

    @classmethod
    def data_from_path(cls, path: str) -> tuple[str, dict[str, Any]]:
        """A folder per class (``image_folder``) or a CSV of image paths and labels (``image_csv``)."""
        if os.path.isdir(path):
            return "image_folder", {"root": path, "size": FILE_IMAGE_SIZE}
        if is_csv(path):
            return "image_csv", {"path": path, "size": FILE_IMAGE_SIZE}
        raise ValueError(f"{cls.name}: {path!r} is neither a folder (one folder per class) nor a .csv file (columns "
                         "image, label)")

    def __init__(self, data: ImageDataset, size: int | None = None, augment: Any = None) -> None:
        if not isinstance(data, ImageDataset):
            raise ValueError(f"image-classification: data must be an ImageDataset, got {type(data).__name__}")
        if data.multilabel:
            raise ValueError(f"image-classification: {data.name!r} has a set of labels per image (multi-hot); use "
                             "multilabel-classification")
        if size is not None and (not isinstance(size, int) or size < 2):
            raise ValueError(f"image-classification: size must be an integer >= 2 or null, got {size!r}")
        self.data = data
        self.size = size
        train_x, _ = data.split("train")
        self.augment = None if augment is None else A.transform_from_spec(augment, where="augment")
        if self.augment is not None and len(train_x):
            try:  # refuse a pipeline that cannot run on this data now, not mid-epoch
                augment_image(self.augment, train_x[0], 0)
            except ValueError as e:
                raise ValueError(f"image-classification: augment fails on a training image: {e}") from None
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
        return self._encode(images, self.size)

    def _encode(self, images: np.ndarray, size: int | tuple[int, int] | None) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        if size is not None:
            hw = (size, size) if isinstance(size, int) else size
            if x.shape[-2:] != hw:
                x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def _encode_augmented(self, images: np.ndarray) -> torch.Tensor:
        # An augmentation may crop or rescale: the model still sees the size valid inputs have.
        return self._encode(images, self.size if self.size is not None else tuple(self.data.images.shape[1:3]))

    def encode_targets(self, labels: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(labels, dtype=torch.int64)

    def decode(self, outputs: torch.Tensor) -> list[str]:
        """Logits (N, classes) -> class names."""
        return [self.classes[i] for i in outputs.argmax(dim=1).tolist()]

    def loaders(self, batch_size: int = 64, *, seed: int = 0) -> dict[str, TensorLoader | AugmentedLoader]:
        out: dict[str, TensorLoader | AugmentedLoader] = {}
        for split in ("train", "valid"):
            images, labels = self.data.split(split)
            if split == "train" and self.augment is not None:
                out[split] = AugmentedLoader(images, self.encode_targets(labels), self.augment, self._encode_augmented,
                                             batch_size, shuffle=True, seed=seed)
                continue
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
