"""Segmentation on ``shapes``: interface, mask resizing, mIoU and Dice against scikit-learn,
class weights, drawing, and training to the issue's bar (valid mIoU >= 0.80), scored independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, jaccard_score

from torchdeck import data, tasks
from torchdeck import optim as O
from torchdeck.train import Learner, get_metric


@pytest.fixture(scope="module")
def shapes():
    return data.load("shapes", n=40, size=32, seed=0)


@pytest.fixture(scope="module")
def task(shapes):
    return tasks.Segmentation(shapes)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than on threads fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("backbone", "options"), [("small_convnet", {"widths": [4, 8, 8]}),
                                                   ("small_cnn", {"width": 4}), ("resnet18", {})])
def test_passes_the_task_check(task, backbone, options):
    report = tasks.check(task, backbone=backbone, backbone_options=options)
    assert report.steps == list(tasks.STEPS)
    assert report.inputs_shape == (4, 3, 32, 32) and report.targets_shape == (4, 32, 32)
    assert report.output_shape == (4, 4, 32, 32) and set(report.metrics) == {"miou", "dice"}
    assert all(d.shape == (32, 32) and d.dtype == np.uint8 for d in report.decoded)
    assert tasks.get("segmentation") is tasks.Segmentation


def test_the_model_is_an_encoder_and_a_unet(task):
    model = task.build_model("small_convnet", {"widths": [4, 8, 8]})
    features = model.backbone(torch.zeros(2, 3, 32, 32))
    assert [f.shape[-1] for f in features] == [32, 32, 16, 8]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4, 32, 32)


def test_masks_are_resized_by_the_class_under_each_pixel_centre():
    big = data.load("shapes", n=6, size=64, seed=3)
    task = tasks.Segmentation(big, size=32)
    y = task.encode_targets(big.masks)
    # output pixel (i, j) covers input pixels 2i..2i+1; its centre is the corner they share,
    # and "nearest-exact" takes the input pixel whose centre is nearest after it: (2i+1, 2j+1)
    assert y.dtype == torch.int64 and y.shape == (6, 32, 32)
    assert np.array_equal(y.numpy(), big.masks[:, 1::2, 1::2])
    assert np.array_equal(tasks.Segmentation(big).encode_targets(big.masks).numpy(), big.masks)
    assert task.encode_inputs(big.images).shape == (6, 3, 32, 32)


def test_decode_is_the_arg_max(task):
    logits = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    decoded = task.decode(logits)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, logits.numpy().argmax(axis=1))


def test_miou_and_dice_match_scikit_learn_over_an_epoch():
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(3):
        target = torch.randint(0, 3, (4, 6, 6), generator=g)  # class 3 never present...
        logits = torch.randn(4, 5, 6, 6, generator=g)
        logits[:, 4] = -10.0  # ...class 4 never predicted
        batches.append((logits, target))
    pred = torch.cat([b[0].argmax(1) for b in batches]).numpy().ravel()
    true = torch.cat([b[1] for b in batches]).numpy().ravel()
    for name, reference in [("miou", jaccard_score), ("dice", f1_score)]:
        _, metric = get_metric(name)
        value = metric.reduce(sum(metric.statistics(p, t) for p, t in batches))
        # scikit-learn, like us, averages over the classes present in either labelling
        assert float(value) == pytest.approx(reference(true, pred, average="macro"), abs=1e-12)


def test_class_weights(shapes):
    plain = tasks.Segmentation(shapes)
    assert isinstance(plain.loss(), torch.nn.CrossEntropyLoss) and plain.class_weights is None
    task = tasks.Segmentation(shapes, class_weights="inverse_sqrt")
    _, masks = shapes.split("train", "masks")
    share = np.bincount(masks.ravel(), minlength=4) / masks.size
    expected = 1 / np.sqrt(share)
    np.testing.assert_allclose(task.class_weights.numpy(), expected / expected.mean(), rtol=1e-6)
    # the loss is the weighted mean of the pixels' negative log-likelihoods
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(2, 4, 5, 5, generator=g), torch.randint(0, 4, (2, 5, 5), generator=g)
    logp = logits.log_softmax(1).numpy()
    nll = -np.take_along_axis(logp, target.numpy()[:, None], axis=1)[:, 0]
    w = task.class_weights.numpy()[target.numpy()]
    assert float(task.loss()(logits, target)) == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-5)
    manual = tasks.Segmentation(shapes, class_weights=[0.0, 1, 1, 2])
    assert manual.class_weights.tolist() == [0.0, 1.0, 1.0, 2.0]
    median = tasks.Segmentation(shapes, class_weights="median_frequency").class_weights.numpy()
    expected = np.median(share) / share
    np.testing.assert_allclose(median, expected / expected.mean(), rtol=1e-6)


def test_show_batch_tints_the_masks(task, shapes):
    grid = task.show_batch(4)
    images, masks = shapes.split("train", "masks")
    background = masks[:4] == 0
    assert np.array_equal(grid.images[background], images[:4][background])
    assert not np.array_equal(grid.images[~background], images[:4][~background])
    assert grid.captions == ["+".join(task.classes[c] for c in np.unique(m) if c) for m in masks[:4]]


def test_show_results_scores_each_image(task, shapes):
    _, masks = shapes.split("valid", "masks")

    def oracle(x):
        return torch.nn.functional.one_hot(torch.from_numpy(masks[:len(x)]).long(), 4).permute(0, 3, 1, 2).float()

    assert task.show_results(oracle, 3).captions == ["mIoU 1.00"] * 3

    def background(x):
        out = torch.zeros(len(x), 4, 32, 32)
        out[:, 0] = 1.0
        return out

    for caption, m in zip(task.show_results(background, 3).captions, masks[:3]):
        classes = np.unique(m)  # background's IoU is its share of the image; the others score 0
        assert caption == f"mIoU {np.mean(m == 0) / len(classes):.2f}"


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"class_weights": "balanced"}, r"segmentation: class_weights must be null, one of inverse_sqrt, "
                                    r"median_frequency or 4 non-negative numbers, got 'balanced'"),
    ({"class_weights": [1, 2]}, r"4 non-negative numbers \(one per class: background, circle, square, triangle\)"),
    ({"class_weights": [0, 0, 0, 0]}, r"not all 0"),
    ({"size": 7}, r"segmentation: size must be an integer >= 8 or null, got 7"),
])
def test_bad_arguments(shapes, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tasks.Segmentation(shapes, **kwargs)
    with pytest.raises(ValueError, match=r"segmentation: masks hold class 7; allowed: 0 to 3"):
        tasks.Segmentation(shapes).encode_targets(np.full((1, 4, 4), 7, np.uint8))
    with pytest.raises(ValueError, match=r"backbone 'mlp': the backbone gives no feature maps"):
        tasks.Segmentation(shapes).build_model("mlp", {"in_features": 3 * 32 * 32})


def test_trains_to_miou_of_0_8(one_thread):
    # Scenes rendered at 64 px and seen at 32 (the antialiased edges keep what a corner looks
    # like); a 4-stage small CNN with a U-Net decoder; cross-entropy weighted by
    # 1 / sqrt(class share), so small triangles are learnt as early as large circles.
    task = tasks.Segmentation(data.load("shapes", n=1000, size=64, seed=0), size=32, class_weights="inverse_sqrt")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = task.build_model("small_convnet")
    learner = Learner(model, task.loaders(8, seed=0), task.loss(), O.chain(O.adam(b2=0.99), O.scale_lr(5e-3)),
                      metrics=task.metrics())
    learner.fit_one_cycle(8, lr_max=5e-3)
    images, masks = task.samples("valid")
    pred = task.decode(learner.predict(task.encode_inputs(images)))
    true = task.encode_targets(masks).numpy()
    miou = jaccard_score(true.ravel(), pred.ravel(), average="macro")
    assert miou >= 0.80, f"valid mIoU {miou:.3f}"
    assert learner.history.epochs[-1]["valid_miou"] == pytest.approx(miou, abs=1e-9)
