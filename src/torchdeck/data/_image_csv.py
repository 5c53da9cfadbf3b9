"""Labelled images listed in a CSV file: a header row, then one row per image with its path and label.

Paths are relative to the CSV file's folder (or to ``root=``); absolute paths stay as they
are. Labels are class names; the classes are the distinct labels, sorted (numerically when
they are all numbers), unless ``classes=`` fixes them and their order. Rows are checked
before any image is decoded: a missing path or label, a file that is not there, a label
outside ``classes``, or (split by a column) a label that only the valid rows have, are bad
rows, raised together or skipped with a report as in :mod:`torchdeck.data._folders`.
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
              delimiter: str = ",") -> ImageFiles:
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
    """
    where = "image_csv"
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
    rows = []  # (line, image path, label, split mark) of the rows that pass the checks
    for line, r in body:
        image, label = r[j_image].strip(), r[j_label].strip()
        full = os.path.join(base, image)
        if not image:
            report.add(f"{path} line {line}", f"no image path in column {image_column!r}")
        elif not label:
            report.add(full, f"line {line}: no label in column {label_column!r}")
        elif classes is not None and label not in classes:
            report.add(full, f"line {line}: label {label!r} is not one of the classes ({', '.join(classes)})")
        elif not os.path.isfile(full):
            report.add(full, f"line {line}: file not found" + (f" (relative to {base})" if full != image else ""))
        else:
            rows.append((line, full, label, None if j_split is None else r[j_split]))
    groups = ["all"] * len(rows)
    if j_split is not None and rows:
        train_idx, valid_idx = column_split([m for *_, m in rows], f"{where} {path!r}", split_column,
                                            lambda i: f"line {rows[i][0]}")
        for i in valid_idx:
            groups[i] = "valid"
        for i in train_idx:
            groups[i] = "train"
        train_labels = {rows[i][2] for i in train_idx}
        only_valid = [i for i in valid_idx if rows[i][2] not in train_labels]
        for i in only_valid:
            report.add(rows[i][1], f"line {rows[i][0]}: label {rows[i][2]!r} is in no train row, so the model "
                                   "would never learn it")
        if only_valid:
            drop = set(only_valid)
            rows = [row for i, row in enumerate(rows) if i not in drop]
            groups = [g for i, g in enumerate(groups) if i not in drop]
    report.check()
    if not rows:
        report.finish(0)
    names = tuple(classes) if classes is not None else tuple(_class_order([label for _, _, label, _ in rows]))
    if len(names) < 2:
        raise ValueError(f"{where}: {path!r} has {len(names)} distinct label ({', '.join(names)}) in column "
                         f"{label_column!r}; classification needs at least two")
    index = {c: k for k, c in enumerate(names)}
    images, labels, paths, kept_groups = _decode_labelled(where, [full for _, full, _, _ in rows],
                                                          [index[label] for _, _, label, _ in rows], groups, size,
                                                          fit, report)
    train_idx, valid_idx = _labelled_split(where, split, labels, kept_groups, valid_fraction, seed, "train", "valid")
    skipped = report.finish(len(images))
    return ImageFiles(os.path.splitext(os.path.basename(path))[0], images, labels, names, train_idx, valid_idx,
                      tuple(paths), skipped, path)
