"""Multi-label images from a CSV (``"cat dog"`` label cells), and options ``data.load`` refuses."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch

from torchdeck import data, tasks

from ._image_files import pixels, save

# image -> its label cell; sets are written in varied order, with repeats and extra spaces
LABELS = {"a.png": "cat dog", "b.png": "dog", "c.png": "", "d.png": "bird  cat", "e.png": "dog dog cat",
          "f.png": "bird", "g.png": "cat", "h.png": "bird dog"}


def _folder(tmp_path, labels=LABELS, valid=("g.png", "h.png"), size=(12, 12)):
    rows = []
    for k, (name, cell) in enumerate(labels.items()):
        save(tmp_path / "img" / name, pixels(k, *size))
        rows.append([f"img/{name}", cell, "1" if name in valid else "0"])
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "tags", "is_valid"])
        w.writerows(rows)
    return path


def test_label_cells_become_multi_hot_rows(tmp_path):
    path = _folder(tmp_path)
    ds = data.image_csv(path, label_column="tags", label_delimiter=" ", split="column")
    assert ds.classes == ("bird", "cat", "dog") and ds.multilabel
    assert ds.labels.dtype == np.float32 and ds.labels.shape == (8, 3)
    for i, p in enumerate(ds.paths):
        expected = {x for x in LABELS[os.path.basename(p)].split(" ") if x}  # the cell, as a set, read by hand
        assert {c for c, y in zip(ds.classes, ds.labels[i]) if y == 1.0} == expected
        assert set(np.unique(ds.labels[i])) <= {0.0, 1.0}
    assert [os.path.basename(ds.paths[i]) for i in ds.valid_idx] == ["g.png", "h.png"]
    np.testing.assert_array_equal(ds.images[0], pixels(0, 12, 12))


def test_classes_fix_the_columns_and_refuse_others(tmp_path):
    path = _folder(tmp_path)
    ds = data.image_csv(path, label_column="tags", label_delimiter=" ", classes=["dog", "cat", "bird"])
    assert ds.classes == ("dog", "cat", "bird")
    a = [os.path.basename(p) for p in ds.paths].index("a.png")
    np.testing.assert_array_equal(ds.labels[a], [1, 1, 0])
    with pytest.raises(ValueError, match=r"label 'bird' is not one of the classes \(dog, cat\)"):
        data.image_csv(path, label_column="tags", label_delimiter=" ", classes=["dog", "cat"])


@pytest.mark.parametrize("kwargs,pattern", [
    ({"label_delimiter": ""}, r"label_delimiter must be null or a non-empty string .*got ''"),
    ({"label_delimiter": ","}, r"label_delimiter must be .* other than the cell delimiter ','"),
    ({"label_delimiter": " ", "split": "stratified"}, r"split='stratified' needs one label per image"),
])
def test_bad_multilabel_options(tmp_path, kwargs, pattern):
    with pytest.raises(ValueError, match=rf"image_csv: {pattern}"):
        data.image_csv(_folder(tmp_path), label_column="tags", **kwargs)


def test_a_class_only_valid_rows_have_is_a_bad_row(tmp_path):
    path = _folder(tmp_path, labels={**LABELS, "h.png": "bird fish"})
    with pytest.raises(ValueError, match=r"label 'fish' is in no train row"):
        data.image_csv(path, label_column="tags", label_delimiter=" ", split="column")


def test_multilabel_task_trains_on_the_csv(tmp_path):
    path = _folder(tmp_path)
    ds = data.image_csv(path, label_column="tags", label_delimiter=" ", split="column")
    task = tasks.get("multilabel-classification")(ds, size=8)
    x, y = task.loaders(4)["train"].x, task.loaders(4)["train"].y
    assert x.shape == (6, 3, 8, 8) and torch.equal(y, torch.from_numpy(ds.labels[ds.train_idx]))
    grid = task.show_batch(8, split="train")
    assert grid.captions[2] == "(none)"  # c.png: no class
    report = tasks.check(task, backbone="small_cnn")  # raises TaskCheckError on a failing step
    assert report.output_shape == (4, 3)
    with pytest.raises(ValueError, match=r"image-classification: 'labels' has a set of labels per image"):
        tasks.get("image-classification")(ds)


def test_single_label_csv_is_refused_by_multilabel(tmp_path):
    path = _folder(tmp_path, labels={k: v or "cat" for k, v in LABELS.items()})
    ds = data.image_csv(path, label_column="tags")
    assert not ds.multilabel
    with pytest.raises(ValueError, match=r"has one label per image; use image-classification"):
        tasks.get("multilabel-classification")(ds)


@pytest.mark.parametrize("name,key", [("digits", "size"), ("shapes", "classes"), ("iris", "path")])
def test_load_refuses_an_unknown_option_naming_the_allowed(name, key):
    with pytest.raises(ValueError, match=rf"data.load\('{name}'\): unknown option '{key}'; allowed: .*seed"):
        data.load(name, **{key: 1})
