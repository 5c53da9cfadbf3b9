"""Tabular data: typed columns from a CSV file or from scikit-learn's bundled tables, and the
encoding fitted on the training split.

Column kinds. A column is *categorical* when any present value is not a number, or when all
its values are integers with at most ``max_categories`` distinct values; otherwise it is
*continuous*. ``categorical=`` / ``continuous=`` override the detection for the columns they
name. The target follows the same rule unless ``target_type`` says otherwise.

Missing values (the empty string, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``?``, any case):

- continuous: filled with the training split's median, and, when the training split has
  missing values in that column, a categorical indicator column ``<name>_na`` is added;
- categorical: the category ``#na#`` (code 0), which also takes values the training split
  never showed.

Continuous columns are then standardised with the training split's mean and standard
deviation. Every statistic comes from the training rows only, so the valid split is encoded
as unseen data would be.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from torchdeck.data._base import register_dataset, seeded_split

__all__ = ["Table", "TabularDataset", "TabularEncoding", "read_csv", "NA_CATEGORY", "MISSING_STRINGS"]

NA_CATEGORY = "#na#"
MISSING_STRINGS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
Kind = Literal["categorical", "continuous"]


# -- the raw table ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Table:
    """Named columns of equal length, as read: categorical columns are object arrays of
    ``str`` (``None`` where missing), continuous columns float64 arrays (NaN where missing).

    ``table["age"]`` is a column; ``table[idx]`` (an index, a slice, or an index or boolean
    array) is a table of those rows.
    """

    columns: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        lengths = {name: len(col) for name, col in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Table: columns differ in length: {lengths}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self.columns:
                raise ValueError(f"Table: no column {key!r}; columns: {', '.join(self.columns)}")
            return self.columns[key]
        if isinstance(key, (int, np.integer)):
            key = [key]  # a one-row table, not a table of scalars
        return Table({name: col[key] for name, col in self.columns.items()})

    def row(self, i: int) -> dict[str, Any]:
        return {name: col[i] for name, col in self.columns.items()}

    def __repr__(self) -> str:
        return f"Table({len(self)} rows: {', '.join(self.columns)})"


@dataclasses.dataclass(frozen=True)
class TabularDataset:
    """A table of features, a target column and a fixed train/valid split.

    ``targets`` holds class indices into ``classes`` (int64) for a categorical target, and
    the values (float64) for a continuous one (``classes`` is then empty).
    """

    name: str
    table: Table
    categorical: tuple[str, ...]
    continuous: tuple[str, ...]
    target: str
    targets: np.ndarray
    classes: tuple[str, ...]
    train_idx: np.ndarray
    valid_idx: np.ndarray
    source: str = ""

    @property
    def target_kind(self) -> Kind:
        return "categorical" if self.classes else "continuous"

    def split(self, which: str) -> tuple[Table, np.ndarray]:
        """``(table rows, targets)`` of one split."""
        idx = {"train": self.train_idx, "valid": self.valid_idx}.get(which)
        if idx is None:
            raise ValueError(f"{self.name}: unknown split {which!r}; allowed: train, valid")
        return self.table[idx], self.targets[idx]

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        target = f"{len(self.classes)} classes" if self.classes else "continuous"
        return (f"TabularDataset({self.name!r}, {len(self)} rows, {len(self.categorical)} categorical + "
                f"{len(self.continuous)} continuous columns, target {self.target!r} ({target}), "
                f"train {len(self.train_idx)} / valid {len(self.valid_idx)})")


# -- the encoding fitted on the training split -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TabularEncoding:
    """Turns table rows into one float32 array: category codes first, then standardised
    continuous values. Fitted on training rows with :meth:`fit`; applies to any rows.

    Category codes travel as floats so a batch stays one tensor; float32 holds integers
    exactly up to 2**24 categories.
    """

    categorical: tuple[str, ...]         # source columns, then the ``<name>_na`` indicators
    continuous: tuple[str, ...]
    vocab: Mapping[str, tuple[str, ...]]  # column -> categories; index 0 is NA_CATEGORY
    indicators: Mapping[str, str]        # ``<name>_na`` -> the continuous column it watches
    fill: np.ndarray                     # (n_cont,) training medians
    mean: np.ndarray                     # (n_cont,) after filling
    std: np.ndarray                      # (n_cont,) after filling; 1 where the column is constant

    @classmethod
    def fit(cls, table: Table, categorical: Sequence[str], continuous: Sequence[str]) -> "TabularEncoding":
        categorical, continuous = tuple(categorical), tuple(continuous)
        vocab = {c: (NA_CATEGORY, *_sorted_categories(table[c])) for c in categorical}
        indicators: dict[str, str] = {}
        fill, mean, std = (np.zeros(len(continuous)) for _ in range(3))
        for j, c in enumerate(continuous):
            values = np.asarray(table[c], np.float64)
            missing = np.isnan(values)
            if missing.all():
                raise ValueError(f"column {c!r} has no values in the training split; drop it or mark it categorical")
            if missing.any():
                name = f"{c}_na"
                if name in table.columns or name in vocab:
                    raise ValueError(f"column {c!r} has missing values and its indicator name {name!r} is taken "
                                     "by another column; rename that column")
                indicators[name] = c
                vocab[name] = (NA_CATEGORY, "False", "True")
            fill[j] = np.median(values[~missing])
            filled = np.where(missing, fill[j], values)
            mean[j], sd = filled.mean(), filled.std()
            std[j] = sd if sd > 1e-12 else 1.0
        return cls(categorical + tuple(indicators), continuous, vocab, indicators, fill, mean, std)

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the encoded columns, in order."""
        return self.categorical + self.continuous

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Number of categories (``#na#`` included) of each categorical column, in order."""
        return tuple(len(self.vocab[c]) for c in self.categorical)

    def transform(self, table: Table) -> np.ndarray:
        """(N, n_categorical + n_continuous) float32."""
        n = len(table)
        out = np.empty((n, len(self.columns)), np.float32)
        for j, c in enumerate(self.categorical):
            if c in self.indicators:
                missing = np.isnan(np.asarray(table[self.indicators[c]], np.float64))
                out[:, j] = np.where(missing, 2, 1)  # codes of "True" / "False"
                continue
            index = {v: k for k, v in enumerate(self.vocab[c])}
            # Unknown and missing values both map to code 0 (#na#).
            out[:, j] = np.fromiter((index.get(v, 0) if v is not None else 0 for v in table[c]), np.int64, count=n)
        k = len(self.categorical)
        for j, c in enumerate(self.continuous):
            values = np.asarray(table[c], np.float64)
            filled = np.where(np.isnan(values), self.fill[j], values)
            out[:, k + j] = (filled - self.mean[j]) / self.std[j]
        return out


def _sorted_categories(column: np.ndarray) -> list[str]:
    """Distinct present values, numerically ordered when they all are numbers."""
    values = {v for v in column if v is not None}
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


# -- typing columns ----------------------------------------------------------------------------
def _is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING_STRINGS


def _numbers(values: Sequence[str | None]) -> np.ndarray | None:
    """Float64 with NaN for missing; None when a present value is not a number."""
    out = np.empty(len(values))
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            return None
        if not math.isfinite(out[i]):
            return None
    return out


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclasses.dataclass
class _RawColumn:
    """One column as read: its text (None = missing) and, when every value is a number, the numbers."""

    name: str
    text: list[str | None]
    numbers: np.ndarray | None
    lines: Sequence[int] | None = None  # file line of each value, for errors

    @classmethod
    def from_text(cls, name: str, text: list[str | None], lines: Sequence[int]) -> "_RawColumn":
        return cls(name, text, _numbers(text), lines)

    def row_name(self, i: int) -> str:
        return f"line {self.lines[i]}" if self.lines is not None else f"row {i}"

    @classmethod
    def from_numbers(cls, name: str, numbers: np.ndarray) -> "_RawColumn":
        numbers = np.asarray(numbers, np.float64)
        return cls(name, [None if np.isnan(x) else _number_text(x) for x in numbers], numbers)

    def detect(self, max_categories: int) -> Kind:
        if self.numbers is None:
            return "categorical"
        present = self.numbers[~np.isnan(self.numbers)]
        integral = bool(np.all(present == np.round(present)))
        return "categorical" if integral and len(np.unique(present)) <= max_categories else "continuous"

    def typed(self, kind: Kind, where: str) -> np.ndarray:
        if kind == "categorical":
            return np.array(self.text, dtype=object)
        if self.numbers is None:
            bad = next(i for i, v in enumerate(self.text) if v is not None and _numbers([v]) is None)
            raise ValueError(f"{where}: column {self.name!r} is continuous but {self.row_name(bad)} holds "
                             f"{self.text[bad]!r}; mark it categorical or fix the value")
        return self.numbers


def _check_names(where: str, field: str, names: Sequence[str] | None, header: Sequence[str]) -> tuple[str, ...]:
    if names is None:
        return ()
    if isinstance(names, str):
        names = [names]
    for c in names:
        if c not in header:
            raise ValueError(f"{where}: {field} names column {c!r}, which the data lacks; columns: {', '.join(header)}")
    return tuple(names)


def _build(name: str, source: str, columns: list[_RawColumn], target: _RawColumn, *,
           categorical: Sequence[str] | None, continuous: Sequence[str] | None, drop: Sequence[str] | None,
           target_type: str, max_categories: int, valid_fraction: float, seed: int,
           class_names: Sequence[str] | None = None) -> TabularDataset:
    """Type the columns and the target, split, and assemble the data set."""
    where = source or name
    header = [c.name for c in columns]
    if isinstance(max_categories, bool) or not isinstance(max_categories, int) or max_categories < 1:
        raise ValueError(f"{where}: max_categories must be a positive integer, got {max_categories!r}")
    if target_type not in ("auto", "categorical", "continuous"):
        raise ValueError(f"{where}: target_type must be 'auto', 'categorical' or 'continuous', got {target_type!r}")
    cat = _check_names(where, "categorical", categorical, header)
    cont = _check_names(where, "continuous", continuous, header)
    dropped = _check_names(where, "drop", drop, header)
    for c in cat:
        if c in cont:
            raise ValueError(f"{where}: column {c!r} is named both categorical and continuous; pick one")
    kinds: dict[str, Kind] = {}
    for col in columns:
        if col.name in dropped:
            continue
        kind: Kind = "categorical" if col.name in cat else "continuous" if col.name in cont else col.detect(
            max_categories)
        if all(v is None for v in col.text):
            raise ValueError(f"{where}: column {col.name!r} has no values; drop it with drop=[{col.name!r}]")
        kinds[col.name] = kind
    if not kinds:
        raise ValueError(f"{where}: no feature columns besides the target {target.name!r}")
    table = Table({c.name: c.typed(kinds[c.name], where) for c in columns if c.name in kinds})

    missing = [i for i, v in enumerate(target.text) if v is None]
    if missing:
        rows = ", ".join(target.row_name(i) for i in missing[:5])
        raise ValueError(f"{where}: the target column {target.name!r} is missing on {len(missing)} rows ({rows}"
                         f"{', ...' if len(missing) > 5 else ''}); fill or drop those rows")
    target_kind = target.detect(max_categories) if target_type == "auto" else target_type
    if target_kind == "categorical":
        labels = np.array(target.text, dtype=object)
        found = _sorted_categories(labels)
        if len(found) < 2:
            raise ValueError(f"{where}: the target column {target.name!r} has one class ({found[0]!r}); "
                             "classification needs at least two")
        index = {v: k for k, v in enumerate(found)}
        targets = np.array([index[v] for v in labels], np.int64)
        classes = tuple(class_names) if class_names is not None else tuple(found)
    else:
        targets = target.typed("continuous", where)
        classes = ()
    if len(targets) < 2:
        raise ValueError(f"{where}: {len(targets)} data row; a train/valid split needs at least 2")
    train_idx, valid_idx = seeded_split(len(targets), valid_fraction, seed)
    return TabularDataset(name, table, tuple(c for c in kinds if kinds[c] == "categorical"),
                          tuple(c for c in kinds if kinds[c] == "continuous"), target.name, targets, classes,
                          train_idx, valid_idx, source)


# -- CSV files -----------------------------------------------------------------------------------
def read_csv(path: str | os.PathLike, target: str, *, categorical: Sequence[str] | None = None,
             continuous: Sequence[str] | None = None, drop: Sequence[str] | None = None,
             target_type: str = "auto", max_categories: int = 20, valid_fraction: float = 0.2, seed: int = 0,
             delimiter: str = ",") -> TabularDataset:
    """A table from a CSV file with a header row; see the module docstring for the rules.

    Args:
        path: the CSV file (UTF-8, a header row naming the columns).
        target: the column to predict.
        categorical / continuous: columns whose kind you fix; the others are detected.
        drop: columns to ignore (ids, free text).
        target_type: ``"auto"``, ``"categorical"`` (classification) or ``"continuous"`` (regression).
        max_categories: integer columns with at most this many distinct values are categorical.
        valid_fraction, seed: the random train/valid split.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"csv: file not found: {path!r}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(f, delimiter=delimiter))]
    rows = [(line, r) for line, r in rows if any(cell.strip() for cell in r)]  # blank lines carry nothing
    if not rows:
        raise ValueError(f"{path}: the file is empty; expected a header row naming the columns, then data rows")
    header = [h.strip() for h in rows[0][1]]
    for j, h in enumerate(header):
        if not h:
            raise ValueError(f"{path}: header column {j + 1} has no name")
        if h in header[:j]:
            raise ValueError(f"{path}: the header names column {h!r} twice")
    body = rows[1:]
    if not body:
        raise ValueError(f"{path}: a header ({', '.join(header)}) but no data rows")
    for line, r in body:
        if len(r) != len(header):
            raise ValueError(f"{path} line {line}: {len(r)} values, the header has {len(header)} columns")
    if target not in header:
        raise ValueError(f"{path}: no target column {target!r}; columns: {', '.join(header)}")
    lines = [line for line, _ in body]
    raw = [_RawColumn.from_text(h, [None if _is_missing(r[j]) else r[j].strip() for _, r in body], lines)
           for j, h in enumerate(header)]
    target_col = raw[header.index(target)]
    for names, field in ((categorical, "categorical"), (continuous, "continuous"), (drop, "drop")):
        if names is not None and target in ([names] if isinstance(names, str) else names):
            raise ValueError(f"{path}: {field} names the target column {target!r}; the target is not a feature")
    stem = os.path.splitext(os.path.basename(path))[0]
    return _build(stem, path, [c for c in raw if c.name != target], target_col, categorical=categorical,
                  continuous=continuous, drop=drop, target_type=target_type, max_categories=max_categories,
                  valid_fraction=valid_fraction, seed=seed)


@register_dataset("csv")
def _csv(path: str | None = None, target: str | None = None, categorical: Sequence[str] | None = None,
         continuous: Sequence[str] | None = None, drop: Sequence[str] | None = None, target_type: str = "auto",
         max_categories: int = 20, valid_fraction: float = 0.2, seed: int = 0,
         delimiter: str = ",") -> TabularDataset:
    """``data.load("csv", path=..., target=...)``: :func:`read_csv` under the registry, for the spec."""
    for field, value in (("path", path), ("target", target)):
        if not value:
            raise ValueError(f"csv: {field} is required (got {value!r}); e.g. data.load('csv', path='table.csv', "
                             "target='label')")
    if not os.path.isfile(path):
        # A spec field, so a ValueError (the spec reports those with the field's name).
        raise ValueError(f"csv: path: file not found: {path!r} (relative paths are from the working directory)")
    return read_csv(path, target, categorical=categorical, continuous=continuous, drop=drop,
                    target_type=target_type, max_categories=max_categories, valid_fraction=valid_fraction,
                    seed=seed, delimiter=delimiter)


# -- scikit-learn's bundled tables (shipped with scikit-learn: nothing is downloaded) -------------
def _sklearn_loader(name: str, loader: str, kwargs: Mapping[str, Any],
                    target_type: str) -> Callable[..., TabularDataset]:
    def load(valid_fraction: float = 0.2, seed: int = 0) -> TabularDataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)(**kwargs)
        columns = [_RawColumn.from_numbers(str(f), bunch.data[:, j]) for j, f in enumerate(bunch.feature_names)]
        names = [str(c) for c in bunch.target_names] if target_type == "categorical" else None
        target = _RawColumn.from_numbers("target", bunch.target)
        return _build(name, f"scikit-learn {loader}", columns, target, categorical=None, continuous=None, drop=None,
                      target_type=target_type, max_categories=20, valid_fraction=valid_fraction, seed=seed,
                      class_names=names)

    load.__name__ = name
    load.__doc__ = (f"scikit-learn's {name} table ({loader}), offline, with a fixed seeded train/valid split "
                    "(the split's seed, not the run's).")
    return load


# name -> scikit-learn loader, its arguments, and the kind of target
_SKLEARN = {
    "iris": ("load_iris", {}, "categorical"),
    "wine": ("load_wine", {}, "categorical"),
    "breast_cancer": ("load_breast_cancer", {}, "categorical"),
    # Unscaled: ages, a 1/2 sex column (detected as categorical) and raw measurements.
    "diabetes": ("load_diabetes", {"scaled": False}, "continuous"),
}
for _name, (_loader, _kwargs, _kind) in _SKLEARN.items():
    register_dataset(_name)(_sklearn_loader(_name, _loader, _kwargs, _kind))
