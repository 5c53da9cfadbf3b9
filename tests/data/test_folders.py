"""Image folders: decoded pixels against what was written, class mapping, splits, errors, skip
reports, the registry and spec, and training the image-classification task on a folder."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from torchdeck import Experiment, SpecError, data, tasks
from torchdeck import optim as O
from torchdeck.train import Learner

from ._image_files import class_tree, pixels, save, text_as_image, truncated_png


def _by_path(ds):
    return {p: ds.images[i] for i, p in enumerate(ds.paths)}


def test_png_pixels_exact_and_classes_are_sorted_folder_names(tmp_path):
    written = class_tree(tmp_path, {"zebra": 3, "ant": 2, "moose": 4})
    # A nested folder counts for its class; hidden files, other extensions and __MACOSX do not.
    written[str(tmp_path / "ant" / "more" / "x.PNG")] = save(tmp_path / "ant" / "more" / "x.PNG", pixels(7))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    save(tmp_path / "ant" / ".hidden.png", pixels(8))
    save(tmp_path / "__MACOSX" / "junk.png", pixels(9))

    ds = data.image_folder(tmp_path)
    assert isinstance(ds, data.ImageDataset) and ds.classes == ("ant", "moose", "zebra")
    assert ds.images.shape == (10, 8, 10, 3) and ds.images.dtype == np.uint8 and ds.labels.dtype == np.int64
    assert set(ds.paths) == set(written)
    for path, image in _by_path(ds).items():
        assert np.array_equal(image, written[path]), path
    for path, label in zip(ds.paths, ds.labels):
        assert ds.classes[label] == os.path.relpath(path, tmp_path).split(os.sep)[0]
    assert ds.skipped == () and ds.source == str(tmp_path) and ds.name == tmp_path.name
    image, label = ds[3]
    assert np.array_equal(image, ds.images[3]) and label == ds.labels[3]
    assert "3 classes" in repr(ds) and "10 images 8x10x3" in repr(ds)


def test_image_modes_become_rgb(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (6, 7), dtype=np.uint8)
    save(tmp_path / "a" / "grey.png", grey)
    palette = np.random.default_rng(2).integers(0, 256, (256, 3), dtype=np.uint8)
    idx = np.random.default_rng(3).integers(0, 256, (6, 7), dtype=np.uint8)
    p = Image.fromarray(idx, mode="P")
    p.putpalette(palette.tobytes())
    p.save(tmp_path / "a" / "palette.png")
    rgba = np.random.default_rng(4).integers(0, 256, (6, 7, 4), dtype=np.uint8)
    save(tmp_path / "b" / "rgba.png", rgba)
    deep = np.random.default_rng(5).integers(0, 65536, (6, 7), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "b" / "deep.png")

    got = _by_path(data.image_folder(tmp_path))
    expected = {"grey.png": np.repeat(grey[..., None], 3, axis=2), "palette.png": palette[idx],
                "rgba.png": rgba[..., :3], "deep.png": np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, axis=2)}
    for path, image in got.items():
        assert np.array_equal(image, expected[os.path.basename(path)]), path


def test_jpeg_is_close_and_exif_orientation_is_applied(tmp_path):
    smooth = np.zeros((16, 24, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 24, dtype=np.uint8)[None]
    smooth[..., 2] = 128
    save(tmp_path / "a" / "photo.jpg", smooth, quality=95)
    # Orientation 6: the stored pixels are shown turned 90 degrees clockwise.
    stored = pixels(11, 6, 9)
    exif = Image.Exif()
    exif[0x0112] = 6
    save(tmp_path / "b" / "turned.png", stored, exif=exif)
    jpeg = data.read_image(tmp_path / "a" / "photo.jpg")
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 3
    assert np.array_equal(data.read_image(tmp_path / "b" / "turned.png"), np.rot90(stored, k=-1))
    # The folder reads each file the same way; the turned image now is 9x6, so they need a size.
    assert data.image_folder(tmp_path, size=[9, 6]).images.shape == (2, 9, 6, 3)


def test_size_squish_and_crop(tmp_path):
    stripes = np.zeros((10, 30, 3), np.uint8)
    stripes[:, :10] = (255, 0, 0)
    stripes[:, 10:20] = (0, 0, 255)
    stripes[:, 20:] = (0, 255, 0)
    save(tmp_path / "a" / "stripes.png", stripes)
    save(tmp_path / "b" / "flat.png", np.full((20, 4, 3), 77, np.uint8))

    crop = _by_path(data.image_folder(tmp_path, size=10, fit="crop"))
    # The centred square of a 10x30 image is exactly the blue stripe; a flat image stays flat.
    assert np.array_equal(crop[str(tmp_path / "a" / "stripes.png")], np.broadcast_to([0, 0, 255], (10, 10, 3)))
    assert np.array_equal(crop[str(tmp_path / "b" / "flat.png")], np.full((10, 10, 3), 77))
    squish = data.image_folder(tmp_path, size=[6, 9])
    assert squish.images.shape == (2, 6, 9, 3)
    s = _by_path(squish)[str(tmp_path / "a" / "stripes.png")]
    assert tuple(s[3, 0]) == (255, 0, 0) and tuple(s[3, 4]) == (0, 0, 255) and tuple(s[3, 8]) == (0, 255, 0)


def test_sizes_that_differ_need_size(tmp_path):
    save(tmp_path / "a" / "1.png", pixels(1, 8, 10))
    save(tmp_path / "b" / "2.png", pixels(2, 9, 10))
    with pytest.raises(ValueError, match=r"images differ in size: .*1\.png is 8x10, .*2\.png is 9x10 \(height x "
                                         r"width\); pass size="):
        data.image_folder(tmp_path)
    assert data.image_folder(tmp_path, size=5).images.shape == (2, 5, 5, 3)


def test_random_and_stratified_splits(tmp_path):
    class_tree(tmp_path, {"a": 10, "b": 20})
    ds = data.image_folder(tmp_path, valid_fraction=0.3, seed=4)
    train, valid = set(ds.train_idx.tolist()), set(ds.valid_idx.tolist())
    assert not train & valid and train | valid == set(range(30)) and len(valid) == 9
    ref_train, ref_valid = data.seeded_split(30, 0.3, 4)  # the built-in data sets' split
    assert np.array_equal(ds.train_idx, ref_train) and np.array_equal(ds.valid_idx, ref_valid)
    again = data.image_folder(tmp_path, valid_fraction=0.3, seed=4)
    assert np.array_equal(again.valid_idx, ds.valid_idx)
    assert not np.array_equal(data.image_folder(tmp_path, valid_fraction=0.3, seed=5).valid_idx, ds.valid_idx)
    images, labels = ds.split("valid")
    assert np.array_equal(images, ds.images[ds.valid_idx]) and np.array_equal(labels, ds.labels[ds.valid_idx])

    strat = data.image_folder(tmp_path, split="stratified", valid_fraction=0.3, seed=4)
    assert np.bincount(strat.labels[strat.valid_idx]).tolist() == [3, 6]


def test_split_by_folder(tmp_path):
    train = class_tree(tmp_path / "train", {"cat": 3, "dog": 2}, seed=1)
    valid = class_tree(tmp_path / "valid", {"cat": 1, "dog": 2}, seed=2)
    class_tree(tmp_path / "test", {"cat": 2, "dog": 2, "owl": 1}, seed=3)  # neither split: not read
    ds = data.image_folder(tmp_path, split="folder")
    assert ds.classes == ("cat", "dog") and len(ds) == 8
    assert {ds.paths[i] for i in ds.train_idx} == set(train)
    assert {ds.paths[i] for i in ds.valid_idx} == set(valid)
    for i, path in enumerate(ds.paths):
        assert np.array_equal(ds.images[i], {**train, **valid}[path])
        assert ds.classes[ds.labels[i]] == os.path.basename(os.path.dirname(path))

    with pytest.warns(data.SkippedFilesWarning, match=r"skipped 1 bad file and kept 9 samples"):
        other = data.image_folder(tmp_path, split="folder", valid_folder="test", on_error="skip")
    assert [p for p, _ in other.skipped] == [str(tmp_path / "test" / "owl") + os.sep]


def _errors(tmp_path):
    """(name, folder maker, kwargs, message pattern) of each error case."""
    def empty(root):
        root.mkdir()

    def loose(root):
        save(root / "a.png", pixels(0))

    def empty_class(root):
        class_tree(root, {"cat": 2, "dog": 2})
        (root / "owl").mkdir()

    def text_jpg(root):
        class_tree(root, {"cat": 2, "dog": 2})
        text_as_image(root / "dog" / "fake.jpg")

    def truncated(root):
        class_tree(root, {"cat": 2, "dog": 2}, h=16, w=16)
        truncated_png(root / "cat" / "cut.png")

    def one_class(root):
        class_tree(root, {"cat": 3})

    def split_folders(root):
        class_tree(root / "train", {"cat": 1, "dog": 1})
        class_tree(root / "valid", {"cat": 1, "dog": 1})

    def no_valid(root):
        class_tree(root / "train", {"cat": 1, "dog": 1})
        (root / "val").mkdir()

    def stray_valid_class(root):
        class_tree(root / "train", {"cat": 1, "dog": 1})
        class_tree(root / "valid", {"cat": 1, "dgo": 1})

    return [
        (empty, {}, r"image_folder: '.*' is empty: no class folders; expected one folder per class holding its "
                    r"images, e.g. '.*cat/001\.jpg'"),
        (loose, {}, r"'.*' holds images \(a\.png\) but no class folders"),
        (empty_class, {}, r"image_folder '.*': 1 bad file: .*owl/: class folder 'owl' holds no images \(looked for "
                          r"\.png \.jpg"),
        (text_jpg, {}, r"1 bad file: .*dog/fake\.jpg: not an image Pillow can read .* pass on_error='skip'"),
        (truncated, {}, r"1 bad file: .*cat/cut\.png: unreadable image \(OSError: image file is truncated"),
        (one_class, {}, r"has 1 class folder with images \(cat\); classification needs at least two"),
        (split_folders, {}, r"holds 'train' and 'valid' folders, which split='random' would read as classes; pass "
                            r"split='folder'"),
        (no_valid, {"split": "folder"}, r"split='folder' needs the folders 'train' and 'valid' in '.*', which has no "
                                        r"'valid' \(folders: train, val\); name them with train_folder="),
        (stray_valid_class, {"split": "folder"}, r"valid/dgo/: class 'dgo' has no images in 'train' \(its classes: "
                                                 r"cat, dog\)"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_each_error_names_the_file_or_folder(tmp_path, case):
    make, kwargs, pattern = _errors(tmp_path)[case]
    root = tmp_path / "root"
    make(root)
    with pytest.raises(ValueError, match=pattern):
        data.image_folder(root, **kwargs)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"root": "/no/such/folder"}, r"image_folder: root: folder not found: '/no/such/folder'"),
    ({"split": "column"}, r"image_folder: split must be one of 'random', 'stratified', 'folder', got 'column'"),
    ({"fit": "pad"}, r"image_folder: fit must be one of 'squish', 'crop', got 'pad'"),
    ({"on_error": "ignore"}, r"image_folder: on_error must be one of 'raise', 'skip', got 'ignore'"),
    ({"size": 0}, r"image_folder: size must be null, an integer >= 1 or \[height, width\], got 0"),
    ({"size": [4, 4, 3]}, r"size must be null, an integer >= 1 or \[height, width\], got \[4, 4, 3\]"),
    ({"valid_fraction": 1.5}, r"image_folder: valid_fraction must be a number in \(0, 1\), got 1\.5"),
    ({"seed": -1}, r"image_folder: seed must be a non-negative integer, got -1"),
])
def test_bad_arguments(tmp_path, kwargs, pattern):
    class_tree(tmp_path, {"a": 2, "b": 2})
    with pytest.raises(ValueError, match=pattern):
        data.image_folder(**{"root": tmp_path, **kwargs})


def test_root_that_is_a_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"image_folder: root: is a file, not a folder: '.*x\.png'"):
        data.image_folder(tmp_path / "x.png")


def test_skip_leaves_bad_files_out_with_one_warning(tmp_path):
    written = class_tree(tmp_path, {"cat": 4, "dog": 3})
    text_as_image(tmp_path / "dog" / "fake.jpg")
    truncated_png(tmp_path / "cat" / "cut.png")
    (tmp_path / "owl").mkdir()
    save(tmp_path / "stray.png", pixels(3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = data.image_folder(tmp_path, on_error="skip", valid_fraction=0.25)
    ours = [w for w in caught if issubclass(w.category, data.SkippedFilesWarning)]
    assert len(ours) == 1 and ours[0].filename == __file__  # attributed to the caller's line
    assert "skipped 4 bad files and kept 7 samples" in str(ours[0].message)
    reasons = dict(ds.skipped)
    assert set(reasons) == {str(tmp_path / "dog" / "fake.jpg"), str(tmp_path / "cat" / "cut.png"),
                            str(tmp_path / "owl") + os.sep, str(tmp_path / "stray.png")}
    assert "truncated" in reasons[str(tmp_path / "cat" / "cut.png")]
    assert "not an image" in reasons[str(tmp_path / "dog" / "fake.jpg")]
    assert ds.classes == ("cat", "dog") and set(ds.paths) == set(written)
    for path, image in _by_path(ds).items():
        assert np.array_equal(image, written[path])
    assert len(ds.train_idx) + len(ds.valid_idx) == 7
    assert "4 skipped" in repr(ds)


def test_skip_with_nothing_left_is_an_error(tmp_path):
    text_as_image(tmp_path / "a" / "1.jpg")
    truncated_png(tmp_path / "b" / "2.png")
    with pytest.raises(ValueError, match=r"every sample was skipped \(2 problems"):
        data.image_folder(tmp_path, on_error="skip")


def test_read_image_and_read_mask_name_the_file(tmp_path):
    truncated_png(tmp_path / "cut.png")
    with pytest.raises(ValueError, match=r".*cut\.png: unreadable image"):
        data.read_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match=r".*none\.png: file not found"):
        data.read_mask(tmp_path / "none.png")


def test_registry_and_spec(tmp_path):
    class_tree(tmp_path, {"a": 3, "b": 3})
    ds = data.load("image_folder", root=str(tmp_path), valid_fraction=0.5)
    assert ds.classes == ("a", "b") and len(ds.valid_idx) == 3
    spec = Experiment.from_dict({"data": {"name": "image_folder", "options": {"root": str(tmp_path), "size": 8}}})
    task = spec.build_task()
    assert isinstance(task, tasks.ImageClassification) and task.data.images.shape == (6, 8, 8, 3)
    assert Experiment.parse_yaml(spec.to_yaml()) == spec
    with pytest.raises(SpecError, match=r"data\.options: unknown option 'folder'; allowed: root, split"):
        Experiment.from_dict({"data": {"name": "image_folder", "options": {"folder": "x"}}})
    bad = Experiment.from_dict({"data": {"name": "image_folder", "options": {"root": str(tmp_path / "nope")}}})
    with pytest.raises(SpecError, match=r"data\.options: image_folder: root: folder not found"):
        bad.build_task()


def test_image_classification_trains_on_a_folder(tmp_path):
    """Two classes of distinct colours under noise: one short epoch reaches high valid accuracy,
    counted here from the decoded predictions."""
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        for k in range(24):
            noisy = np.clip(np.array(colour) + rng.normal(0, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
            save(tmp_path / name / f"{k}.png", noisy)
    task = tasks.ImageClassification(data.image_folder(tmp_path, split="stratified", seed=1))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learner = Learner.from_task(task, backbone="small_cnn", backbone_options={"width": 8}, batch_size=16,
                                    epochs=1, rule=O.chain(O.adam(), O.scale_lr(1e-2)), seed=0)
        learner.fit()
    finally:
        torch.set_num_threads(before)
    images, labels = task.data.split("valid")
    predicted = task.decode(learner.predict(task.encode_inputs(images)))
    correct = sum(p == task.classes[t] for p, t in zip(predicted, labels))
    assert correct >= 0.9 * len(labels), f"{correct}/{len(labels)}"


# -- images with masks ---------------------------------------------------------------------------
def _palette_mask(path, indices: np.ndarray) -> np.ndarray:
    """A palette PNG whose palette colours differ from the indices, so reading colours would show."""
    os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    im.putpalette(np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8).tobytes())
    im.save(path)
    return indices


def _mask_folders(root, n=6, h=8, w=10, suffix=""):
    written = {}
    for k in range(n):
        stem = f"sub/{k}" if k % 2 else f"{k}"
        image = save(root / "images" / f"{stem}.jpg" if k == 0 else root / "images" / f"{stem}.png", pixels(k, h, w))
        indices = np.random.default_rng(50 + k).integers(0, 3, (h, w))
        mask = _palette_mask(root / "masks" / f"{stem}{suffix}.png", indices)
        written[str(root / "images" / f"{stem}{'.jpg' if k == 0 else '.png'}")] = (image, mask)
    return written


def test_masks_pair_by_name_and_keep_palette_indices(tmp_path):
    written = _mask_folders(tmp_path, suffix="_mask")
    (tmp_path / "masks" / "notes.txt").write_text("ignored")
    ds = data.image_mask_folder(tmp_path / "images", tmp_path / "masks", mask_suffix="_mask", valid_fraction=0.5)
    assert len(ds) == 6 and ds.images.shape == (6, 8, 10, 3) and ds.masks.shape == (6, 8, 10)
    assert ds.masks.dtype == np.uint8 and ds.classes == ("0", "1", "2") and ds.mask_classes == ds.classes
    for i, path in enumerate(ds.image_paths):
        image, mask = written[path]
        assert np.array_equal(ds.masks[i], mask), path
        assert ds.mask_paths[i].endswith(os.path.splitext(os.path.relpath(path, tmp_path / "images"))[0] + "_mask.png")
        if path.endswith(".png"):
            assert np.array_equal(ds.images[i], image), path
    x, y = ds.split("train")
    assert np.array_equal(y, ds.masks[ds.train_idx]) and len(x) == 3
    assert sorted([*ds.train_idx, *ds.valid_idx]) == list(range(6))
    image, mask = ds[2]
    assert np.array_equal(mask, ds.masks[2])


def test_mask_values_classes_and_grey_masks(tmp_path):
    binary = (np.random.default_rng(0).random((6, 6)) > 0.5).astype(np.uint8) * 255
    for k in range(3):
        save(tmp_path / "img" / f"{k}.png", pixels(k, 6, 6))
        save(tmp_path / "msk" / f"{k}.png", np.repeat(binary[..., None], 3, axis=2) if k == 2 else binary)  # RGB grey
    ds = data.image_mask_folder(tmp_path / "img", tmp_path / "msk", mask_values=[0, 255],
                                classes=["background", "object"])
    assert ds.classes == ("background", "object")
    assert all(np.array_equal(m, binary // 255) for m in ds.masks)
    with pytest.raises(ValueError, match=r"3 bad files: .*0\.png: mask values 255 are no class \(allowed values: 0, "
                                         r"1\); mask_values=\[\.\.\.\] maps pixel values to classes"):
        data.image_mask_folder(tmp_path / "img", tmp_path / "msk", classes=["background", "object"])
    assert data.image_mask_folder(tmp_path / "img", tmp_path / "msk").classes == tuple(str(v) for v in range(256))


def test_masks_resize_with_nearest_neighbours(tmp_path):
    _mask_folders(tmp_path, h=16, w=20)
    ds = data.image_mask_folder(tmp_path / "images", tmp_path / "masks", size=[8, 10])
    full = data.image_mask_folder(tmp_path / "images", tmp_path / "masks")
    assert ds.masks.shape == (6, 8, 10)
    # Halving with nearest neighbours keeps one source pixel per 2x2 block: never a new value.
    for small, big in zip(ds.masks, full.masks):
        assert any(np.array_equal(small, big[dy::2, dx::2]) for dy in (0, 1) for dx in (0, 1))


def test_mask_folder_split(tmp_path):
    for which, n in (("train", 3), ("valid", 2), ("test", 2)):
        for k in range(n):
            save(tmp_path / "i" / which / f"{k}.png", pixels(k))
            _palette_mask(tmp_path / "m" / which / f"{k}.png", np.ones((8, 10)))
    ds = data.image_mask_folder(tmp_path / "i", tmp_path / "m", split="folder")
    assert len(ds) == 5
    assert all(f"{os.sep}train{os.sep}" in ds.image_paths[i] for i in ds.train_idx) and len(ds.train_idx) == 3
    assert all(f"{os.sep}valid{os.sep}" in ds.image_paths[i] for i in ds.valid_idx) and len(ds.valid_idx) == 2


def test_mask_errors_name_both_files(tmp_path):
    _mask_folders(tmp_path)
    save(tmp_path / "images" / "lonely.png", pixels(1))
    _palette_mask(tmp_path / "masks" / "orphan.png", np.zeros((8, 10)))
    with pytest.raises(ValueError, match=r"2 bad files: .*lonely\.png: no mask lonely\.<ext> in .*masks; "
                                         r".*orphan\.png: no image orphan\.<ext> in .*images for this mask"):
        data.image_mask_folder(tmp_path / "images", tmp_path / "masks")
    os.remove(tmp_path / "images" / "lonely.png")
    os.remove(tmp_path / "masks" / "orphan.png")
    _palette_mask(tmp_path / "masks" / "sub" / "3.png", np.zeros((9, 10)))
    colour = pixels(5)
    save(tmp_path / "masks" / "4.png", colour)
    with pytest.raises(ValueError, match=r"2 bad files: .*masks/4\.png: a colour \(RGB\) mask; .*masks/sub/3\.png: "
                                         r"mask is 9x10 but its image .*images/sub/3\.png is 8x10 \(height x width\)"):
        data.image_mask_folder(tmp_path / "images", tmp_path / "masks")
    with pytest.warns(data.SkippedFilesWarning, match=r"skipped 2 bad files and kept 4 samples"):
        ds = data.image_mask_folder(tmp_path / "images", tmp_path / "masks", on_error="skip")
    assert {p for p, _ in ds.skipped} == {str(tmp_path / "masks" / "sub" / "3.png"), str(tmp_path / "masks" / "4.png")}
    assert len(ds) == 4 and not any(p.endswith(("3.png", "4.png")) for p in ds.image_paths)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"classes": "ab"}, r"image_mask_folder: classes must be a list of distinct names, got 'ab'"),
    ({"mask_values": [0, 0]}, r"mask_values must be a list of distinct pixel values >= 0, got \[0, 0\]"),
    ({"mask_values": [0, 255], "classes": ["a"]}, r"1 classes for 2 mask_values; give one class per value"),
    ({"split": "stratified"}, r"image_mask_folder: split must be one of 'random', 'folder', got 'stratified'"),
    ({"masks_dir": "/no/masks"}, r"image_mask_folder: masks_dir: folder not found: '/no/masks'"),
])
def test_mask_bad_arguments(tmp_path, kwargs, pattern):
    _mask_folders(tmp_path)
    with pytest.raises(ValueError, match=pattern):
        data.image_mask_folder(**{"images_dir": tmp_path / "images", "masks_dir": tmp_path / "masks", **kwargs})


def test_mask_folder_is_registered(tmp_path):
    _mask_folders(tmp_path)
    ds = data.load("image_mask_folder", images_dir=str(tmp_path / "images"), masks_dir=str(tmp_path / "masks"))
    assert isinstance(ds, data.ImageMaskFiles) and len(ds) == 6
