"""A CSV of image paths and labels: paths, classes, splits by column, and each bad row."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from torchdeck import data

from ._image_files import pixels, save, text_as_image


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def table(tmp_path):
    """``tmp_path/labels.csv`` listing 8 images under ``tmp_path/img`` (one with a non-ASCII name);
    returns (csv path, {relative path: (pixels, label, is_valid)})."""
    rows = {}
    for k in range(8):
        rel = f"img/café_{k}.png" if k == 3 else f"img/{k}.png"
        rows[rel] = (save(tmp_path / rel, pixels(k)), ["2", "10", "7"][k % 3], "true" if k in (5, 6, 7) else "false")
    path = _write_csv(tmp_path / "labels.csv", ["file", "kind", "is_valid"],
                      [[rel, label, v] for rel, (_, label, v) in rows.items()])
    return path, rows


def test_paths_relative_to_the_csv_and_pixels_exact(table, tmp_path, monkeypatch):
    path, rows = table
    monkeypatch.chdir("/")  # paths resolve from the CSV's folder, not the working directory
    ds = data.image_csv(path, image_column="file", label_column="kind")
    assert isinstance(ds, data.ImageFiles) and ds.name == "labels" and ds.source == str(path)
    assert ds.classes == ("2", "7", "10")  # numbers in numeric order
    for i, p in enumerate(ds.paths):
        image, label, _ = rows[os.path.relpath(p, tmp_path)]
        assert np.array_equal(ds.images[i], image) and ds.classes[ds.labels[i]] == label
    assert [os.path.relpath(p, tmp_path) for p in ds.paths] == list(rows)  # the CSV's order


def test_root_and_absolute_paths(tmp_path):
    save(tmp_path / "pics" / "a.png", pixels(1))
    absolute = save(tmp_path / "elsewhere" / "b.png", pixels(2))
    path = _write_csv(tmp_path / "t.csv", ["image", "label"], [["a.png", "x"], [str(tmp_path / "elsewhere" / "b.png"),
                                                                                "y"]])
    ds = data.image_csv(path, root=tmp_path / "pics")
    assert ds.paths == (str(tmp_path / "pics" / "a.png"), str(tmp_path / "elsewhere" / "b.png"))
    assert np.array_equal(ds.images[1], absolute) and ds.classes == ("x", "y")


def test_split_by_column(table):
    path, rows = table
    ds = data.image_csv(path, image_column="file", label_column="kind", split="column")
    valid = {os.path.basename(ds.paths[i]) for i in ds.valid_idx}
    assert valid == {"5.png", "6.png", "7.png"} and len(ds.train_idx) == 5
    # train / valid words in another column, any case
    with open(path, newline="", encoding="utf-8") as f:
        body = list(csv.reader(f))[1:]
    marks = ["Valid" if v == "true" else "TRAIN" for _, _, v in body]
    other = _write_csv(os.path.join(os.path.dirname(path), "words.csv"), ["file", "kind", "part"],
                       [[r, k, m] for (r, k, _), m in zip(body, marks)])
    again = data.image_csv(other, image_column="file", label_column="kind", split="column", split_column="part")
    assert np.array_equal(again.valid_idx, ds.valid_idx)


def test_random_and_stratified_splits(table):
    path, _ = table
    ds = data.image_csv(path, image_column="file", label_column="kind", valid_fraction=0.25, seed=2)
    ref = data.seeded_split(8, 0.25, 2)
    assert np.array_equal(ds.train_idx, ref[0]) and np.array_equal(ds.valid_idx, ref[1])
    strat = data.image_csv(path, image_column="file", label_column="kind", split="stratified", valid_fraction=0.4)
    assert sorted(strat.labels[strat.valid_idx].tolist()) == [0, 1, 2]


def test_classes_fix_the_order_and_refuse_other_labels(table):
    path, _ = table
    ds = data.image_csv(path, image_column="file", label_column="kind", classes=["7", "10", "2", "unused"])
    assert ds.classes == ("7", "10", "2", "unused")
    assert all(ds.classes[l] == ["2", "10", "7"][k % 3] for k, l in enumerate(ds.labels))
    with pytest.raises(ValueError, match=r"3 bad files: .*img/1\.png: line 3: label '10' is not one of the classes "
                                         r"\(2, 7\)"):
        data.image_csv(path, image_column="file", label_column="kind", classes=["2", "7"])


def test_bad_rows_raise_together_or_are_skipped(tmp_path):
    for k in range(4):
        save(tmp_path / f"{k}.png", pixels(k))
    text_as_image(tmp_path / "fake.jpg")
    rows = [["0.png", "a"], ["1.png", "b"], ["missing.png", "a"], ["", "b"], ["2.png", ""], ["fake.jpg", "a"],
            ["3.png", "b"]]
    path = _write_csv(tmp_path / "t.csv", ["image", "label"], rows)
    with pytest.raises(ValueError, match=r"image_csv '.*t\.csv': 3 bad files: .*missing\.png: line 4: file not found "
                                         r"\(relative to .*\); .*t\.csv line 5: no image path in column 'image'; "
                                         r".*2\.png: line 6: no label in column 'label'\. Fix or remove them"):
        data.image_csv(path)
    with pytest.warns(data.SkippedFilesWarning, match=r"skipped 4 bad files and kept 3 samples"):
        ds = data.image_csv(path, on_error="skip")
    assert [os.path.basename(p) for p in ds.paths] == ["0.png", "1.png", "3.png"]
    assert [os.path.basename(p) for p, _ in ds.skipped] == ["missing.png", "t.csv line 5", "2.png", "fake.jpg"]
    assert "not an image" in ds.skipped[-1][1]


def test_labels_only_in_valid_rows(tmp_path):
    for k in range(4):
        save(tmp_path / f"{k}.png", pixels(k))
    path = _write_csv(tmp_path / "t.csv", ["image", "label", "is_valid"],
                      [["0.png", "a", "0"], ["1.png", "b", "0"], ["2.png", "a", "1"], ["3.png", "c", "1"]])
    with pytest.raises(ValueError, match=r"1 bad file: .*3\.png: line 5: label 'c' is in no train row, so the model "
                                         r"would never learn it"):
        data.image_csv(path, split="column")
    with pytest.warns(data.SkippedFilesWarning):
        ds = data.image_csv(path, split="column", on_error="skip")
    assert ds.classes == ("a", "b") and len(ds.valid_idx) == 1


def test_bad_split_values_name_the_lines(tmp_path):
    save(tmp_path / "0.png", pixels(0))
    save(tmp_path / "1.png", pixels(1))
    path = _write_csv(tmp_path / "t.csv", ["image", "label", "is_valid"], [["0.png", "a", "maybe"],
                                                                           ["1.png", "b", "0"]])
    with pytest.raises(ValueError, match=r"split column 'is_valid' must mark each row train or valid; 1 rows do not "
                                         r"\(line 2 holds 'maybe'\); allowed \(any case\): 0, 0\.0, f, false"):
        data.image_csv(path, split="column")


@pytest.mark.parametrize(("content", "kwargs", "pattern"), [
    ("", {}, r"image_csv: '.*t\.csv' is empty; expected a header row"),
    ("image,label\n", {}, r"has a header \(image, label\) but no data rows"),
    ("image,label\n0.png,a,extra\n", {}, r"t\.csv' line 2: 3 values, the header has 2 columns"),
    ("image,image\n0.png,a\n", {}, r"the header names column 'image' twice"),
    ("file,label\n0.png,a\n", {}, r"image_csv: image_column: '.*' has no column 'image'; columns: file, label"),
    ("image,label\n0.png,a\n", {"split": "column"}, r"split_column: .* has no column 'is_valid'; columns: image, "
                                                     r"label"),
    ("image,label\n0.png,a\n0.png,a\n", {}, r"has 1 distinct label \(a\) in column 'label'; classification needs at "
                                            r"least two"),
    ("image,label\n0.png,a\n", {"classes": ["a"]}, r"classes must be a list of at least two distinct names"),
    ("image,label\n0.png,a\n", {"split": "folder"}, r"split must be one of 'random', 'stratified', 'column'"),
])
def test_malformed_files_and_arguments(tmp_path, content, kwargs, pattern):
    save(tmp_path / "0.png", pixels(0))
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(ValueError, match=pattern):
        data.image_csv(tmp_path / "t.csv", **kwargs)


def test_missing_csv_and_registry(tmp_path, table):
    with pytest.raises(ValueError, match=r"image_csv: path: file not found: '.*nope\.csv'"):
        data.image_csv(tmp_path / "nope.csv")
    path, _ = table
    ds = data.load("image_csv", path=str(path), image_column="file", label_column="kind", size=4)
    assert ds.images.shape == (8, 4, 4, 3)
