"""The data panel: every task with every data it declares renders and edits the spec; paths
are read under the data root only; refused choices leave the spec as it was and say why."""

from __future__ import annotations

import csv
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from torchdeck import data, tasks
from torchdeck.spec import Experiment
from torchdeck.widgets._data_panel import FOLDER, DataPanel
from torchdeck.widgets._state import StudioState

from tests.data._image_files import class_tree, pixels, save, text_as_image

PAIRS = [(t, label) for t in tasks.available() for label in tasks.get(t).builtin_data]


@pytest.fixture
def panel(tmp_path):
    return DataPanel(StudioState(Experiment()), samples=4, data_root=tmp_path)


def _png_shape(png: bytes) -> tuple[int, ...]:
    return np.asarray(Image.open(io.BytesIO(png))).shape


def _numbers(html_text: str, unit: str) -> list[int]:
    return [int(n) for n in re.findall(rf"(\d+) {unit}", html_text)]


def test_every_task_declares_data_it_can_read():
    assert {t for t, _ in PAIRS} == set(tasks.available())


@pytest.mark.parametrize("task_name,label", PAIRS)
def test_every_task_and_its_data_render_and_edit_the_spec(panel, task_name, label):
    panel.task_picker.value = task_name
    panel.data_picker.value = label
    spec = panel.state.spec
    name, options = tasks.get(task_name).builtin_data[label]
    assert (spec.task.name, spec.data.name, spec.data.options) == (task_name, name, dict(options))
    assert panel.message.value == "" and panel.state.error == ""
    task = panel.state.task()
    inputs, targets = task.samples("train")
    if task.blocks[0] == "table":
        assert panel.samples.layout.display == "none" and panel.table.layout.display is None
        first = inputs.row(0)
        cells = re.findall(r"<td>(.*?)</td>", panel.table.value)
        assert len(cells) == 4 * (len(first) + 1)  # 4 rows of the columns and the target
        assert cells[0] == f"{first[inputs.names[0]]:.4g}"
        assert spec.model.backbone == "tabular_mlp"  # tables need a backbone that reads them
    else:
        assert panel.table.layout.display == "none"
        h, w, c = _png_shape(panel.samples.value)
        assert c == 3 and h > 0 and w > 0
        assert spec.model.backbone == "small_cnn"
    # the balance, recounted here from the training targets
    balance = panel.balance.value
    if task.blocks[1] == "label":
        assert _numbers(balance, "samples") == np.bincount(np.asarray(targets), minlength=len(task.classes)).tolist()
    elif task.blocks[1] == "labels":
        assert _numbers(balance, "images") == np.asarray(targets).sum(axis=0).astype(int).tolist()
    elif task.blocks[1] == "mask":
        share = np.bincount(np.asarray(targets).ravel(), minlength=len(task.classes)) / np.asarray(targets).size
        shown = [float(x) for x in re.findall(r"([\d.]+) %", balance)]
        np.testing.assert_allclose(shown, 100 * share, atol=0.051)
    elif task.blocks[1] == "number":
        counts, _ = np.histogram(np.asarray(targets, float), bins=8)
        assert _numbers(balance, "rows") == counts.tolist()
    else:
        assert "point 0" in balance


def test_switching_back_to_images_gives_an_image_backbone(panel):
    panel.task_picker.value = "tabular-regression"
    assert panel.state.spec.model.backbone == "tabular_mlp"
    panel.task_picker.value = "segmentation"
    spec = panel.state.spec
    assert (spec.model.backbone, spec.data.name) == ("small_cnn", "shapes")
    model = panel.state.task().build_model(spec.model.backbone, spec.model.options)  # the backbone fits the task
    assert model(panel.state.task().encode_inputs(panel.state.task().samples("train")[0][:2])).shape == (2, 4, 64, 64)


def _multilabel_csv(root):
    cells = {"a.png": "cat dog", "b.png": "dog", "c.png": "cat", "d.png": "", "e.png": "dog cat"}
    for k, name in enumerate(cells):
        save(root / "ml" / name, pixels(k, 10, 10))
    with open(root / "ml" / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label"])
        w.writerows([[n, c] for n, c in cells.items()])
    return "ml/labels.csv"


def _mask_folder(root):
    for k in range(5):
        save(root / "seg" / "images" / f"{k}.png", pixels(k, 12, 12))
        mask = np.zeros((12, 12), np.uint8)
        mask[k:k + 4, 2:8] = 1 + k % 2
        save(root / "seg" / "masks" / f"{k}.png", mask)
    return "seg"


@pytest.mark.parametrize("task_name,make,data_name", [
    ("image-classification", lambda root: (class_tree(root / "pets", {"cat": 4, "dog": 4}), "pets")[1],
     "image_folder"),
    ("multilabel-classification", _multilabel_csv, "image_csv"),
    ("segmentation", _mask_folder, "image_mask_folder"),
])
def test_a_folder_under_the_root_becomes_the_data(panel, tmp_path, task_name, make, data_name):
    panel.task_picker.value = task_name
    rel = make(tmp_path)
    panel.source.value = FOLDER
    assert panel.data_picker.layout.display == "none" and panel.path_row.layout.display is None
    assert panel.load_path(rel), panel.message.value
    spec = panel.state.spec
    assert spec.data.name == data_name and spec.task.name == task_name
    task = panel.state.task()
    assert task.data.images.shape[1:3] == (64, 64)  # read at the picker's size
    assert _png_shape(panel.samples.value)[2] == 3
    assert panel.balance.value
    if task_name == "multilabel-classification":
        np.testing.assert_array_equal(task.data.labels.sum(axis=0), [3, 3])  # cat, dog: counted from the cells
    panel.refresh()
    assert panel.path.value.startswith(rel.split("/")[0])


def _refused(panel, path, pattern):
    before = panel.state.spec
    assert not panel.load_path(path)
    assert panel.state.spec is before
    assert re.search(pattern, panel.message.value), panel.message.value


def test_paths_outside_the_root_are_refused(panel, tmp_path):
    outside = tmp_path.parent / "elsewhere"
    class_tree(outside, {"a": 2, "b": 2})
    _refused(panel, "../elsewhere", r"outside the data root")
    _refused(panel, os.fspath(outside), r"outside the data root")
    os.symlink(outside, tmp_path / "link")  # a link inside the root that leads out of it
    _refused(panel, "link", r"outside the data root")
    _refused(panel, "missing", r"does not exist under the data root")
    _refused(panel, "  ", r"give a folder or CSV file")


def test_broken_or_incompatible_data_shows_an_error_and_keeps_the_spec(panel, tmp_path):
    class_tree(tmp_path / "broken", {"a": 2, "b": 2})
    text_as_image(tmp_path / "broken" / "a" / "bad.jpg")
    _refused(panel, "broken", r"data.options: image_folder .*1 bad file.*bad\.jpg")
    assert panel.state.error  # the state says it too: the Studio shows it on top
    class_tree(tmp_path / "one_class", {"a": 3})
    _refused(panel, "one_class", r"classification needs at least two")
    panel.task_picker.value = "keypoint-regression"
    _refused(panel, "one_class", r"keypoint-regression: reads no data from a path")
    panel.task_picker.value = "multilabel-classification"
    _refused(panel, "one_class", r"is not a \.csv file")
    panel.task_picker.value = "segmentation"
    _refused(panel, "one_class", r"must be a folder holding images/ and masks/")
    assert panel.state.spec.data.name == "shapes"
