"""The data panel: every task with every data it declares renders and edits the spec; paths
are read under the data root only; refused choices leave the spec as it was and say why."""

from __future__ import annotations

import csv
import datetime
import html
import io
import os
import re
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from torchdeck import data, tasks
from torchdeck.spec import Experiment
from torchdeck.tasks import Task
from torchdeck.widgets._data_panel import FOLDER, DataPanel, task_description
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


# -- uploads -------------------------------------------------------------------------------------
def _zip(entries: dict) -> bytes:
    """A zip of ``name -> bytes`` (or a ZipInfo -> bytes for entries a plain name cannot make)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return buf.getvalue()


def _png_bytes(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 10, 3), rgb, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _class_zip(counts: dict[str, int], top: str = "") -> tuple[bytes, dict[tuple, str]]:
    """A zip of a folder per class of solid-colour PNGs (under ``top/`` when given); colour -> class."""
    entries, colours = {}, {}
    for c, name in enumerate(counts):
        for k in range(counts[name]):
            rgb = (40 + 60 * c, 10 + 20 * k, 200)
            entries[f"{top}{name}/{k}.png"] = _png_bytes(rgb)
            colours[rgb] = name
    return _zip(entries), colours


def _send(panel, name: str, content: bytes) -> None:
    """What the browser does: the FileUpload widget's value becomes the file."""
    panel.upload.value = ({"name": name, "type": "application/zip", "size": len(content),
                           "content": memoryview(content),
                           "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def _leftovers(root) -> list[str]:
    """Staging folders left under uploads/ (there should be none once an upload is done)."""
    folder = root / "uploads"
    return sorted(n for n in os.listdir(folder) if n.startswith(".")) if folder.exists() else []


def test_an_uploaded_zip_of_class_folders_becomes_the_data(panel, tmp_path):
    counts = {"cat": 5, "dog": 3}
    content, colours = _class_zip(counts, top="my pets/")  # a zipped folder: unpacked without it
    panel.source.value = "upload"
    assert panel.upload_row.layout.display is None and panel.data_picker.layout.display == "none"
    _send(panel, "my pets.zip", content)
    assert panel.message.value == "", panel.message.value
    assert panel.upload.value == ()  # emptied: the kernel does not keep the file
    spec = panel.state.spec
    folder = os.path.realpath(tmp_path / "uploads" / "my_pets")
    assert spec.data.name == "image_folder" and spec.data.options["root"] == folder
    assert sorted(os.listdir(folder)) == ["cat", "dog"] and _leftovers(tmp_path) == []
    task = panel.state.task()
    assert task.classes == ("cat", "dog") and len(task.data) == sum(counts.values())
    # the grid: each shown tile is one uploaded image, a solid 64x64 block of its colour
    grid = np.asarray(Image.open(io.BytesIO(panel.samples.value)))
    found, seen = np.unique(grid.reshape(-1, 3), axis=0, return_counts=True)
    tiles = {tuple(int(v) for v in c): n for c, n in zip(found, seen) if tuple(int(v) for v in c) in colours}
    assert len(tiles) == 4 and set(tiles.values()) == {64 * 64}
    # the balance: the training files counted by the folder they came from in the zip
    train_folders = [os.path.basename(os.path.dirname(task.data.paths[i])) for i in task.data.train_idx]
    assert _numbers(panel.balance.value, "samples") == [train_folders.count(c) for c in ("cat", "dog")]
    assert "uploads/my_pets" in panel.summary.value and "cat, dog" in panel.summary.value
    assert panel.source.value == "upload"  # the upload stays the source it came from
    assert panel.path.value == os.path.join("uploads", "my_pets")


def test_reuploading_a_name_replaces_it_and_a_refused_one_keeps_the_last(panel, tmp_path):
    assert panel.load_upload("pets.zip", _class_zip({"a": 3, "b": 3})[0])
    assert panel.load_upload("pets.zip", _class_zip({"a": 2, "b": 4, "c": 2})[0]), panel.message.value
    folder = tmp_path / "uploads" / "pets"
    assert sorted(os.listdir(folder)) == ["a", "b", "c"] and sorted(os.listdir(folder / "a")) == ["0.png", "1.png"]
    assert panel.state.task().classes == ("a", "b", "c")  # read anew, though the spec is the same
    assert len(panel.state.task().data) == 8
    assert re.findall(r"(\d+) samples", panel.balance.value).__len__() == 3
    before = panel.state.spec
    broken = _zip({"a/0.png": _png_bytes((1, 2, 3)), "a/1.png": b"not a png", "b/0.png": _png_bytes((4, 5, 6))})
    assert not panel.load_upload("pets.zip", broken)
    assert re.search(r"1 bad file.*pets/a/1\.png", panel.message.value), panel.message.value
    assert panel.state.spec is before
    assert sorted(os.listdir(folder)) == ["a", "b", "c"] and _leftovers(tmp_path) == []  # the last upload is back
    assert panel.state.task().classes == ("a", "b", "c")


@pytest.mark.parametrize("entry,pattern", [
    ("../../../evil.png", r"climbs out with '\.\.'"),
    ("ok/..\\..\\..\\evil.png", r"climbs out with '\.\.'"),
    ("{abs}", r"an absolute path"),
    ("C:/evil.png", r"an absolute path"),
    ("link", r"a symbolic link"),
])
def test_entries_that_could_leave_the_root_are_refused(tmp_path, entry, pattern):
    root = tmp_path / "root"
    root.mkdir()
    panel = DataPanel(StudioState(Experiment()), samples=4, data_root=root)
    target = tmp_path / "evil.png"
    name = entry.format(abs=os.fspath(target))
    info = zipfile.ZipInfo(name)
    if entry == "link":  # a symbolic link to a file outside, as `zip --symlinks` stores it
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buf = io.BytesIO(_class_zip({"a": 2, "b": 2})[0])  # good data, and one bad entry after it
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr(info, os.fspath(target) if entry == "link" else _png_bytes((9, 9, 9)))
    before = panel.state.spec
    assert not panel.load_upload("evil.zip", buf.getvalue())
    shown = html.unescape(panel.message.value)
    assert re.search(pattern, shown) and "'evil.zip'" in shown, shown
    assert panel.state.spec is before
    assert sorted(os.listdir(tmp_path)) == ["root"]  # nothing written beside the root
    assert os.listdir(root / "uploads") == []  # nor under it



def test_uploads_over_the_limits_are_refused_with_the_limit(tmp_path):
    panel = DataPanel(StudioState(Experiment()), samples=4, data_root=tmp_path, max_upload_files=5,
                      max_upload_bytes=4000)
    content, _ = _class_zip({"a": 3, "b": 3})
    assert not panel.load_upload("many.zip", content)
    assert re.search(r"holds 6 files.*the limits are 5 files and 4000 bytes", html.unescape(panel.message.value))
    big = _zip({"a/0.png": _png_bytes((1, 1, 1)), "b/0.png": bytes(5000)})
    assert not panel.load_upload("big.zip", big)
    assert re.search(r"holds 2 files, \d+ bytes unpacked; the limits are 5 files and 4000 bytes",
                     panel.message.value)
    assert panel.state.spec.data.name == "digits" and os.listdir(tmp_path / "uploads") == []
    for field, value in (("max_upload_files", 0), ("max_upload_bytes", 1.5)):
        with pytest.raises(ValueError, match=rf"{field} must be a positive integer, got {value!r}"):
            DataPanel(StudioState(Experiment()), data_root=tmp_path, **{field: value})


def test_a_corrupt_zip_or_a_wrong_layout_is_refused_and_the_spec_kept(panel, tmp_path):
    before = panel.state.spec
    good, _ = _class_zip({"a": 2, "b": 2})
    for name, content, pattern in [
        ("junk.zip", b"PK\x03\x04 this is no zip", r"'junk\.zip' is not a readable zip file"),
        ("cut.zip", good[: len(good) // 2], r"'cut\.zip' is not a readable zip file"),
        ("notes.txt", b"hello", r"'notes\.txt' is a \.txt; allowed: \.zip, \.csv"),
        ("table.csv", b"a,b\n1,2\n", r"image-classification reads images; upload a \.zip"),
    ]:
        assert not panel.load_upload(name, content)
        assert re.search(pattern, html.unescape(panel.message.value)), panel.message.value
        assert panel.state.spec is before
    panel.task_picker.value = "segmentation"
    before = panel.state.spec
    assert not panel.load_upload("classes.zip", good)  # a folder per class is no images/ + masks/
    shown = html.unescape(panel.message.value)
    assert "upload 'classes.zip'" in shown and "must be a folder holding images/ and masks/" in shown
    assert os.fspath(tmp_path / "uploads" / "classes") in shown  # the place it would have had, not a temp one
    assert panel.state.spec is before and os.listdir(tmp_path / "uploads") == []


def _zip_folder(folder) -> bytes:
    entries = {}
    for dirpath, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(dirpath, n)
            with open(path, "rb") as f:
                entries[os.path.relpath(path, folder)] = f.read()
    return _zip(entries)


@pytest.mark.parametrize("task_name,make,data_name,option", [
    ("multilabel-classification", _multilabel_csv, "image_csv", "path"),  # images and one CSV at the top
    ("segmentation", _mask_folder, "image_mask_folder", "images_dir"),  # images/ + masks/
])
def test_other_layouts_upload_as_their_folder_would_load(panel, tmp_path, task_name, make, data_name, option):
    scratch = tmp_path / "scratch"
    rel = make(scratch)
    panel.task_picker.value = task_name
    assert panel.load_upload("mine.zip", _zip_folder(scratch / rel.split("/")[0])), panel.message.value
    spec = panel.state.spec
    folder = os.path.realpath(tmp_path / "uploads" / "mine")
    inside = os.path.normpath(os.path.join(folder, os.path.relpath(rel, rel.split("/")[0])))
    expected = tasks.get(task_name).data_from_path(inside)
    assert (spec.data.name, dict(spec.data.options)) == expected and spec.data.name == data_name
    assert spec.data.options[option].startswith(folder)
    assert _png_shape(panel.samples.value)[2] == 3 and panel.balance.value


def _table_csv(path, rows: int = 30) -> list[list[str]]:
    g = np.random.default_rng(0)
    body = [[f"{g.normal():.3f}", str(g.choice(["red", "blue"])), ["setosa", "versicolor", "virginica"][k % 3]]
            for k in range(rows)]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["length", "colour", "species"], *body])
    return body


def test_a_csv_upload_for_a_table_waits_for_its_target_column(panel, tmp_path):
    panel.task_picker.value = "tabular-classification"
    rows = _table_csv(tmp_path / "flowers.csv")
    content = (tmp_path / "flowers.csv").read_bytes()
    before = panel.state.spec
    assert panel.load_upload("flowers.csv", content)
    assert panel.state.spec is before  # nothing applied before the target is picked
    assert panel.target_row.layout.display is None
    assert list(panel.target.options) == ["length", "colour", "species"] and panel.target.value == "species"
    assert not panel.use_table("length")  # a continuous target: tabular-regression's, refused
    assert "continuous" in html.unescape(panel.message.value) and panel.state.spec is before
    panel.target.value = "species"
    panel.use_table_button.click()  # the refusal kept the upload: another target may do
    path = os.path.realpath(tmp_path / "uploads" / "flowers" / "flowers.csv")
    spec = panel.state.spec
    assert (spec.data.name, dict(spec.data.options)) == ("csv", {"path": path, "target": "species"})
    assert open(path, "rb").read() == content and _leftovers(tmp_path) == []
    assert panel.message.value == "" and panel.target_row.layout.display == "none"
    assert panel.table.layout.display is None
    cells = re.findall(r"<td>(.*?)</td>", panel.table.value)
    task = panel.state.task()
    first = rows[int(task.data.train_idx[0])]
    assert cells[:3] == [f"{float(first[0]):.4g}", first[1], first[2]]
    train = [rows[int(i)][2] for i in task.data.train_idx]
    assert _numbers(panel.balance.value, "samples") == [train.count(c) for c in ("setosa", "versicolor", "virginica")]
    spec.to_yaml(tmp_path / "run.yaml")  # the run reproduces from the file the spec names
    rebuilt = Experiment.from_yaml(tmp_path / "run.yaml").build_task()
    np.testing.assert_array_equal(rebuilt.data.targets, task.data.targets)


def test_a_csv_under_the_root_offers_its_columns_to_a_table_task(panel, tmp_path):
    panel.task_picker.value = "tabular-regression"
    _table_csv(tmp_path / "t.csv")
    assert panel.load_path("t.csv")
    panel.target.value = "length"
    assert panel.use_table()
    assert dict(panel.state.spec.data.options) == {"path": os.path.realpath(tmp_path / "t.csv"),
                                                    "target": "length"}
    class_tree(tmp_path / "pics", {"a": 2, "b": 2})
    assert not panel.load_upload("pics.zip", _zip_folder(tmp_path / "pics"))  # no CSV in it
    assert "reads one .csv file" in panel.message.value


def test_the_description_follows_the_task(panel):
    shown = {}
    for name in tasks.available():
        panel.task_picker.value = name
        text = html.unescape(re.sub(r"<[^>]+>", "", panel.description.value))
        doc = re.sub(r":\w+:", "", (tasks.get(name).__doc__ or "").strip().split("\n\n")[0])  # :class: markup
        assert text.startswith(f"{name}: ")
        assert set(re.findall(r"[A-Za-z]{4,}", doc)) <= set(re.findall(r"[A-Za-z]{4,}", text))
        shown[name] = text
    assert len(set(shown.values())) == len(shown)

    class Described(Task):
        description = "Reads what it says."

    class Undocumented(Task):
        pass

    assert task_description(Described) == "Reads what it says."
    assert task_description(Undocumented) == ""  # not the base class's docstring
