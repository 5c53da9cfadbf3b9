"""Multi-label classification on ``shapes``: interface, encoding, macro F1 against scikit-learn,
and training to the issue's bar (valid macro F1 >= 0.90), scored independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from torchdeck import data, tasks
from torchdeck import optim as O
from torchdeck.train import Learner, Metrics, get_metric


@pytest.fixture(scope="module")
def shapes():
    return data.load("shapes", n=60, size=32, seed=0)


@pytest.fixture(scope="module")
def task(shapes):
    return tasks.MultilabelClassification(shapes)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than on threads fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("backbone", "options"), [("small_convnet", {"widths": [4, 8]}), ("small_cnn", {"width": 4}),
                                                   ("mobilenet_v3_small", {})])
def test_passes_the_task_check(task, backbone, options):
    report = tasks.check(task, backbone=backbone, backbone_options=options)
    assert report.steps == list(tasks.STEPS)
    assert report.inputs_shape == (4, 3, 32, 32) and report.targets_shape == (4, 3) and report.output_shape == (4, 3)
    assert set(report.metrics) == {"multilabel_f1"}
    assert all(set(d) <= set(task.classes) for d in report.decoded)
    assert tasks.get("multilabel-classification") is tasks.MultilabelClassification


def test_targets_are_the_classes_visible_in_the_masks(task, shapes):
    images, labels = task.samples("valid")
    y = task.encode_targets(labels)
    masks = shapes.masks[shapes.valid_idx]
    visible = np.stack([(masks == k).any(axis=(1, 2)) for k in (1, 2, 3)], axis=1)
    assert y.dtype == torch.float32 and np.array_equal(y.numpy(), visible.astype(np.float32))
    assert task.encode_inputs(images).shape == (len(images), 3, 32, 32)


def test_decode_thresholds_the_probabilities(shapes):
    logits = torch.tensor([[2.0, -2.0, 0.1], [-3.0, -3.0, -3.0], [0.3, 0.7, -0.1]])
    assert tasks.MultilabelClassification(shapes).decode(logits) == [("circle", "triangle"), (), ("circle", "square")]
    # at 0.6, a class needs sigmoid(z) > 0.6, i.e. z > 0.405
    assert tasks.MultilabelClassification(shapes, threshold=0.6).decode(logits) == [("circle",), (), ("square",)]


def _random_batches(seed, n_batches=4, n=25, labels=5):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        target = (torch.rand(n, labels, generator=g) < 0.4).float()
        pred = torch.randn(n, labels, generator=g) * 2
        target[:, 4] = 0.0
        pred[:, 4] = -5.0  # a label neither present nor predicted: no F1, left out of the mean
        batches.append((pred, target))
    return batches


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_macro_f1_matches_scikit_learn_over_an_epoch(threshold):
    batches = _random_batches(seed=int(threshold * 10))
    metric = tasks.MultilabelF1(threshold)
    summed = metric.reduce(sum(metric.statistics(p, t) for p, t in batches))
    pred = torch.cat([p for p, _ in batches]).sigmoid().numpy() > threshold
    target = torch.cat([t for _, t in batches]).numpy().astype(bool)
    expected = f1_score(target, pred, average="macro", zero_division=np.nan)
    assert float(summed) == pytest.approx(expected, abs=1e-12)
    # one batch, called directly
    p, t = batches[0]
    assert float(metric(p, t)) == pytest.approx(
        f1_score(t.numpy().astype(bool), p.sigmoid().numpy() > threshold, average="macro", zero_division=np.nan))
    # registered by name, and the Metrics callback sums it rather than averaging batches
    assert get_metric("multilabel_f1")[1] is tasks.multilabel_f1
    assert isinstance(Metrics("multilabel_f1").metrics[0][1], tasks.MultilabelF1)


def test_f1_with_no_label_scored_is_nan():
    metric = tasks.MultilabelF1()
    assert torch.isnan(metric(torch.full((3, 2), -4.0), torch.zeros(3, 2)))


def test_show_batch_and_results(task):
    grid = task.show_batch(6)
    images, labels = task.samples("train")
    assert np.array_equal(grid.images, images[:6])
    expected = ["+".join(c for c, y in zip(task.classes, row) if y) or "(none)" for row in labels[:6]]
    assert grid.captions == expected

    _, valid = task.samples("valid")

    def oracle(x):
        return torch.from_numpy(valid[:len(x)] * 8.0 - 4.0)

    assert task.show_results(oracle, 5).captions == [
        "+".join(c for c, y in zip(task.classes, row) if y) or "(none)" for row in valid[:5]]

    def nothing(x):
        return torch.full((len(x), 3), -4.0)

    captions = task.show_results(nothing, 5).captions
    assert all(c.startswith("(none)≠") or c == "(none)" for c in captions)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"threshold": 1.0}, r"multilabel-classification: threshold must be a probability in \(0, 1\), got 1.0"),
    ({"size": 4}, r"multilabel-classification: size must be an integer >= 8 or null, got 4"),
    ({"augment": "flip"}, r"^augment: unknown transform 'flip'; allowed: .*flip_x"),
])
def test_bad_arguments(shapes, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tasks.MultilabelClassification(shapes, **kwargs)
    with pytest.raises(ValueError, match=r"multilabel-classification: 'digits' has one label per image; use "
                                         r"image-classification"):
        tasks.MultilabelClassification(data.load("digits"))
    with pytest.raises(ValueError, match=r"multilabel-classification: data must be a ShapesDataset .*got list"):
        tasks.MultilabelClassification([])
    with pytest.raises(ValueError, match=r"targets must be \(N, 3\) multi-hot, got \(2,\)"):
        tasks.MultilabelClassification(shapes).encode_targets(np.zeros(2))


def test_trains_to_macro_f1_of_0_9(one_thread):
    # 1500 images at 48 px (the classes are easier to tell apart than at 32), a 4-stage
    # small CNN whose last map is max-pooled (is a shape anywhere?), one cycle of Adam.
    task = tasks.MultilabelClassification(data.load("shapes", n=1500, size=48, seed=0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = task.build_model("small_convnet", {"pool": "max"})
    learner = Learner(model, task.loaders(16, seed=0), task.loss(), O.chain(O.adam(), O.scale_lr(5e-3)),
                      metrics=task.metrics())
    learner.fit_one_cycle(8, lr_max=5e-3)
    images, labels = task.samples("valid")
    predicted = task.decode(learner.predict(task.encode_inputs(images)))
    pred = np.array([[c in p for c in task.classes] for p in predicted])
    f1 = f1_score(labels.astype(bool), pred, average="macro")
    assert f1 >= 0.90, f"valid macro F1 {f1:.3f}"
    assert learner.history.epochs[-1]["valid_multilabel_f1"] == pytest.approx(f1, abs=1e-9)
