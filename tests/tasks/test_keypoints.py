"""Keypoint regression on ``shapes``: interface, the coordinate convention against grid_sample,
point sets against the masks, the pixel error, drawing, and training to the issue's bar
(mean error <= 2 px at 64 x 64), scored independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchdeck import data, models, tasks
from torchdeck import optim as O
from torchdeck.train import Learner


@pytest.fixture(scope="module")
def shapes():
    return data.load("shapes", n=40, size=64, seed=0, max_shapes=1)


@pytest.fixture(scope="module")
def task(shapes):
    return tasks.KeypointRegression(shapes, size=32)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than on threads fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("points", ["centre", "box"])
@pytest.mark.parametrize(("backbone", "options"), [("small_convnet", {"widths": [4, 8, 8]}),
                                                   ("mobilenet_v3_small", {})])
def test_passes_the_task_check(shapes, points, backbone, options):
    task = tasks.KeypointRegression(shapes, size=32, points=points)
    report = tasks.check(task, backbone=backbone, backbone_options=options)
    k = {"centre": 1, "box": 2}[points]
    assert report.steps == list(tasks.STEPS) and task.keypoints == k
    assert report.inputs_shape == (4, 3, 32, 32) and report.targets_shape == report.output_shape == (4, k, 2)
    assert set(report.metrics) == {"keypoint_error_px"}
    assert all(d.shape == (k, 2) for d in report.decoded)
    assert tasks.get("keypoint-regression") is tasks.KeypointRegression


def test_heads_on_maps_and_on_vectors(task):
    model = task.build_model("small_convnet", {"widths": [4, 8, 8]})
    assert isinstance(model.head, models.HeatmapKeypoints) and isinstance(task.head(16), models.CoordinateRegressor)
    assert model.head.decoder(model.backbone(torch.zeros(1, 3, 32, 32))).shape == (1, 1, 16, 16)  # stride 2


def test_point_sets_agree_with_the_masks(shapes):
    _, centres = tasks.KeypointRegression(shapes).samples("train")
    np.testing.assert_array_equal(centres[:, 0], shapes.centres[shapes.train_idx, 0])
    _, boxes = tasks.KeypointRegression(shapes, points="box").samples("train")
    for box, mask in zip(boxes, shapes.masks[shapes.train_idx]):
        rows, cols = np.nonzero(mask)
        # edges of the hull of the visible pixels: pixel (i, j) covers [j, j+1) x [i, i+1)
        assert box.tolist() == [[cols.min(), rows.min()], [cols.max() + 1, rows.max() + 1]]
    # the centre lies inside the shape: the mask is non-zero under it
    for (x, y), mask in zip(centres[:, 0], shapes.masks[shapes.train_idx]):
        assert mask[int(y), int(x)] > 0


def test_encoding_follows_grid_sample_coordinates(task, shapes):
    # the centre of pixel (i, j) is (j + 0.5, i + 0.5); encoded, grid_sample reads that pixel
    image = torch.from_numpy(shapes.images[:1, :, :, 0]).double()[:, None]
    for i, j in [(0, 0), (10, 40), (63, 63)]:
        xy = task.encode_targets(np.array([[[j + 0.5, i + 0.5]]]))
        sampled = F.grid_sample(image, xy.double().view(1, 1, 1, 2), align_corners=False)
        assert sampled.item() == image[0, 0, i, j].item()
    points = np.array([[[0.0, 64.0]], [[32.0, 16.0]]], np.float32)
    np.testing.assert_allclose(task.encode_targets(points).numpy(), [[[-1, 1]], [[0, -0.5]]])
    np.testing.assert_allclose(task.decode(task.encode_targets(points)), points, atol=1e-5)


def test_keypoint_error_is_the_mean_distance_in_pixels(task):
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(6, 3, 2, generator=g) * 2 - 1, torch.rand(6, 3, 2, generator=g) * 2 - 1
    (metric,) = task.metrics()
    expected = np.linalg.norm((pred - target).numpy() * 32, axis=-1).mean()  # 64 px images: 32 px per unit
    assert metric.__name__ == "keypoint_error_px" and float(metric(pred, target)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"pred and target must both be \(N, K, 2\), got \(6, 3, 2\) and \(6, 6\)"):
        metric(pred, target.view(6, 6))


def test_show_batch_and_results(task, shapes):
    grid = task.show_batch(3)
    _, points = task.samples("train")
    for image, (x, y) in zip(grid.images, points[:3, 0]):
        assert image[int(y), int(x)].tolist() == [0, 255, 0]
    assert grid.captions == [f"({x:.0f},{y:.0f})" for x, y in points[:3, 0]]
    _, valid = task.samples("valid")

    def oracle(x):
        return task.encode_targets(valid[:len(x)])

    assert task.show_results(oracle, 3).captions == ["err 0.0 px"] * 3


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"points": "corners"}, r"keypoint-regression: points must be one of box, centre, got 'corners'"),
    ({"heatmap_stride": 0}, r"keypoint-regression: heatmap_stride must be a positive integer, got 0"),
])
def test_bad_arguments(shapes, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tasks.KeypointRegression(shapes, **kwargs)


def test_refuses_images_with_several_shapes():
    many = data.load("shapes", n=10, size=32, seed=0, max_shapes=3)
    first = int(np.flatnonzero((many.shape_labels > 0).sum(1) != 1)[0])
    with pytest.raises(ValueError, match=rf"keypoint-regression: needs exactly one shape per image, so that each "
                                         rf"point is well defined; image {first} has \d .*max_shapes=1"):
        tasks.KeypointRegression(many)


def test_trains_to_two_pixels_at_64(one_thread):
    # Scenes at 64 px, seen at 32; heatmaps at stride 2 read by a soft-argmax; L1 loss.
    task = tasks.KeypointRegression(data.load("shapes", n=500, size=64, seed=0, max_shapes=1), size=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = task.build_model("small_convnet")
    learner = Learner(model, task.loaders(16, seed=0), task.loss(), O.chain(O.adam(), O.scale_lr(5e-3)),
                      metrics=task.metrics())
    learner.fit_one_cycle(5, lr_max=5e-3)
    images, points = task.samples("valid")
    pred = task.decode(learner.predict(task.encode_inputs(images)))
    error = np.linalg.norm(pred - points, axis=-1).mean()  # pixels of the 64 x 64 images
    assert error <= 2.0, f"mean keypoint error {error:.2f} px"
    assert learner.history.epochs[-1]["valid_keypoint_error_px"] == pytest.approx(error, rel=1e-4)
