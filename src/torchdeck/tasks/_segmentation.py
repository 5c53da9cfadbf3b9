"""Semantic segmentation: a class for every pixel."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchdeck import models
from torchdeck.data import ImageMaskFiles, ShapesDataset
from torchdeck.tasks._augmented import checked_image
from torchdeck.tasks._base import Grid, register_task
from torchdeck.tasks._vision import FILE_IMAGE_SIZE, ShapesTask, overlay_masks
from torchdeck.train._metrics import ConfusionMetric

__all__ = ["Segmentation", "CLASS_WEIGHTS", "WeightedCrossEntropy", "IGNORE_INDEX", "IgnoringConfusion"]

# Target of pixels with no ground truth (what an augmentation's border brings in when its
# mask_fill is no class): the default ignore_index of torch's cross-entropy, so the loss skips
# them without being told.
IGNORE_INDEX = -100


def _resize_masks(masks: torch.Tensor, side: int) -> torch.Tensor:
    """(N, H, W) class indices -> (N, side, side), each output pixel taking the class under
    its centre ("nearest-exact": plain "nearest" is shifted by half an input pixel)."""
    if masks.shape[-2:] == (side, side):
        return masks
    return F.interpolate(masks[:, None].float(), size=(side, side), mode="nearest-exact")[:, 0].to(masks.dtype)


# name -> fn(pixel frequency per class, all > 0) -> class weights for the cross-entropy
CLASS_WEIGHTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    # mild: a class 100x rarer weighs 10x more; background stays well predicted
    "inverse_sqrt": lambda freq: freq.rsqrt(),
    # Eigen & Fergus (2015): median frequency / frequency; strong, tends to over-predict rare classes
    "median_frequency": lambda freq: freq.median() / freq,
}


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy per pixel with a fixed weight per class (on the logits' device).

    pred: (N, C, H, W) logits; target: (N, H, W) class indices. The mean is over pixels
    weighted by their class's weight, as ``F.cross_entropy(weight=...)``.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.float())

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, target, weight=self.weight.to(pred.device))


class IgnoringConfusion(ConfusionMetric):
    """:class:`~torchdeck.train._metrics.ConfusionMetric` (mIoU, Dice) that leaves out pixels
    whose target is :data:`IGNORE_INDEX`. pred: (N, C, H, W) logits, C >= 2; target: (N, H, W)."""

    def statistics(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = pred.shape[1]
        if pred.ndim != 4 or target.shape != pred.shape[:1] + pred.shape[2:]:
            raise ValueError(f"{self.__name__}: pred must be (N, C, H, W) logits and target (N, H, W), got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        target = target.long()
        keep = target != IGNORE_INDEX
        if target.device.type == "cpu" and bool((keep & ((target < 0) | (target >= n))).any()):
            raise ValueError(f"{self.__name__}: targets must be class indices in [0, {n}) or {IGNORE_INDEX} "
                             f"(ignored), got values from {int(target.min())} to {int(target.max())}")
        # Ignored pixels are added with weight 0 (not selected away): no host sync on a GPU.
        index = (torch.where(keep, target, 0) * n + pred.argmax(dim=1)).reshape(-1)
        counts = torch.zeros(n * n, dtype=torch.int64, device=target.device)
        return counts.scatter_add_(0, index, keep.reshape(-1).long()).reshape(n, n)


def _image_miou(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean IoU over the classes present in either mask (what a caption can show at a glance)."""
    classes = np.union1d(np.unique(pred), np.unique(true))
    return float(np.mean([np.sum((pred == c) & (true == c)) / np.sum((pred == c) | (true == c)) for c in classes]))


@register_task("segmentation")
class Segmentation(ShapesTask):
    """Image -> a class per pixel (``mask_classes``, background first).

    The model is a backbone's feature maps (:func:`~torchdeck.models.build_encoder`) and a
    U-Net decoder built from their shapes (:class:`~torchdeck.models.UNetDecoder`); loss:
    cross-entropy per pixel; metrics: mIoU and Dice (macro over the classes present,
    pixels of the whole epoch counted together). Masks are resized to ``size`` by taking the
    class under each output pixel's centre: for exact targets, load the data at the size
    the model sees.

    Args:
        data: a :class:`~torchdeck.data.ShapesDataset` (its ``masks``) or images with masks
            from files (:func:`~torchdeck.data.image_mask_folder`; square, or give ``size``).
        size: side of the square input and output; ``None`` keeps the data's size.
        class_weights: weights of the classes in the loss: null (plain cross-entropy),
            ``"inverse_sqrt"`` (1 / sqrt of each class's share of the training pixels: small
            shapes are learnt as early as large ones), ``"median_frequency"``, or one number
            per class. Weights from a name are scaled to average 1.
        augment: a transform, its spec, or ``None``: applied to training samples only, each
            pass anew, image and mask moved together by one warp (the mask by nearest
            neighbour). What the warp brings in from beyond the image border gets the
            pipeline's ``mask_fill``: a class index (the default 0: background) labels it that
            class; any other value (``A.Pipeline(..., mask_fill=255)``) marks it unknown, left
            out of the loss (:data:`IGNORE_INDEX`) and of the metrics. The output is resized
            to ``size`` (masks by the class under each pixel's centre).
    """

    blocks = ("image", "mask")
    target_field = "masks"
    accepts = (ShapesDataset, ImageMaskFiles)
    builtin_data = {"shapes": ("shapes", {})}

    @classmethod
    def data_from_path(cls, path: str) -> tuple[str, dict[str, Any]]:
        """A folder holding ``images/`` and ``masks/`` paired by file name (``image_mask_folder``)."""
        images, masks = os.path.join(path, "images"), os.path.join(path, "masks")
        if not (os.path.isdir(images) and os.path.isdir(masks)):
            raise ValueError(f"{cls.name}: {path!r} must be a folder holding images/ and masks/ (a mask per image, "
                             "same file name)")
        return "image_mask_folder", {"images_dir": images, "masks_dir": masks, "size": FILE_IMAGE_SIZE}
    accepts_text = "a ShapesDataset (data.load('shapes')) or images with masks (data.image_mask_folder(...))"

    def __init__(self, data: ShapesDataset | ImageMaskFiles, size: int | None = None,
                 class_weights: str | Sequence[float] | None = None, augment: Any = None) -> None:
        if isinstance(data, ImageMaskFiles) and size is None and data.images.shape[1] != data.images.shape[2]:
            raise ValueError(f"{self.name}: {data.name!r} images are {data.images.shape[1]}x{data.images.shape[2]}; "
                             "give size (the square side the model sees) or read them with size=")
        super().__init__(data, size, augment)
        self.class_weights = self._weights(class_weights)
        self._check_mask_fill()
        self._check_augment()

    def _check_mask_fill(self) -> None:
        # The engine meets an unfit mask_fill only on a warp that fills (not on a flip): say it now.
        if self.augment is None:
            return
        fill, dtype = self.augment.options.mask_fill, self.data.masks.dtype
        info = np.iinfo(dtype) if dtype.kind in "iu" else None
        if info is not None and not info.min <= fill <= info.max:
            n = len(self.classes)
            raise ValueError(f"{self.name}: augment's mask_fill {fill} does not fit the masks' dtype {dtype} "
                             f"({info.min}..{info.max}); use a class index (0..{n - 1}) to label the border that "
                             f"class, or another value that fits (e.g. {info.max}) to leave it out of the loss")

    def augment_sample(self, source: tuple[np.ndarray, np.ndarray], i: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask through one warp."""
        images, masks = source
        out = self.augment(image=images[i], mask=masks[i], seed=seed)
        return checked_image(out["image"], images.shape[-1]), out["mask"]

    def encode_augmented(self, images: np.ndarray, targets: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``encode_inputs`` / ``encode_targets``, with border pixels filled by a
        ``mask_fill`` that is no class turned into :data:`IGNORE_INDEX`."""
        masks = torch.from_numpy(np.stack(targets).astype(np.int64))
        fill = self.augment.options.mask_fill
        if not 0 <= fill < len(self.classes):
            masks[masks == fill] = IGNORE_INDEX
        return self.encode_inputs(images), _resize_masks(masks, self.side)

    def _weights(self, spec: str | Sequence[float] | None) -> torch.Tensor | None:
        n = len(self.classes)
        if spec is None:
            return None
        if isinstance(spec, str):
            if spec not in CLASS_WEIGHTS:
                raise ValueError(f"{self.name}: class_weights must be null, one of {', '.join(CLASS_WEIGHTS)} or "
                                 f"{n} non-negative numbers, got {spec!r}")
            _, masks = self.samples("train")
            counts = torch.bincount(self.encode_targets(masks).flatten(), minlength=n).double()
            present = counts > 0
            weights = torch.zeros(n, dtype=torch.float64)
            weights[present] = CLASS_WEIGHTS[spec](counts[present] / counts.sum())
            # a class absent from the training masks gets the largest weight, should it appear
            weights[~present] = weights[present].max()
            return (weights / weights[present].mean()).float()
        values = list(spec) if isinstance(spec, (list, tuple)) else None
        if values is None or len(values) != n or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values) or not any(values):
            raise ValueError(f"{self.name}: class_weights must be null, one of {', '.join(CLASS_WEIGHTS)} or {n} "
                             f"non-negative numbers (one per class: {', '.join(self.classes)}), not all 0; "
                             f"got {spec!r}")
        return torch.tensor(values, dtype=torch.float32)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.mask_classes

    def encode_targets(self, masks: np.ndarray) -> torch.Tensor:
        """(N, H, W) uint8 class indices -> (N, size, size) int64."""
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"{self.name}: masks must be (N, H, W) class indices, got shape {masks.shape}")
        if masks.size and int(masks.max()) >= len(self.classes):
            raise ValueError(f"{self.name}: masks hold class {int(masks.max())}; allowed: 0 to {len(self.classes) - 1} "
                             f"({', '.join(self.classes)})")
        return _resize_masks(torch.from_numpy(np.ascontiguousarray(masks)).long(), self.side)

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        """Logits (N, classes, H, W) -> (N, H, W) uint8 class indices."""
        return outputs.argmax(dim=1).to(torch.uint8).cpu().numpy()

    def head(self, features: int | Sequence[models.FeatureShape]) -> nn.Module:
        """A :class:`~torchdeck.models.UNetDecoder` for an encoder's feature shapes; given a
        pooled width instead (``tasks.check`` feeds vectors), one from a 1x1 map, upsampled."""
        if isinstance(features, int):
            return models.UNetDecoder(models.vector_shapes(features, self.side), len(self.classes),
                                      out_size=self.side)
        return models.UNetDecoder(features, len(self.classes))

    def build_model(self, backbone: str, options: Mapping[str, Any] | None = None) -> nn.Module:
        """``Model(encoder, U-Net decoder)``: the backbone's feature maps, the decoder built
        from their shapes at this task's input size."""
        encoder = models.build_encoder(backbone, self.input_channels(), **dict(options or {}))
        return models.Model(encoder, self.head(encoder.feature_shapes(self.side)))

    def loss(self) -> nn.Module:
        """Cross-entropy per pixel, weighted per class if ``class_weights`` was given."""
        return nn.CrossEntropyLoss() if self.class_weights is None else WeightedCrossEntropy(self.class_weights)

    def metrics(self) -> tuple[IgnoringConfusion, ...]:
        """mIoU and Dice (the registry's ``miou`` and ``dice``), skipping ignored pixels."""
        return (IgnoringConfusion("iou", "miou"), IgnoringConfusion("f1", "dice"))

    def _overlay(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        masks = _resize_masks(torch.from_numpy(np.ascontiguousarray(masks)).long(), images.shape[1]).numpy()
        return overlay_masks(images, masks, len(self.classes))

    def show_batch(self, n: int = 16, *, split: str = "train") -> Grid:
        """Images with their masks tinted (one colour per class), captioned with the classes present."""
        images, masks = self._first(n, split)
        captions = ["+".join(self.classes[c] for c in np.unique(m) if c) or "(background)" for m in masks]
        return Grid(self._overlay(images, masks), captions)

    def show_results(self, predict: Callable[[torch.Tensor], torch.Tensor], n: int = 16, *,
                     split: str = "valid") -> Grid:
        """Images with the predicted masks tinted, captioned with each image's mIoU."""
        images, masks = self._first(n, split)
        preds = self.decode(predict(self.encode_inputs(images)))
        truth = self.encode_targets(masks).numpy()
        return Grid(self._overlay(images, preds), [f"mIoU {_image_miou(p, t):.2f}" for p, t in zip(preds, truth)])
