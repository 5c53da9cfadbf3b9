"""Labelled images listed in a CSV file: a header row, then one row per image with its path and label.

Paths are relative to the CSV file's folder (or to ``root=``); absolute paths stay as they
are. Labels are class names; the classes are the distinct labels, sorted (numerically when
they are all numbers), unless ``classes=`` fixes them and their order. Rows are checked
before any image is decoded: a missing path or label, a file that is not there, a label
outside ``classes``, or (split by a column) a label that only the valid rows have, are bad
rows, raised together or skipped with a report as in :mod:`torchdeck.data._folders`.

Multi-label data (fastai's ``MultiCategoryBlock`` from a CSV): with ``label_delimiter`` the
label cell lists any number of classes, ``"cat dog"``; the labels are then multi-hot (N, C)
and an empty cell is an image with none of the classes.
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from torchdeck.data._base import register_dataset
from torchdeck.data._folders import ImageFiles, _check_common, _check_folder, _decode_labelled, _labelled_split, _Report
from torchdeck.data._splits import SPLITS, column_split

__all__ = ["image_csv"]


def _read_rows(where: str, path: str, delimiter: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the ``(line number, cells)`` of each non-blank data row, in the shape checked."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(f, delimiter=delimiter))]
    rows = [(line, r) for line, r in rows if any(cell.strip() for cell in r)]  # blank lines carry nothing
    if not rows:
        raise ValueError(f"{where}: {path!r} is empty; expected a header row naming the columns, then one row per "
                         "image")
    header = [h.strip() for h in rows[0][1]]
    for j, h in enumerate(header):
        if not h:
            raise ValueError(f"{where}: {path!r}: header column {j + 1} has no name")
        if h in header[:j]:
            raise ValueError(f"{where}: {path!r}: the header names column {h!r} twice")
    body = rows[1:]
    if not body:
        raise ValueError(f"{where}: {path!r} has a header ({', '.join(header)}) but no data rows")
    for line, r in body:
        if len(r) != len(header):
            raise ValueError(f"{where}: {path!r} line {line}: {len(r)} values, the header has {len(header)} columns")
    return header, body


def _column(where: str, path: str, field: str, name: str, header: list[str]) -> int:
    if name not in header:
        raise ValueError(f"{where}: {field}: {path!r} has no column {name!r}; columns: {', '.join(header)}")
    return header.index(name)


def _class_order(labels: Sequence[str]) -> list[str]:
    """Distinct labels, numerically ordered when they all are numbers (so "10" follows "9")."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


@register_dataset("image_csv")
def image_csv(path: str | os.PathLike, image_column: str = "image", label_column: str = "label",
              root: str | os.PathLike | None = None, classes: Sequence[str] | None = None, split: str = "random",
              split_column: str = "is_valid", valid_fraction: float = 0.2, seed: int = 0,
              size: int | Sequence[int] | None = None, fit: str = "squish", on_error: str = "raise",
              delimiter: str = ",", label_delimiter: str | None = None) -> ImageFiles:
    """Labelled images from a CSV of image paths and labels.

    Args:
        path: the CSV file (UTF-8 with a header row).
        image_column, label_column: the columns holding each image's path and its label.
        root: the folder image paths are relative to; by default the CSV file's folder.
        classes: the class names in order; a label outside them is a bad row. By default the
            distinct labels, sorted.
        split: ``"random"``, ``"stratified"`` (as for :func:`image_folder`) or ``"column"``:
            ``split_column`` marks each row ``train`` / ``valid`` or, as fastai's ``is_valid``,
            true / false (also 1 / 0, yes / no).
        size, fit, on_error, valid_fraction, seed: as for :func:`image_folder`.
        delimiter: the CSV's cell separator.
        label_delimiter: for multi-label data, the separator between the classes in a label
            cell (``" "`` for ``"cat dog"``); labels are then (N, classes) float32 multi-hot.
            ``None``: one class per image.
    """
    where = "image_csv"
    multi = label_delimiter is not None
    if multi and (not isinstance(label_delimiter, str) or not label_delimiter or label_delimiter == delimiter):
        raise ValueError(f"{where}: label_delimiter must be null or a non-empty string other than the cell "
                         f"delimiter {delimiter!r}, got {label_delimiter!r}")
    if multi and split == "stratified":
        raise ValueError(f"{where}: split='stratified' needs one label per image; with label_delimiter use "
                         "split='random' or 'column'")
    size = _check_common(where, split, (*SPLITS.names(), "column"), valid_fraction, seed, size, fit, on_error)
    path = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ValueError(f"{where}: path: file not found: {path!r} (relative paths are from the working directory)")
    base = _check_folder(where, "root", root) if root is not None else os.path.dirname(os.path.abspath(path))
    if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)
                                or len(set(classes)) != len(classes) or len(classes) < 2):
        raise ValueError(f"{where}: classes must be a list of at least two distinct names, got {classes!r}")
    header, body = _read_rows(where, path, delimiter)
    j_image = _column(where, path, "image_column", image_column, header)
    j_label = _column(where, path, "label_column", label_column, header)
    j_split = _column(where, path, "split_column", split_column, header) if split == "column" else None

    report = _Report(f"{where} {path!r}", on_error)
    rows = []  # (line, image path, labels (a tuple of class names), split mark) of the rows that pass the checks
    for line, r in body:
        image, cell = r[j_image].strip(), r[j_label].strip()
        # multi-label: "cat dog" -> ("cat", "dog"), empty -> none of the classes
        labels = tuple(dict.fromkeys(x.strip() for x in cell.split(label_delimiter) if x.strip())) if multi else (
            (cell,) if cell else ())
        outside = [x for x in labels if classes is not None and x not in classes]
        full = os.path.join(base, image)
        if not image:
            report.add(f"{path} line {line}", f"no image path in column {image_column!r}")
        elif not labels and not multi:
            report.add(full, f"line {line}: no label in column {label_column!r}")
        elif outside:
            report.add(full, f"line {line}: label {outside[0]!r} is not one of the classes ({', '.join(classes)})")
        elif not os.path.isfile(full):
            report.add(full, f"line {line}: file not found" + (f" (relative to {base})" if full != image else ""))
        else:
            rows.append((line, full, labels, None if j_split is None else r[j_split]))
    groups = ["all"] * len(rows)
    if j_split is not None and rows:
        train_idx, valid_idx = column_split([m for *_, m in rows], f"{where} {path!r}", split_column,
                                            lambda i: f"line {rows[i][0]}")
        for i in valid_idx:
            groups[i] = "valid"
        for i in train_idx:
            groups[i] = "train"
        train_labels = {x for i in train_idx for x in rows[i][2]}
        only_valid = [i for i in valid_idx if not set(rows[i][2]) <= train_labels]
        for i in only_valid:
            unseen = next(x for x in rows[i][2] if x not in train_labels)
            report.add(rows[i][1], f"line {rows[i][0]}: label {unseen!r} is in no train row, so the model "
                                   "would never learn it")
        if only_valid:
            drop = set(only_valid)
            rows = [row for i, row in enumerate(rows) if i not in drop]
            groups = [g for i, g in enumerate(groups) if i not in drop]
    report.check()
    if not rows:
        report.finish(0)
    names = tuple(classes) if classes is not None else tuple(
        _class_order([x for _, _, labels, _ in rows for x in labels]))
    if len(names) < (1 if multi else 2):
        raise ValueError(f"{where}: {path!r} has {len(names)} distinct label{'' if len(names) == 1 else 's'} "
                         f"({', '.join(names)}) in column {label_column!r}; "
                         f"{'multi-label data needs at least one' if multi else 'classification needs at least two'}")
    index = {c: k for k, c in enumerate(names)}
    # Decoding may drop rows (on_error="skip"): it carries each row's number, labels follow from it.
    images, kept_rows, paths, kept_groups = _decode_labelled(where, [full for _, full, _, _ in rows],
                                                             list(range(len(rows))), groups, size, fit, report)
    if multi:
        labels = np.zeros((len(kept_rows), len(names)), np.float32)
        for i, row in enumerate(kept_rows):
            labels[i, [index[x] for x in rows[row][2]]] = 1.0
    else:
        labels = np.array([index[rows[row][2][0]] for row in kept_rows], np.int64)
    train_idx, valid_idx = _labelled_split(where, split, labels if not multi else kept_rows, kept_groups,
                                           valid_fraction, seed, "train", "valid")
    skipped = report.finish(len(images))
    return ImageFiles(os.path.splitext(os.path.basename(path))[0], images, labels, names, train_idx, valid_idx,
                      tuple(paths), skipped, path)
