"""What data each task declares it reads (built-in sets, paths), and dense tasks on files."""

from __future__ import annotations

import numpy as np
import pytest

from torchdeck import data, tasks

from tests.data._image_files import class_tree, pixels, save


@pytest.mark.parametrize("task_name", tasks.available())
def test_every_declared_data_set_builds_the_task(task_name):
    cls = tasks.get(task_name)
    assert cls.builtin_data, f"{task_name} declares no data"
    for label, (name, options) in cls.builtin_data.items():
        assert name in data.available(), (label, name)
        small = {"n": 24, "size": 16} if name == "shapes" else {}
        task = cls(data.load(name, **{**options, **small}))
        assert len(task.samples("train")[1]) > 0


def _mask_folder(root, n=6, h=12, w=12):
    for k in range(n):
        save(root / "images" / f"{k}.png", pixels(k, h, w))
        mask = np.zeros((h, w), np.uint8)
        mask[k % 4:k % 4 + 5, 3:9] = 1 + k % 2
        save(root / "masks" / f"{k}.png", mask)


def test_segmentation_reads_images_with_masks_from_files(tmp_path):
    _mask_folder(tmp_path)
    name, options = tasks.get("segmentation").data_from_path(str(tmp_path))
    assert name == "image_mask_folder"
    ds = data.load(name, **{**options, "size": None})
    task = tasks.get("segmentation")(ds)
    assert task.classes == ("0", "1", "2")
    report = tasks.check(task, backbone="small_cnn")
    assert report.output_shape == (4, 3, 12, 12)
    # the masks read from the files are the targets, pixel for pixel
    _, masks = task.samples("train")
    np.testing.assert_array_equal(task.encode_targets(masks).numpy(), ds.masks[ds.train_idx])
    overlay = task.show_batch(2).images
    assert overlay.shape == (2, 12, 12, 3)


def test_non_square_files_need_a_size(tmp_path):
    _mask_folder(tmp_path, h=12, w=16)
    ds = data.image_mask_folder(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(ValueError, match=r"segmentation: 'images' images are 12x16; give size"):
        tasks.get("segmentation")(ds)
    assert tasks.get("segmentation")(ds, size=16).encode_inputs(ds.images[:1]).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("task_name,pattern", [
    ("image-classification", r"is neither a folder .* nor a \.csv file"),
    ("multilabel-classification", r"is not a \.csv file"),
    ("segmentation", r"must be a folder holding images/ and masks/"),
    ("keypoint-regression", r"reads no data from a path"),
    ("tabular-classification", r"reads no data from a path .*pick one of its built-in data sets: iris, wine"),
])
def test_paths_a_task_cannot_read_are_refused(tmp_path, task_name, pattern):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=rf"{task_name}: .*{pattern}"):
        tasks.get(task_name).data_from_path(str(tmp_path / "notes.txt"))


def test_a_class_folder_reads_as_image_classification(tmp_path):
    class_tree(tmp_path, {"a": 2, "b": 2})
    assert tasks.get("image-classification").data_from_path(str(tmp_path)) == (
        "image_folder", {"root": str(tmp_path), "size": 64})
