"""The procedural ``shapes`` data set: determinism, and image / mask / boxes / keypoints / labels agreement.

References are independent of the generator: OpenCV's point-in-polygon test and the circle
equation for the pixel sets, numpy's nonzero for the visible hulls, analytic areas and
polygon geometry for the keypoints.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from torchdeck import data

CIRCLE, SQUARE, TRIANGLE = 1, 2, 3
PER_IMAGE = ("images", "masks", "instances", "shape_labels", "colours", "centres", "radii", "corners", "boxes",
             "labels")


@pytest.fixture(scope="module")
def ds():
    return data.load("shapes", n=64, size=48, seed=3)


@pytest.fixture(scope="module")
def single():
    """One shape per image (nothing covered) at a size where pixel counts approach areas."""
    return data.load("shapes", n=24, size=160, seed=1, max_shapes=1)


def _equal(a, b):
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def test_same_seed_same_data_and_image_i_does_not_depend_on_n():
    a = data.load("shapes", n=12, size=32, seed=7)
    b = data.load("shapes", n=12, size=32, seed=7)
    assert all(_equal(getattr(a, f), getattr(b, f)) for f in PER_IMAGE)
    assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.valid_idx, b.valid_idx)
    first = data.load("shapes", n=5, size=32, seed=7)
    assert all(_equal(getattr(first, f), getattr(a, f)[:5]) for f in PER_IMAGE)
    other = data.load("shapes", n=12, size=32, seed=8)
    assert not np.array_equal(other.images, a.images)


def test_the_scene_is_the_same_at_any_size():
    small, large = data.load("shapes", n=6, size=32, seed=2), data.load("shapes", n=6, size=96, seed=2)
    assert np.array_equal(small.shape_labels, large.shape_labels)
    np.testing.assert_allclose(small.centres / 32, large.centres / 96, rtol=1e-5)
    np.testing.assert_allclose(small.corners / 32, large.corners / 96, rtol=1e-5)
    assert np.array_equal(small.colours, large.colours)


def test_contents_and_variety(ds):
    n, s = 64, 48
    assert ds.images.shape == (n, s, s, 3) and ds.images.dtype == np.uint8
    assert ds.masks.shape == (n, s, s) and ds.masks.dtype == np.uint8 and set(np.unique(ds.masks)) <= {0, 1, 2, 3}
    counts = (ds.shape_labels > 0).sum(axis=1)
    assert set(counts.tolist()) == {1, 2, 3}  # 1 to max_shapes shapes per image
    assert set(ds.shape_labels[ds.shape_labels > 0].tolist()) == {1, 2, 3}
    assert 0.2 < ds.labels.mean() < 0.9 and ds.labels.shape == (n, 3)
    # varied colours, sizes and rotations
    used = ds.shape_labels > 0
    assert len({tuple(c) for c in ds.colours[used]}) > 0.9 * used.sum()
    assert np.ptp(ds.radii[used]) > 0.2 * ds.radii[used].mean()
    # textured background: not one flat colour
    background = ds.images[0][ds.masks[0] == 0]
    assert background.std(axis=0).min() > 2
    assert len(ds.train_idx) + len(ds.valid_idx) == n and not set(ds.train_idx) & set(ds.valid_idx)
    assert ds.classes == ("circle", "square", "triangle")
    assert ds.mask_classes[0] == "background"


def _reference_member(kind, centre, radius, corners, size):
    """Pixel centres inside the analytic shape, computed independently of the generator."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    if kind == CIRCLE:
        return np.hypot(xs - centre[0], ys - centre[1]) <= radius
    poly = corners[~np.isnan(corners[:, 0])].astype(np.float32)
    inside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), True)
                       for x, y in zip(xs.ravel(), ys.ravel())]).reshape(size, size)
    return inside >= 0


def test_masks_agree_with_the_drawn_shapes_and_the_image_colours(ds):
    s = ds.size
    mismatched = 0
    for i in range(12):
        expected = np.zeros((s, s), np.uint8)
        for m in np.flatnonzero(ds.shape_labels[i]):
            member = _reference_member(ds.shape_labels[i, m], ds.centres[i, m], ds.radii[i, m], ds.corners[i, m], s)
            expected[member] = m + 1  # later shapes cover earlier ones
        # float32 storage of the parameters may flip a pixel whose centre sits on an edge
        mismatched += int((expected != ds.instances[i]).sum())
        for m in np.flatnonzero(ds.shape_labels[i]):
            where = ds.instances[i] == m + 1
            assert np.all(ds.images[i][where] == ds.colours[i, m])  # the shape's colour, exactly
            assert np.all(ds.masks[i][where] == ds.shape_labels[i, m])
        assert np.all((ds.masks[i] == 0) == (ds.instances[i] == 0))
    assert mismatched <= 3


def test_boxes_are_the_hull_of_each_shapes_visible_pixels(ds):
    for i in range(len(ds)):
        for m in range(ds.shape_labels.shape[1]):
            ys, xs = np.nonzero(ds.instances[i] == m + 1)
            if len(xs) == 0:
                assert np.isnan(ds.boxes[i, m]).all()
            else:
                assert ds.boxes[i, m].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        boxes, labels = ds.boxes_of(i)
        visible = [m for m in range(ds.shape_labels.shape[1]) if (ds.instances[i] == m + 1).any()]
        assert labels.tolist() == ds.shape_labels[i, visible].tolist() and len(boxes) == len(visible)


def test_multi_label_target_is_the_set_of_labels_in_the_mask(ds):
    for i in range(len(ds)):
        present = set(np.unique(ds.masks[i]).tolist()) - {0}
        assert {k + 1 for k in np.flatnonzero(ds.labels[i])} == present


def test_keypoints_are_analytic(single):
    ratios = []
    for i in range(len(single)):
        kind, centre, radius = single.shape_labels[i, 0], single.centres[i, 0], single.radii[i, 0]
        ys, xs = np.nonzero(single.masks[i])
        pixels = np.stack([xs + 0.5, ys + 0.5], axis=1)
        # The centre (a triangle's centroid) is the centre of mass of the shape's pixels.
        np.testing.assert_allclose(pixels.mean(axis=0), centre, atol=0.25)
        corners = single.corners[i, 0]
        present = corners[~np.isnan(corners[:, 0])]
        n_corners = {CIRCLE: 0, SQUARE: 4, TRIANGLE: 3}[kind]
        assert len(present) == n_corners
        # Pixel count against the analytic area: a convex shape holds area +- 0.71 * perimeter
        # pixel centres (an axis-aligned square can gain half a pixel along each side); on
        # average over the shapes, the count is unbiased.
        area, perimeter = {CIRCLE: (np.pi * radius**2, 2 * np.pi * radius),
                           SQUARE: (2 * radius**2, 4 * np.sqrt(2) * radius),
                           TRIANGLE: (3 * np.sqrt(3) / 4 * radius**2, 3 * np.sqrt(3) * radius)}[kind]
        assert abs(len(xs) - area) < 0.71 * perimeter + 2
        ratios.append(len(xs) / area)
        # The farthest pixel from the centre is at the circumradius.
        assert abs(np.hypot(*(pixels - centre).T).max() - radius) < 1.0
        if n_corners:
            np.testing.assert_allclose(np.hypot(*(present - centre).T), radius, rtol=1e-4)
            sides = np.hypot(*(np.roll(present, -1, axis=0) - present).T)
            np.testing.assert_allclose(sides, radius * (np.sqrt(2) if kind == SQUARE else np.sqrt(3)), rtol=1e-4)
            # Each corner is at the shape's tip. A unit grid puts a pixel centre in any disc of
            # radius 0.71; a 60-degree tip of depth d holds a disc of radius d / 3, so the
            # nearest shape pixel is within 2.2 px of the corner (1.8 for a square's 90 degrees).
            near = np.hypot(*(pixels[None] - present[:, None]).transpose(2, 0, 1)).min(axis=1)
            assert near.max() < (1.8 if kind == SQUARE else 2.2)
        points = single.keypoints_of(i)
        assert points.shape == (1 + n_corners, 2)
        np.testing.assert_array_equal(points[0], centre)
        # every shape fits in the image, so every keypoint is inside the frame
        assert np.all((points >= 0) & (points <= single.size))
    assert abs(np.mean(ratios) - 1.0) < 0.01


def test_a_lone_shapes_box_is_its_extent(single):
    for i in range(len(single)):
        ys, xs = np.nonzero(single.masks[i])
        box = single.boxes[i, 0]
        if single.shape_labels[i, 0] == CIRCLE:
            c, r = single.centres[i, 0], single.radii[i, 0]
            np.testing.assert_allclose(box, [c[0] - r, c[1] - r, c[0] + r, c[1] + r], atol=1.0)
        else:
            corners = single.corners[i, 0]
            corners = corners[~np.isnan(corners[:, 0])]
            # a sharp tip can end between pixel centres: up to ~1 px short, plus half a pixel
            np.testing.assert_allclose(box[:2], corners.min(axis=0), atol=1.6)
            np.testing.assert_allclose(box[2:], corners.max(axis=0), atol=1.6)


def test_split_and_fields(ds):
    images, masks = ds.split("valid", field="masks")
    assert np.array_equal(images, ds.images[ds.valid_idx]) and np.array_equal(masks, ds.masks[ds.valid_idx])
    _, labels = ds.split("train")
    assert np.array_equal(labels, ds.labels[ds.train_idx])
    with pytest.raises(ValueError, match=r"shapes: unknown field 'depth'; allowed: labels, masks, instances"):
        ds.split("train", field="depth")
    with pytest.raises(ValueError, match=r"shapes: unknown split 'test'; allowed: train, valid"):
        ds.split("test")
    assert "64 images 48x48x3" in repr(ds)


@pytest.mark.parametrize(("options", "pattern"), [
    ({"n": 0}, r"shapes: n must be an integer >= 1, got 0"),
    ({"n": 2.5}, r"shapes: n must be an integer >= 1, got 2\.5"),
    ({"size": 15}, r"shapes: size must be an integer >= 16, got 15"),
    ({"max_shapes": 9}, r"shapes: max_shapes must be an integer in \[1, 8\], got 9"),
    ({"seed": -1}, r"shapes: seed must be an integer >= 0, got -1"),
    ({"valid_fraction": 1.5}, r"valid_fraction must be in \(0, 1\), got 1\.5"),
])
def test_bad_arguments_name_the_field(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.load("shapes", **{"n": 4, **options})
