"""The multi-label macro F1, which the shared metric registry lacks (registered by name as
``multilabel_f1``). The keypoint error lives with its task (``_keypoints.VisibleKeypointError``:
it depends on the image size and skips keypoints without a target); segmentation uses the
registry's ``miou`` and ``dice``, ignoring unknown pixels (``_segmentation.IgnoringConfusion``).
"""

from __future__ import annotations

import math

import torch

from torchdeck.train import register_metric
from torchdeck.train._metrics import SummedMetric

__all__ = ["MultilabelF1", "multilabel_f1"]


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
