"""Metrics against scikit-learn: top-k, MAE, MSE (batch means) and macro F1, mIoU, Dice
(summed confusion matrices, exact over an epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from torchdeck.train import get_metric
from torchdeck.train._metrics import confusion_matrix, top_k_accuracy

from ._digits import digits_learner, one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def scores(seed, shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def labels(seed, shape, n):
    return torch.randint(0, n, shape, generator=torch.Generator().manual_seed(seed + 1000))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_accuracy_matches_sklearn(seed, k):
    pred, y = scores(seed, (50, 7)), labels(seed, (50,), 7)
    name = "accuracy" if k == 1 else f"top{k}_accuracy"
    _, fn = get_metric(name)
    expected = skm.top_k_accuracy_score(y.numpy(), pred.numpy(), k=k, labels=list(range(7)))
    assert fn(pred, y).item() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("name, reference", [("mae", skm.mean_absolute_error), ("mse", skm.mean_squared_error)])
@pytest.mark.parametrize("pred_shape", [(40,), (40, 1)])
def test_regression_metrics_match_sklearn(name, reference, pred_shape):
    pred, y = scores(0, pred_shape), scores(1, (40,))
    _, fn = get_metric(name)
    assert fn(pred, y).item() == pytest.approx(reference(y.numpy(), pred.reshape(-1).numpy()), rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_f1_macro_matches_sklearn_with_absent_classes(seed):
    # 6 classes, but targets only use 0..3 and predictions can say 4 or 5: sklearn averages
    # over the classes seen in either; so must we.
    pred, y = scores(seed, (60, 6)), labels(seed, (60,), 4)
    _, fn = get_metric("f1_macro")
    expected = skm.f1_score(y.numpy(), pred.argmax(1).numpy(), average="macro")
    assert fn(pred, y).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_miou_and_dice_on_segmentation_match_sklearn(seed):
    pred, y = scores(seed, (4, 5, 9, 11)), labels(seed, (4, 9, 11), 5)
    flat_true, flat_pred = y.reshape(-1).numpy(), pred.argmax(1).reshape(-1).numpy()
    assert get_metric("miou")[1](pred, y).item() == pytest.approx(
        skm.jaccard_score(flat_true, flat_pred, average="macro"), rel=1e-12)
    assert get_metric("dice")[1](pred, y).item() == pytest.approx(
        skm.f1_score(flat_true, flat_pred, average="macro"), rel=1e-12)


def test_one_channel_logits_are_binary():
    pred, y = scores(0, (6, 1, 8, 8)), labels(0, (6, 8, 8), 2)
    hard = (pred[:, 0] > 0).long()
    assert get_metric("dice")[1](pred, y).item() == pytest.approx(
        skm.f1_score(y.reshape(-1).numpy(), hard.reshape(-1).numpy(), average="macro"), rel=1e-12)
    np.testing.assert_array_equal(confusion_matrix(pred, y).numpy(),
                                  skm.confusion_matrix(y.reshape(-1).numpy(), hard.reshape(-1).numpy(), labels=[0, 1]))


def test_epoch_values_are_exact_over_the_epoch_not_means_of_batches():
    learner = digits_learner(metrics=("f1_macro", "miou", "top3_accuracy", "accuracy"), n_train=256, n_valid=100,
                             batch_size=16, dropout=0.0)
    learner.fit(1)
    xv, yv = learner.loaders["valid"].x, learner.loaders["valid"].y
    with torch.no_grad():
        pred = learner.model.eval()(xv)
    hard = pred.argmax(1).numpy()
    row = learner.history.epochs[-1]
    f1 = skm.f1_score(yv.numpy(), hard, average="macro")
    assert row["valid_f1_macro"] == pytest.approx(f1, rel=1e-9)
    assert row["valid_miou"] == pytest.approx(skm.jaccard_score(yv.numpy(), hard, average="macro"), rel=1e-9)
    assert row["valid_top3_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(yv.numpy(), pred.numpy(), k=3, labels=list(range(10))), abs=1e-7)
    assert row["valid_accuracy"] == pytest.approx(skm.accuracy_score(yv.numpy(), hard), abs=1e-7)
    # the weighted mean of per-batch F1 scores is another (wrong) number here
    batches = [(i, min(i + 16, 100)) for i in range(0, 100, 16)]
    per_batch = [skm.f1_score(yv[a:b].numpy(), hard[a:b], average="macro") for a, b in batches]
    mean_of_batches = sum(f * (b - a) for f, (a, b) in zip(per_batch, batches)) / 100
    assert abs(mean_of_batches - f1) > 1e-3


def test_metric_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"top_k_accuracy: k must be a positive integer, got 0"):
        top_k_accuracy(0)
    with pytest.raises(ValueError, match=r"top5_accuracy: k=5 is more than the 3 classes of the prediction"):
        get_metric("top5_accuracy")[1](scores(0, (4, 3)), labels(0, (4,), 3))
    with pytest.raises(ValueError, match=r"mse: prediction of shape \(4, 2\) does not match target of shape \(4,\)"):
        get_metric("mse")[1](scores(0, (4, 2)), scores(1, (4,)))
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 3\), got values from 0 to 7"):
        get_metric("f1_macro")[1](scores(0, (4, 3)), torch.tensor([0, 1, 2, 7]))
    with pytest.raises(ValueError, match=r"unknown metric 'f1'; allowed: accuracy, dice, f1_macro, mae, miou, mse"):
        get_metric("f1")
