"""Images from disk: a folder per class, or images paired with masks by file name.

Decoding is eager: every file is read once, up front, by a few threads, into one uint8 array
(``size=`` resizes them to one size as they are read). Why: the tasks hold their data in
memory; a bad file is found before training starts and named, instead of failing inside a
loader worker mid-epoch; and no epoch decodes again. Memory is ``N * H * W * 3`` bytes:
10 000 images at 224 x 224 take 1.5 GB.

Reading (Pillow, which torchvision requires): an image becomes RGB uint8 (H, W, 3) whatever
its mode: palette and grey are expanded, alpha is dropped, 16-bit grey keeps its top 8 bits,
and the EXIF orientation is applied, so pixels stand as a photo viewer shows them. A mask
becomes (H, W) class indices: a palette PNG gives its indices (not its colours), a grey PNG
(8 or 16 bit) its values; an RGB mask is accepted only when it is grey (R = G = B).

Problems with single files (unreadable or truncated, a text file named ``.jpg``, a class
folder without images, an image without its mask, a mask of another size) are collected.
With ``on_error="raise"`` (the default) one ValueError lists them by path; with
``on_error="skip"`` they are left out, listed in ``dataset.skipped`` as ``(path, reason)``
and summarised in one :class:`SkippedFilesWarning`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from torchdeck.data._base import ImageDataset, register_dataset
from torchdeck.data._splits import SPLITS, _check_fraction, _check_seed, split_by_values

__all__ = ["IMAGE_EXTENSIONS", "FITS", "SkippedFilesWarning", "ImageFiles", "ImageMaskFiles", "image_folder",
           "image_mask_folder", "read_image", "read_mask"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ON_ERROR = ("raise", "skip")
_MAX_THREADS = 8
_SHOWN = 5  # problems spelled out in one error message
_BIT16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class SkippedFilesWarning(UserWarning):
    """Files left out of a data set read with ``on_error="skip"``; ``dataset.skipped`` lists them."""


class _BadFile(Exception):
    """One file that cannot be used, and why; collected by :class:`_Report`."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason, self.path = reason, path


# -- arguments -----------------------------------------------------------------------------------
def _check_choice(where: str, field: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{where}: {field} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)


def _check_size(where: str, size: object) -> tuple[int, int] | None:
    """``None``, an int (a square side) or ``[height, width]`` -> ``(height, width)``."""
    if size is None:
        return None
    sides = [size] * 2 if isinstance(size, (int, np.integer)) else size
    if (isinstance(sides, (list, tuple)) and len(sides) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sides)):
        return int(sides[0]), int(sides[1])
    raise ValueError(f"{where}: size must be null, an integer >= 1 or [height, width], got {size!r}")


def _check_folder(where: str, field: str, folder: object) -> str:
    if not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"{where}: {field} must be a folder path, got {folder!r}")
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.isfile(folder) else "folder not found"
        raise ValueError(f"{where}: {field}: {what}: {folder!r} (relative paths are from the working directory)")
    return folder


def _check_common(where: str, split: str, splits: Sequence[str], valid_fraction: float, seed: int, size: object,
                  fit: str, on_error: str) -> tuple[int, int] | None:
    """Arguments every reader takes, checked before any file is read."""
    _check_choice(where, "split", split, splits)
    _check_choice(where, "fit", fit, tuple(FITS))
    _check_choice(where, "on_error", on_error, ON_ERROR)
    try:
        _check_fraction(valid_fraction)
        _check_seed(seed)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return _check_size(where, size)


# -- problems: raise them together, or skip them with a report ----------------------------------
@dataclasses.dataclass
class _Report:
    where: str
    on_error: str
    found: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def add(self, path: str, reason: str) -> None:
        self.found.append((path, reason))

    def check(self) -> None:
        """With ``on_error="raise"``, stop at the first stage that found problems, listing them all."""
        if not self.found or self.on_error != "raise":
            return
        shown = "; ".join(f"{p}: {r}" for p, r in self.found[:_SHOWN])
        more = f"; and {len(self.found) - _SHOWN} more" if len(self.found) > _SHOWN else ""
        raise ValueError(f"{self.where}: {len(self.found)} bad file{'s' if len(self.found) > 1 else ''}: {shown}"
                         f"{more}. Fix or remove {'them' if len(self.found) > 1 else 'it'}, or pass on_error='skip' to "
                         "leave bad files out (listed in dataset.skipped)")

    def finish(self, kept: int) -> tuple[tuple[str, str], ...]:
        """The skip report, after one warning that summarises it; an error when nothing is left."""
        self.check()
        if not self.found:
            return ()
        path, reason = self.found[0]
        if kept == 0:
            raise ValueError(f"{self.where}: every sample was skipped ({len(self.found)} problems, the first "
                             f"{path}: {reason})")
        # stacklevel: warn -> finish -> the reader -> the caller.
        warnings.warn(f"{self.where}: skipped {len(self.found)} bad file{'s' if len(self.found) > 1 else ''} and "
                      f"kept {kept} samples (first: {path}: {reason}); the list is in dataset.skipped",
                      SkippedFilesWarning, stacklevel=3)
        return tuple(self.found)


# -- decoding ----------------------------------------------------------------------------------
def _decode(path: str, convert: Callable[[Image.Image], np.ndarray], *, orient: bool) -> np.ndarray:
    """``convert`` applied to the decoded file; every failure becomes a :class:`_BadFile` naming it."""
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise _BadFile("file not found", path) from None
    except UnidentifiedImageError:
        raise _BadFile("not an image Pillow can read (unknown format, or not an image file)", path) from None
    except OSError as e:
        raise _BadFile(f"cannot open: {e}", path) from None
    with im:
        try:
            im.load()
            if orient:
                ImageOps.exif_transpose(im, in_place=True)
        except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, EOFError, ... on bad bytes
            raise _BadFile(f"unreadable image ({type(e).__name__}: {e})", path) from None
        try:
            return convert(im)
        except _BadFile as e:
            raise _BadFile(e.reason, path) from None


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in _BIT16:
        grey = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # Pillow warns when such a palette goes straight to RGB
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _to_indices(im: Image.Image) -> np.ndarray:
    if im.mode in ("P", "L", "1", "I") or im.mode in _BIT16:
        return np.asarray(im).astype(np.int64)
    if im.mode in ("RGB", "RGBA", "LA"):
        pixels = np.asarray(im)
        colour = pixels[..., :1] if im.mode == "LA" else pixels[..., :3]
        if np.all(colour == colour[..., :1]):
            return colour[..., 0].astype(np.int64)
        raise _BadFile(f"a colour ({im.mode}) mask; expected class indices: a palette or greyscale PNG whose "
                       "pixel values are the classes")
    raise _BadFile(f"mask mode {im.mode!r} is not supported; save masks as palette or greyscale PNG")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file; a ValueError naming the file if it cannot be read."""
    path = os.fspath(path)
    try:
        return _decode(path, _to_rgb, orient=True)
    except _BadFile as e:
        raise ValueError(f"{e.path}: {e.reason}") from None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """(H, W) int64 class indices of a mask file (palette indices or grey values)."""
    path = os.fspath(path)
    try:
        return _decode(path, _to_indices, orient=False)
    except _BadFile as e:
        raise ValueError(f"{e.path}: {e.reason}") from None


# -- resizing: the source box each fit takes from a (w, h) image for a (tw, th) target --------------
def _squish(w: int, h: int, tw: int, th: int) -> tuple[float, float, float, float]:
    return 0.0, 0.0, float(w), float(h)


def _crop(w: int, h: int, tw: int, th: int) -> tuple[float, float, float, float]:
    scale = min(w / tw, h / th)  # the largest centred box with the target's aspect ratio
    cw, ch = tw * scale, th * scale
    return (w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2


# fit name -> box: "squish" stretches the whole image, "crop" keeps the aspect ratio and cuts the edges.
FITS: dict[str, Callable[[int, int, int, int], tuple[float, float, float, float]]] = {"squish": _squish,
                                                                                       "crop": _crop}


def _resize(pixels: np.ndarray, size: tuple[int, int] | None, fit: str, resample: int) -> np.ndarray:
    if size is None or pixels.shape[:2] == size:
        return pixels
    (th, tw), (h, w) = size, pixels.shape[:2]
    # int64 masks go through Pillow's 32-bit mode; Pillow's bilinear widens its filter when it
    # shrinks, so downsized images are antialiased.
    source = Image.fromarray(pixels.astype(np.int32) if pixels.ndim == 2 else pixels)
    out = np.asarray(source.resize((tw, th), resample, box=FITS[fit](w, h, tw, th)))
    return out.astype(pixels.dtype)


def _read_image(path: str, size: tuple[int, int] | None, fit: str) -> np.ndarray:
    return _resize(_decode(path, _to_rgb, orient=True), size, fit, Image.Resampling.BILINEAR)


def _threads() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(_MAX_THREADS, cpus))


def _run_all(jobs: Sequence[Callable[[], Any]]) -> list[Any]:
    """Each job's result, or the :class:`_BadFile` it raised; in order. Pillow decodes with the GIL
    released, so threads overlap the file reads and the decoding."""
    def attempt(job: Callable[[], Any]) -> Any:
        try:
            return job()
        except _BadFile as e:
            return e

    if len(jobs) < 2:
        return [attempt(job) for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=_threads()) as pool:
        return list(pool.map(attempt, jobs))


def _stack(where: str, arrays: Sequence[np.ndarray], paths: Sequence[str]) -> np.ndarray:
    """One array of equal-size images; an error naming two files of different sizes otherwise."""
    first = arrays[0].shape[:2]
    for pixels, path in zip(arrays, paths):
        if pixels.shape[:2] != first:
            raise ValueError(f"{where}: images differ in size: {paths[0]} is {first[0]}x{first[1]}, {path} is "
                             f"{pixels.shape[0]}x{pixels.shape[1]} (height x width); pass size=N or "
                             "size=[height, width] to resize them as they are read")
    return np.stack(arrays)


# -- finding files -------------------------------------------------------------------------------
def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _is_image_name(name: str) -> bool:
    return not _hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def _image_files(folder: str) -> list[str]:
    """Image files under ``folder``, any depth, in a fixed order (sorted names at each level)."""
    out = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        out += [os.path.join(parent, f) for f in sorted(files) if _is_image_name(f)]
    return out


def _class_folders(where: str, folder: str, report: _Report) -> dict[str, list[str]]:
    """class name -> its image files, for each subfolder of ``folder`` that holds images."""
    names = sorted(n for n in os.listdir(folder) if not _hidden(n))
    dirs = [n for n in names if os.path.isdir(os.path.join(folder, n))]
    loose = [n for n in names if _is_image_name(n) and os.path.isfile(os.path.join(folder, n))]
    example = os.path.join(folder, "cat", "001.jpg")
    if not dirs:
        found = f"holds images ({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''}) but" if loose else (
            "is empty:" if not names else "holds")
        raise ValueError(f"{where}: {folder!r} {found} no class folders; expected one folder per class holding its "
                         f"images, e.g. {example!r}")
    for name in loose:
        report.add(os.path.join(folder, name), "an image outside the class folders; move it into the folder of "
                                               "its class")
    classes = {}
    for name in dirs:
        files = _image_files(os.path.join(folder, name))
        if files:
            classes[name] = files
        else:
            report.add(os.path.join(folder, name) + os.sep, f"class folder {name!r} holds no images (looked for "
                                                            f"{' '.join(IMAGE_EXTENSIONS)})")
    return classes


# -- data sets -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, repr=False)
class ImageFiles(ImageDataset):
    """Labelled images read from files (a folder per class, or a CSV), decoded into memory.

    images: (N, H, W, 3) uint8 RGB; labels: (N,) int64 indices into ``classes``; ``paths[i]``
    is the file of image ``i``; ``skipped`` the ``(path, reason)`` pairs left out under
    ``on_error="skip"``; ``source`` the folder or CSV read. ``dataset[i]`` is ``(image, label)``,
    so it is also a map-style torch Dataset (see :func:`torchdeck.data.loader`).
    """

    paths: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.paths) != len(self.images):
            raise ValueError(f"{self.name}: {len(self.paths)} paths for {len(self.images)} images")

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.int64]:
        return self.images[i], self.labels[i]

    def __repr__(self) -> str:
        n, h, w, c = self.images.shape
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return (f"ImageFiles({self.source!r}, {n} images {h}x{w}x{c}, {len(self.classes)} classes, "
                f"train {len(self.train_idx)} / valid {len(self.valid_idx)}{skipped})")


@dataclasses.dataclass(frozen=True, repr=False)
class ImageMaskFiles:
    """Images with per-pixel class masks, read from two folders and paired by file name.

    images: (N, H, W, 3) uint8 RGB; masks: (N, H, W) class indices into ``classes`` (uint8 for
    up to 256 classes, else int32); ``image_paths[i]`` / ``mask_paths[i]`` the files of sample
    ``i``; ``skipped`` and ``source`` as in :class:`ImageFiles`. ``dataset[i]`` is ``(image, mask)``.
    """

    name: str
    images: np.ndarray
    masks: np.ndarray
    classes: tuple[str, ...]
    train_idx: np.ndarray
    valid_idx: np.ndarray
    image_paths: tuple[str, ...] = ()
    mask_paths: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images must be (N, H, W, C) uint8, got {self.images.shape} "
                             f"{self.images.dtype}")
        if self.masks.shape != self.images.shape[:3]:
            raise ValueError(f"{self.name}: masks must be {self.images.shape[:3]}, got {self.masks.shape}")

    @property
    def mask_classes(self) -> tuple[str, ...]:
        """The class of each mask value (the name the shapes data set gives them)."""
        return self.classes

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, masks)`` of ``"train"`` or ``"valid"``."""
        idx = {"train": self.train_idx, "valid": self.valid_idx}.get(which)
        if idx is None:
            raise ValueError(f"{self.name}: unknown split {which!r}; allowed: train, valid")
        return self.images[idx], self.masks[idx]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[i], self.masks[i]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        n, h, w, c = self.images.shape
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return (f"ImageMaskFiles({self.source!r}, {n} images {h}x{w}x{c} with masks, {len(self.classes)} classes, "
                f"train {len(self.train_idx)} / valid {len(self.valid_idx)}{skipped})")


def _dataset_name(folder: str) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(folder)))


def _decode_labelled(where: str, paths: Sequence[str], labels: Sequence[int], groups: Sequence[str],
                     size: tuple[int, int] | None, fit: str,
                     report: _Report) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Decode every file; ``(images, labels, paths, groups)`` of those that read, problems to ``report``."""
    results = _run_all([functools.partial(_read_image, p, size, fit) for p in paths])
    keep = []
    for i, r in enumerate(results):
        if isinstance(r, _BadFile):
            report.add(r.path, r.reason)
        else:
            keep.append(i)
    report.check()
    if not keep:
        report.finish(0)
    kept_paths = [paths[i] for i in keep]
    images = _stack(where, [results[i] for i in keep], kept_paths)
    return (images, np.asarray(labels, np.int64)[keep], kept_paths, np.asarray(groups, dtype=object)[keep])


def _labelled_split(where: str, split: str, labels: np.ndarray, groups: np.ndarray, valid_fraction: float,
                    seed: int, train_name: str, valid_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The train/valid indices: by the samples' group (their folder or split column) or by a named split."""
    if split in SPLITS:
        try:
            return SPLITS[split](labels, valid_fraction, seed)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    train_idx, valid_idx = split_by_values(groups, train_name, valid_name)
    for which, idx in (("train", train_idx), ("valid", valid_idx)):
        if len(idx) == 0:
            raise ValueError(f"{where}: no {which} samples are left for split={split!r}")
    return train_idx, valid_idx


@register_dataset("image_folder")
def image_folder(root: str | os.PathLike, split: str = "random", valid_fraction: float = 0.2, seed: int = 0,
                 size: int | Sequence[int] | None = None, fit: str = "squish", on_error: str = "raise",
                 train_folder: str = "train", valid_folder: str = "valid") -> ImageFiles:
    """Labelled images from a folder per class: ``root/<class>/<image>`` (subfolders of a class
    folder count too). Classes are the folder names, sorted.

    Args:
        root: the folder holding one folder per class.
        split: ``"random"`` (``valid_fraction`` of the images, drawn by ``seed``), ``"stratified"``
            (the same share of each class) or ``"folder"``: ``root/<train_folder>/<class>/...`` and
            ``root/<valid_folder>/<class>/...``; the classes are those of the train folder, and
            other folders (e.g. ``test``) are left alone.
        size: ``None`` keeps the files' size (they must agree), an int a square side, or
            ``[height, width]``; images are resized as they are read.
        fit: how an image meets ``size``: ``"squish"`` (stretch) or ``"crop"`` (keep the aspect
            ratio, cut the edges, centred).
        on_error: ``"raise"`` (one ValueError listing the bad files) or ``"skip"`` (leave them out:
            ``dataset.skipped`` lists them, one warning says how many).
    """
    where = "image_folder"
    size = _check_common(where, split, (*SPLITS.names(), "folder"), valid_fraction, seed, size, fit, on_error)
    root = _check_folder(where, "root", root)
    report = _Report(f"{where} {root!r}", on_error)
    if split == "folder":
        folders = {}
        for which, name in (("train", train_folder), ("valid", valid_folder)):
            if not os.path.isdir(os.path.join(root, name)):
                present = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))
                raise ValueError(f"{where}: split='folder' needs the folders {train_folder!r} and {valid_folder!r} "
                                 f"in {root!r}, which has no {name!r} (folders: {', '.join(present) or 'none'}); "
                                 "name them with train_folder= / valid_folder=, or use split='random' for one "
                                 "folder per class")
            folders[which] = _class_folders(where, os.path.join(root, name), report)
        classes = sorted(folders["train"])
        for name in sorted(set(folders["valid"]) - set(classes)):
            report.add(os.path.join(root, valid_folder, name) + os.sep,
                       f"class {name!r} has no images in {train_folder!r} (its classes: {', '.join(classes)})")
            del folders["valid"][name]
    else:
        folders = {"all": _class_folders(where, root, report)}
        classes = sorted(folders["all"])
        if {train_folder, valid_folder} <= set(classes):
            raise ValueError(f"{where}: {root!r} holds {train_folder!r} and {valid_folder!r} folders, which "
                             f"split={split!r} would read as classes; pass split='folder' to use them as the split")
    report.check()
    if len(classes) < 2:
        raise ValueError(f"{where}: {root!r} has {len(classes)} class folder{'' if len(classes) == 1 else 's'} with "
                         f"images ({', '.join(classes) or 'none'}); classification needs at least two")
    index = {c: k for k, c in enumerate(classes)}
    rows = [(path, index[c], group) for group, tree in folders.items() for c in sorted(tree) for path in tree[c]]
    paths, labels, groups = zip(*rows)
    images, labels, paths, groups = _decode_labelled(where, paths, labels, groups, size, fit, report)
    train_idx, valid_idx = _labelled_split(where, split, labels, groups, valid_fraction, seed, "train", "valid")
    skipped = report.finish(len(images))
    return ImageFiles(_dataset_name(root), images, labels, tuple(classes), train_idx, valid_idx, tuple(paths),
                      skipped, root)


# -- images with masks ---------------------------------------------------------------------------
def _by_stem(folder: str, suffix: str, kind: str, report: _Report) -> dict[str, str]:
    """stem (path under ``folder`` without extension, ``/``-separated, ``suffix`` removed) -> file."""
    out: dict[str, str] = {}
    for path in _image_files(folder):
        stem = os.path.splitext(os.path.relpath(path, folder))[0].replace(os.sep, "/")
        if suffix:
            if not stem.endswith(suffix):
                report.add(path, f"a mask whose name does not end with mask_suffix {suffix!r}")
                continue
            stem = stem[:-len(suffix)]
        if stem in out:
            report.add(path, f"a second {kind} named {stem!r} (the first is {out[stem]}); keep one")
            continue
        out[stem] = path
    if not out and not report.found:
        raise ValueError(f"{report.where}: no {kind} files in {folder!r} (looked for {' '.join(IMAGE_EXTENSIONS)})")
    return out


def _check_mask_classes(where: str, classes: Sequence[str] | None,
                        mask_values: Sequence[int] | None) -> tuple[tuple[str, ...] | None, np.ndarray | None]:
    """``(classes, lut)``: ``lut[v]`` is the class of pixel value ``v``, -1 where ``v`` is no class."""
    if classes is not None:
        if isinstance(classes, str) or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(
                classes) or not classes:
            raise ValueError(f"{where}: classes must be a list of distinct names, got {classes!r}")
        classes = tuple(classes)
    if mask_values is None:
        return classes, None if classes is None else np.arange(len(classes))
    if isinstance(mask_values, (str, bytes)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in mask_values) or len(
            set(mask_values)) != len(mask_values) or not mask_values:
        raise ValueError(f"{where}: mask_values must be a list of distinct pixel values >= 0, got {mask_values!r}")
    if classes is not None and len(classes) != len(mask_values):
        raise ValueError(f"{where}: {len(classes)} classes for {len(mask_values)} mask_values; give one class per "
                         "value")
    lut = np.full(max(mask_values) + 1, -1, np.int64)
    lut[list(mask_values)] = np.arange(len(mask_values))
    return classes if classes is not None else tuple(str(v) for v in mask_values), lut


def _index_mask(mask: np.ndarray, lut: np.ndarray | None) -> np.ndarray:
    if lut is None:
        return mask
    outside = (mask < 0) | (mask >= len(lut))
    indices = np.where(outside, -1, lut[np.clip(mask, 0, len(lut) - 1)])
    if (indices < 0).any():
        values = np.unique(mask[indices < 0])
        shown = ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")
        allowed = ", ".join(str(v) for v in np.flatnonzero(lut >= 0))
        raise _BadFile(f"mask values {shown} are no class (allowed values: {allowed}); mask_values=[...] maps "
                       "pixel values to classes")
    return indices


def _read_pair(image_path: str, mask_path: str, size: tuple[int, int] | None, fit: str,
               lut: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    image = _decode(image_path, _to_rgb, orient=True)
    mask = _decode(mask_path, _to_indices, orient=False)
    if mask.shape != image.shape[:2]:
        raise _BadFile(f"mask is {mask.shape[0]}x{mask.shape[1]} but its image {image_path} is "
                       f"{image.shape[0]}x{image.shape[1]} (height x width)", mask_path)
    try:
        mask = _index_mask(mask, lut)
    except _BadFile as e:
        raise _BadFile(e.reason, mask_path) from None
    return (_resize(image, size, fit, Image.Resampling.BILINEAR),
            _resize(mask, size, fit, Image.Resampling.NEAREST))


@register_dataset("image_mask_folder")
def image_mask_folder(images_dir: str | os.PathLike, masks_dir: str | os.PathLike,
                      classes: Sequence[str] | None = None, mask_values: Sequence[int] | None = None,
                      mask_suffix: str = "", split: str = "random", valid_fraction: float = 0.2, seed: int = 0,
                      size: int | Sequence[int] | None = None, fit: str = "squish", on_error: str = "raise",
                      train_folder: str = "train", valid_folder: str = "valid") -> ImageMaskFiles:
    """Images and their masks, paired by name: ``images_dir/a/b.jpg`` with ``masks_dir/a/b<mask_suffix>.png``.

    Args:
        classes: the class of each mask value (value ``k`` is ``classes[k]``); by default
            ``"0" .. "<largest value>"``. A value with no class is a bad mask.
        mask_values: the pixel values that are classes, in class order, e.g. ``[0, 255]`` for
            black/white masks (value 255 becomes class 1).
        mask_suffix: what a mask's name adds to its image's, e.g. ``"_mask"`` for ``b_mask.png``.
        split: ``"random"`` by ``seed``, or ``"folder"``: the first folder of each file under
            ``images_dir`` (``train_folder`` / ``valid_folder``; others are left alone).
        size, fit, on_error, valid_fraction, seed: as for :func:`image_folder`; masks are
            resized with nearest neighbours, so they keep their class values.
    """
    where = "image_mask_folder"
    size = _check_common(where, split, ("random", "folder"), valid_fraction, seed, size, fit, on_error)
    images_dir = _check_folder(where, "images_dir", images_dir)
    masks_dir = _check_folder(where, "masks_dir", masks_dir)
    if not isinstance(mask_suffix, str):
        raise ValueError(f"{where}: mask_suffix must be a string, got {mask_suffix!r}")
    classes, lut = _check_mask_classes(where, classes, mask_values)
    report = _Report(f"{where} {images_dir!r}", on_error)
    images, masks = _by_stem(images_dir, "", "image", report), _by_stem(masks_dir, mask_suffix, "mask", report)
    for stem in sorted(set(images) - set(masks)):
        report.add(images[stem], f"no mask {stem}{mask_suffix}.<ext> in {masks_dir}")
    for stem in sorted(set(masks) - set(images)):
        report.add(masks[stem], f"no image {stem}.<ext> in {images_dir} for this mask")
    report.check()
    stems = sorted(set(images) & set(masks))
    if split == "folder":  # files outside the two split folders (e.g. test/) are not read
        stems = [s for s in stems if s.split("/")[0] in (train_folder, valid_folder)]
        if not stems:
            raise ValueError(f"{where}: split='folder' found no pairs under {train_folder!r} or {valid_folder!r} in "
                             f"{images_dir!r}; name them with train_folder= / valid_folder=, or use split='random'")
    results = _run_all([functools.partial(_read_pair, images[s], masks[s], size, fit, lut) for s in stems])
    for r in results:
        if isinstance(r, _BadFile):
            report.add(r.path, r.reason)
    report.check()
    keep = [i for i, r in enumerate(results) if not isinstance(r, _BadFile)]
    if not keep:
        report.finish(0)
    image_paths = [images[stems[i]] for i in keep]
    pixels = _stack(where, [results[i][0] for i in keep], image_paths)
    index_masks = np.stack([results[i][1] for i in keep])
    if classes is None:
        classes = tuple(str(v) for v in range(int(index_masks.max()) + 1))
    groups = np.array([stems[i].split("/")[0] for i in keep], dtype=object)
    train_idx, valid_idx = _labelled_split(where, split, np.zeros(len(keep), np.int64), groups, valid_fraction,
                                           seed, train_folder, valid_folder)
    skipped = report.finish(len(keep))
    dtype = np.uint8 if len(classes) <= 256 else np.int32
    return ImageMaskFiles(_dataset_name(images_dir), pixels, index_masks.astype(dtype), classes, train_idx,
                          valid_idx, tuple(image_paths), tuple(masks[stems[i]] for i in keep), skipped, images_dir)
