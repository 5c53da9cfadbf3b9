"""Training augmentation of the multi-label, segmentation and keypoint tasks, against
independent references: the pipeline called directly on the raw sample, markers drawn at the
keypoints and found again in the augmented pixels, analytic flips, and the seeding contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import jaccard_score

from torchdeck import augment as A
from torchdeck import data, tasks
from torchdeck import optim as O
from torchdeck.spec import Experiment
from torchdeck.tasks._keypoints import VisibleKeypointError, VisibleL1Loss
from torchdeck.tasks._segmentation import IGNORE_INDEX
from torchdeck.train import Learner


@pytest.fixture(scope="module")
def shapes():
    return data.load("shapes", n=40, size=32, seed=0)


@pytest.fixture(scope="module")
def single():
    return data.load("shapes", n=40, size=32, seed=1, max_shapes=1)


def _epoch(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def _first_batch_plan(loader, seed, batch_size):
    """The documented seeding, replayed: the order, then the epoch seed, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(loader.n, generator=g)
    epoch_seed = int(torch.randint(2**63 - 1, (), generator=g, dtype=torch.int64))
    return [(i, epoch_seed + i) for i in order[:batch_size].tolist()]


ROTATE_FLIP = A.Pipeline(A.FlipX(), A.Rotate(30), A.Zoom((0.8, 1.2)), mask_fill=255)


# -- segmentation ---------------------------------------------------------------------------------
def test_segmentation_batch_is_the_pipeline_called_directly(shapes):
    task = tasks.Segmentation(shapes, augment=ROTATE_FLIP)
    loader = task.loaders(8, seed=5)["train"]
    x, y = next(iter(loader))
    images, masks = shapes.split("train", "masks")
    want_x, want_y = [], []
    for i, s in _first_batch_plan(loader, 5, 8):
        out = ROTATE_FLIP(image=images[i], mask=masks[i], seed=s)
        want_x.append(out["image"])
        want_y.append(np.where(out["mask"] == 255, IGNORE_INDEX, out["mask"].astype(np.int64)))
    assert torch.equal(x, task.encode_inputs(np.stack(want_x)))
    assert torch.equal(y, torch.from_numpy(np.stack(want_y)))
    assert (y == IGNORE_INDEX).any() and ((y >= 0) & (y < 4)).any()  # a rotation brings in border


def test_segmentation_fill_that_is_a_class_is_that_class_and_ignored_pixels_leave_loss_and_metrics(shapes):
    as_background = tasks.Segmentation(shapes, augment=A.Pipeline(A.Rotate((30, 30))))
    _, y0 = next(iter(as_background.loaders(8)["train"]))
    assert not (y0 == IGNORE_INDEX).any()
    task = tasks.Segmentation(shapes, augment=A.Pipeline(A.Rotate((30, 30)), mask_fill=255))
    _, y = next(iter(task.loaders(8)["train"]))
    ignored = y == IGNORE_INDEX
    # same seed, same warp: the ignored pixels are exactly the ones filled with background before
    assert ignored.any() and torch.equal(y[~ignored], y0[~ignored]) and (y0[ignored] == 0).all()
    logits = torch.randn(*y.shape[:1], 4, *y.shape[1:], generator=torch.Generator().manual_seed(0))
    kept = logits.movedim(1, -1)[~ignored]  # (pixels, classes)
    assert task.loss()(logits, y).item() == pytest.approx(F.cross_entropy(kept, y[~ignored]).item(), rel=1e-6)
    for metric in task.metrics():
        stats = metric.statistics(logits, y)
        labels = kept.argmax(1)
        reference = torch.zeros(4, 4, dtype=torch.int64)
        reference.index_put_((y[~ignored], labels), torch.ones_like(labels), accumulate=True)
        assert torch.equal(stats, reference)


# -- keypoints ------------------------------------------------------------------------------------
def _marked(single, points):
    """Black images with a 3x3 white marker centred on each image's centre point (pixel centres)."""
    images = np.zeros_like(single.images)
    centres = single.centres.copy()
    for n in range(len(images)):
        j, i = np.clip(np.floor(points[n]).astype(int), 4, single.size - 5)
        images[n, i - 1:i + 2, j - 1:j + 2] = 255
        centres[n, 0] = (j + 0.5, i + 0.5)
    return dataclasses.replace(single, images=images, centres=centres)


def test_keypoint_targets_sit_on_the_warped_markers(single):
    marked = _marked(single, single.centres[:, 0])
    pipe = A.Pipeline(A.FlipX(), A.Rotate(40), A.Zoom((0.8, 1.2)))
    task = tasks.KeypointRegression(marked, augment=pipe)
    x, y = _epoch(task.loaders(10, seed=2)["train"])
    pixels = (x * task.std + task.mean)[:, 0].clamp(min=0).numpy()  # back to 0..1, channel 0
    side = marked.size
    centre = np.arange(side) + 0.5
    visible = 0
    for image, target in zip(pixels, y[:, 0].numpy()):
        if not np.isfinite(target).all():
            continue
        weight = image.sum()
        found = np.array([(image.sum(0) * centre).sum() / weight, (image.sum(1) * centre).sum() / weight])
        assert np.linalg.norm((target + 1) / 2 * side - found) <= 1.0
        visible += 1
    assert visible == len(pixels)  # the markers stay well inside: every point is kept
    # and the training images did move: the targets are not the raw points
    _, raw = task.samples("train")
    assert not np.allclose(np.sort(task.decode(y)[:, 0, 0]), np.sort(raw[:, 0, 0]))


def test_points_pushed_out_of_the_frame_have_no_target(single):
    shift = 0.5
    task = tasks.KeypointRegression(single, augment=A.Translate(x=(shift, shift), y=(0.0, 0.0)))
    loader = task.loaders(len(single.train_idx), seed=0)["train"]
    x, y = next(iter(loader))
    _, raw = task.samples("train")
    order = [i for i, _ in _first_batch_plan(loader, 0, len(raw))]
    moved = raw[order, 0] + [shift * single.size, 0.0]
    out = moved[:, 0] >= single.size
    assert out.any() and not out.all()
    assert torch.isnan(y[out]).all() and torch.isfinite(y[~out]).all()
    np.testing.assert_allclose(task.decode(y[~out]), moved[~out][:, None], atol=1e-4)


def test_an_invisible_keypoint_changes_neither_loss_nor_metric():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, 2, 2, generator=g) * 2 - 1
    target[1, 0] = float("nan")
    pred = (torch.rand(4, 2, 2, generator=g) * 2 - 1).requires_grad_()
    loss, metric = VisibleL1Loss(), VisibleKeypointError(16.0)
    value = loss(pred, target)
    value.backward()
    known = torch.isfinite(target)
    assert value.item() == pytest.approx((pred - target)[known].abs().mean().item(), rel=1e-6)
    assert (pred.grad[1, 0] == 0).all() and (pred.grad[known] != 0).all()
    moved = pred.detach().clone()
    moved[1, 0] += 5.0
    assert loss(moved, target).item() == value.item()
    dist = (pred.detach() - target).norm(dim=-1)
    assert float(metric(pred.detach(), target)) == pytest.approx(dist[known[..., 0]].mean().item() * 16, rel=1e-6)
    assert float(metric(moved, target)) == float(metric(pred.detach(), target))


def test_box_points_are_measured_again_on_the_flipped_mask(single):
    task = tasks.KeypointRegression(single, points="box", augment=A.Pipeline(A.FlipX(p=1.0), mask_fill=7))
    x, y = _epoch(task.loaders(64, seed=0)["train"])
    plain_x, plain_y = _epoch(tasks.KeypointRegression(single, points="box").loaders(64, seed=0)["train"])
    assert torch.equal(x, plain_x.flip(-1))  # same order: the training images mirrored
    # a mirrored box: x0' = W - x1, x1' = W - x0, rows unchanged (normalised: x -> -x)
    (x0, y0), (x1, y1) = plain_y[:, 0].unbind(-1), plain_y[:, 1].unbind(-1)
    want = torch.stack([torch.stack([-x1, y0], -1), torch.stack([-x0, y1], -1)], 1)
    assert torch.equal(y, want)


def test_box_points_follow_a_rotation_as_the_box_of_the_rotated_mask(single):
    pipe = A.Rotate(35)
    task = tasks.KeypointRegression(single, points="box", augment=pipe)
    loader = task.loaders(8, seed=3)["train"]
    _, y = next(iter(loader))
    masks = single.masks[single.train_idx]
    for target, (i, s) in zip(task.decode(y), _first_batch_plan(loader, 3, 8)):
        rows, cols = np.nonzero(pipe(image=single.images[single.train_idx[i]], mask=masks[i], seed=s)["mask"])
        assert target.tolist() == [[cols.min(), rows.min()], [cols.max() + 1, rows.max() + 1]]


# -- multi-label ----------------------------------------------------------------------------------
def test_multilabel_moves_the_image_and_keeps_the_labels(shapes):
    plain = tasks.MultilabelClassification(shapes)
    flipped = tasks.MultilabelClassification(shapes, augment=A.FlipX(p=1.0))
    x0, y0 = _epoch(plain.loaders(16, seed=4)["train"])
    x1, y1 = _epoch(flipped.loaders(16, seed=4)["train"])
    assert torch.equal(y1, y0) and torch.equal(x1, x0.flip(-1))


# -- what all three share -------------------------------------------------------------------------
def _three(shapes, single, augment):
    return [tasks.MultilabelClassification(shapes, augment=augment), tasks.Segmentation(shapes, augment=augment),
            tasks.KeypointRegression(single, augment=augment), tasks.KeypointRegression(single, points="box",
                                                                                       augment=augment)]


def test_validation_is_never_augmented(shapes, single):
    for task in _three(shapes, single, ROTATE_FLIP):
        plain = type(task)(task.data, **({"points": task.points} if hasattr(task, "points") else {}))
        xa, ya = _epoch(task.loaders(16, seed=0)["valid"])
        xp, yp = _epoch(plain.loaders(16, seed=0)["valid"])
        assert torch.equal(xa, xp) and torch.equal(ya, yp)


def test_the_same_seed_replays_the_same_batches(shapes, single):
    for task in _three(shapes, single, ROTATE_FLIP):
        a, b, c = (task.loaders(16, seed=s)["train"] for s in (0, 0, 1))
        for _ in range(2):  # two passes: each pass re-augments, and both replay
            (xa, ya), (xb, yb), (xc, _) = _epoch(a), _epoch(b), _epoch(c)
            assert torch.equal(xa, xb) and torch.equal(ya.nan_to_num(9.0), yb.nan_to_num(9.0))
            assert not torch.equal(xa, xc)
        assert not torch.equal(_epoch(a)[0], xa)  # a third pass differs from the second


def test_specs_with_augment_validate_and_build():
    for name, options in [("multilabel-classification", {}), ("segmentation", {}), ("keypoint-regression", {})]:
        d = {"task": {"name": name, "options": options},
             "data": {"name": "shapes", "options": {"n": 20, "size": 32, "max_shapes": 1}},
             "augment": ["flip_x", {"rotate": {"degrees": 10}}]}
        task = Experiment.from_dict(d).build_task()
        assert isinstance(task, tasks.get(name)) and task.augment == A.Pipeline(A.FlipX(), A.Rotate(10))
        x, _ = next(iter(task.loaders(4)["train"]))
        assert x.shape == (4, 3, 32, 32)


@pytest.mark.parametrize(("augment", "pattern"), [
    (["flip_x", "normalize"], r"augment fails on a training sample: augment must give uint8 images like its input "
                              r"\(the task scales and normalises them itself: leave normalize out\), got Tensor"),
    ({"pipeline": {"transforms": ["flip_x"], "mask_fill": -1}},
     r"^segmentation: augment's mask_fill -1 does not fit the masks' dtype uint8 \(0..255\); use a class index "
     r"\(0..3\) to label the border that class, or another value that fits \(e.g. 255\) to leave it out of the loss$"),
])
def test_bad_pipelines_are_refused_when_the_task_is_made(shapes, augment, pattern):
    with pytest.raises(ValueError, match=pattern):
        tasks.Segmentation(shapes, augment=augment)


def test_outputs_of_one_size_are_resized_and_of_several_sizes_refused(shapes, single):
    crop = tasks.KeypointRegression(single, size=16, augment=A.RandomResizedCrop(24, scale=(1.0, 1.0),
                                                                                  ratio=(1.0, 1.0)))
    x, y = next(iter(crop.loaders(8)["train"]))
    assert x.shape == (8, 3, 16, 16) and torch.isfinite(y).all() and y.abs().max() <= 1.0
    for task in _three(shapes, single, A.Scale(factor=(0.5, 2.0))):
        with pytest.raises(ValueError, match=rf"^{task.name}: augment gives images of different sizes .*end it with "
                                             r"resize or a fixed-size crop"):
            next(iter(task.loaders(16)["train"]))


# -- training with augmentation -------------------------------------------------------------------
def test_keypoints_trained_with_flips_and_rotations_find_the_centres():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models train faster on one thread than on shared cores
    try:
        task = tasks.KeypointRegression(data.load("shapes", n=300, size=32, seed=0, max_shapes=1),
                                        augment=A.Pipeline(A.FlipX(), A.Rotate(20)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = task.build_model("small_convnet", {"widths": [8, 16, 16]})
        learner = Learner(model, task.loaders(16, seed=0), task.loss(), O.chain(O.adam(), O.scale_lr(5e-3)),
                          metrics=task.metrics())
        learner.fit_one_cycle(4, lr_max=5e-3)
    finally:
        torch.set_num_threads(before)
    images, points = task.samples("valid")
    error = np.linalg.norm(task.decode(learner.predict(task.encode_inputs(images))) - points, axis=-1).mean()
    assert error <= 1.0, f"mean keypoint error {error:.2f} px at 32 x 32"
    assert learner.history.epochs[-1]["valid_keypoint_error_px"] == pytest.approx(error, rel=1e-4)


def test_segmentation_trained_with_flips_and_rotations_reaches_a_fair_miou():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = tasks.Segmentation(data.load("shapes", n=300, size=32, seed=0), class_weights="inverse_sqrt",
                                  augment=A.Pipeline(A.FlipX(), A.Rotate(20), mask_fill=255))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = task.build_model("small_convnet", {"widths": [8, 16, 16]})
        learner = Learner(model, task.loaders(8, seed=0), task.loss(), O.chain(O.adam(b2=0.99), O.scale_lr(5e-3)),
                          metrics=task.metrics())
        learner.fit_one_cycle(4, lr_max=5e-3)
    finally:
        torch.set_num_threads(before)
    images, masks = task.samples("valid")
    pred = task.decode(learner.predict(task.encode_inputs(images)))
    miou = jaccard_score(task.encode_targets(masks).numpy().ravel(), pred.ravel(), average="macro")
    # Measured: 0.46 (0.47 without augment, same run); all background scores about 0.2. The
    # issue's 0.8 bar needs 1000 scenes and 8 epochs (test_segmentation), too slow to repeat here.
    assert miou >= 0.4, f"valid mIoU {miou:.3f}"
    assert learner.history.epochs[-1]["valid_miou"] == pytest.approx(miou, abs=1e-9)
