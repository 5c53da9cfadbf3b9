"""Metrics, found by name.

Two kinds:

- a function ``fn(pred, target) -> 0-d tensor``, the batch mean of a per-sample value
  (accuracy, top-k accuracy, MAE, MSE): the epoch value is the batch-size-weighted mean of
  the batch values, which is exactly the mean over the epoch's samples;
- a :class:`SummedMetric` (macro F1, mIoU, Dice), which is not a mean of per-sample values:
  each batch gives statistics that add up (a confusion matrix) and the epoch value comes
  from their sum. A mean of per-batch F1 scores is not the epoch's F1 score; a sum of
  confusion matrices is exact, and is what an all-reduce across processes adds up.

Both are called the same way on one batch (``metric(pred, target)``).
"""

from __future__ import annotations

from typing import Callable

import torch

from torchdeck._registry import Registry

__all__ = ["METRICS", "register_metric", "get_metric", "accuracy", "top_k_accuracy", "mae", "mse", "SummedMetric",
           "ConfusionMetric", "confusion_matrix", "f1_macro", "miou", "dice"]

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METRICS = Registry("metric")
register_metric = METRICS.register


def get_metric(name_or_fn: str | MetricFn) -> tuple[str, MetricFn]:
    if callable(name_or_fn):
        return getattr(name_or_fn, "__name__", "metric"), name_or_fn
    return name_or_fn, METRICS.lookup(name_or_fn)


@register_metric("accuracy")
def accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of samples whose arg-max class is the target. pred: (N, C) logits; target: (N,)."""
    return (pred.argmax(dim=1) == target).float().mean()


def top_k_accuracy(k: int) -> MetricFn:
    """Share of samples whose target is among the ``k`` highest scores. pred: (N, C); target: (N,)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k_accuracy: k must be a positive integer, got {k!r}")

    def metric(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if k > pred.shape[1]:
            raise ValueError(f"top{k}_accuracy: k={k} is more than the {pred.shape[1]} classes of the prediction")
        top = pred.topk(k, dim=1).indices
        return (top == target.unsqueeze(1)).any(dim=1).float().mean()

    metric.__name__ = f"top{k}_accuracy"
    return metric


for _k in (3, 5):
    register_metric(f"top{_k}_accuracy")(top_k_accuracy(_k))


def _same_shape(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # A regression head gives (N, 1) for (N,) targets: same values, another shape.
    if pred.shape != target.shape:
        if pred.numel() != target.numel():
            raise ValueError(f"{name}: prediction of shape {tuple(pred.shape)} does not match target of shape "
                             f"{tuple(target.shape)}")
        pred = pred.reshape(target.shape)
    return pred


@register_metric("mae")
def mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (regression): pred and target of one shape, or (N, 1) and (N,)."""
    pred = _same_shape("mae", pred, target)
    return (pred.float() - target.float()).abs().mean()


@register_metric("mse")
def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (regression): pred and target of one shape, or (N, 1) and (N,)."""
    pred = _same_shape("mse", pred, target)
    return (pred.float() - target.float()).square().mean()


class SummedMetric:
    """A metric computed from statistics summed over an epoch (see the module docstring).

    Subclasses fill :meth:`statistics` (one batch's, any shape, added up over the epoch) and
    :meth:`reduce` (the value from their sum).
    """

    __name__ = "metric"

    def statistics(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reduce(self, total: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.statistics(pred, target))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__name__!r})"


def _hard_labels(pred: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Class indices and the number of classes from scores: (N, C, ...) -> argmax over C;
    one channel (N, 1, ...) is a binary logit, positive above 0."""
    if pred.ndim < 2:
        raise ValueError(f"expected scores of shape (N, C, ...), got shape {tuple(pred.shape)}")
    if pred.shape[1] == 1:
        return (pred[:, 0] > 0).long(), 2
    return pred.argmax(dim=1), pred.shape[1]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(C, C) counts, rows the true class, columns the predicted one; pred: (N, C, ...) scores,
    target: (N, ...) class indices (classification, or segmentation per pixel)."""
    labels, n = _hard_labels(pred)
    if labels.shape != target.shape:
        raise ValueError(f"scores of shape {tuple(pred.shape)} need targets of shape {tuple(labels.shape)}, "
                         f"got {tuple(target.shape)}")
    target = target.long().reshape(-1)
    # The range check reads the targets on the host: free on CPU, a sync per batch on a GPU,
    # where an out-of-range index fails in scatter_add_ instead.
    if target.device.type == "cpu" and target.numel() and (int(target.min()) < 0 or int(target.max()) >= n):
        raise ValueError(f"targets must be class indices in [0, {n}), got values from {int(target.min())} "
                         f"to {int(target.max())}")
    index = target * n + labels.reshape(-1)
    counts = torch.zeros(n * n, dtype=torch.int64, device=target.device)
    return counts.scatter_add_(0, index, torch.ones_like(index)).reshape(n, n)


def _per_class(total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    cm = total.double()
    tp = cm.diagonal()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    # A class neither present nor predicted has no score; it is left out of the mean
    # (as scikit-learn does when labels are not given).
    present = (tp + fp + fn) > 0
    return tp, fp, fn, present


def _macro(scores: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    if not bool(present.any()):
        return torch.tensor(float("nan"), dtype=torch.float64)
    return scores[present].mean()


# reduce: (tp, fp, fn, present) -> value, per kind of confusion-matrix metric
_CONFUSION_SCORES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    # F1 = Dice = 2TP / (2TP + FP + FN) per class on hard labels
    "f1": lambda tp, fp, fn: 2 * tp / (2 * tp + fp + fn).clamp(min=1),
    "iou": lambda tp, fp, fn: tp / (tp + fp + fn).clamp(min=1),
}


class ConfusionMetric(SummedMetric):
    """Macro average over classes of a confusion-matrix score: ``score="f1"`` (F1, which on
    hard labels is also Dice) or ``"iou"`` (Jaccard). Works for classification (N, C) and
    segmentation (N, C, H, W) alike, pixels counted as samples."""

    def __init__(self, score: str, name: str) -> None:
        if score not in _CONFUSION_SCORES:
            raise ValueError(f"ConfusionMetric: score must be one of {', '.join(map(repr, _CONFUSION_SCORES))}, "
                             f"got {score!r}")
        self.score = score
        self.__name__ = name

    def statistics(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return confusion_matrix(pred, target)

    def reduce(self, total: torch.Tensor) -> torch.Tensor:
        tp, fp, fn, present = _per_class(total)
        return _macro(_CONFUSION_SCORES[self.score](tp, fp, fn), present)


f1_macro = register_metric("f1_macro")(ConfusionMetric("f1", "f1_macro"))
miou = register_metric("miou")(ConfusionMetric("iou", "miou"))
dice = register_metric("dice")(ConfusionMetric("f1", "dice"))
