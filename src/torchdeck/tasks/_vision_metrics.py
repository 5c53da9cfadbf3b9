"""Metrics of the vision tasks that the shared metric registry lacks: multi-label macro F1 and
the mean keypoint error in pixels. (Segmentation uses the registry's ``miou`` and ``dice``.)

``multilabel_f1`` is registered by name; the keypoint error depends on the image size, so a
task builds it (``KeypointError(pixels_per_unit)``) and lists the instance in its metrics.
"""

from __future__ import annotations

import math

import torch

from torchdeck.train import register_metric
from torchdeck.train._metrics import SummedMetric

__all__ = ["MultilabelF1", "multilabel_f1", "KeypointError"]


class MultilabelF1(SummedMetric):
    """Macro F1 over labels of multi-label logits: label ``l`` is predicted where its
    probability ``sigmoid(pred[:, l])`` exceeds ``threshold``.

    pred: (N, L) logits; target: (N, L) of 0/1. Statistics: (L, 3) counts of true positives,
    false positives and false negatives per label, summed over an epoch. A label neither
    present nor predicted has no F1 and is left out of the mean (scikit-learn's
    ``f1_score(average="macro", zero_division=nan)``); NaN when no label has one.
    """

    def __init__(self, threshold: float = 0.5, name: str = "multilabel_f1") -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise ValueError(f"MultilabelF1: threshold must be a probability in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)
        self.logit_threshold = math.log(threshold / (1.0 - threshold))  # sigmoid(z) > t  <=>  z > logit(t)
        self.__name__ = name

    def statistics(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.ndim != 2 or pred.shape != target.shape:
            raise ValueError(f"{self.__name__}: pred must be (N, labels) logits and target the same shape of 0/1, "
                             f"got {tuple(pred.shape)} and {tuple(target.shape)}")
        predicted = pred > self.logit_threshold
        truth = target > 0.5
        tp = (predicted & truth).sum(dim=0)
        fp = (predicted & ~truth).sum(dim=0)
        fn = (~predicted & truth).sum(dim=0)
        return torch.stack([tp, fp, fn], dim=1)

    def reduce(self, total: torch.Tensor) -> torch.Tensor:
        tp, fp, fn = total.double().unbind(dim=1)
        scored = (tp + fp + fn) > 0
        if not bool(scored.any()):
            return torch.tensor(float("nan"), dtype=torch.float64)
        return (2 * tp[scored] / (2 * tp[scored] + fp[scored] + fn[scored])).mean()


multilabel_f1 = register_metric("multilabel_f1")(MultilabelF1())


class KeypointError:
    """Mean Euclidean distance between predicted and true keypoints, in pixels.

    pred, target: (N, K, 2) normalised coordinates; ``pixels_per_unit`` converts them (half
    the image side, for coordinates in [-1, 1] across it). A per-sample mean, so the epoch
    value (the batch-size-weighted mean of the batches) is the mean over all samples.
    """

    def __init__(self, pixels_per_unit: float, name: str = "keypoint_error_px") -> None:
        number = isinstance(pixels_per_unit, (int, float)) and not isinstance(pixels_per_unit, bool)
        if not number or not pixels_per_unit > 0:
            raise ValueError(f"KeypointError: pixels_per_unit must be a positive number, got {pixels_per_unit!r}")
        self.pixels_per_unit = float(pixels_per_unit)
        self.__name__ = name

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
            raise ValueError(f"{self.__name__}: pred and target must both be (N, K, 2), got {tuple(pred.shape)} "
                             f"and {tuple(target.shape)}")
        return (pred.float() - target.float()).norm(dim=-1).mean() * self.pixels_per_unit

    def __repr__(self) -> str:
        return f"KeypointError(pixels_per_unit={self.pixels_per_unit:g})"
