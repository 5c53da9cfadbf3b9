"""Tabular data: scikit-learn's bundled tables, the CSV reader, and the training-split encoding.

The encoding is checked against statistics recomputed here with numpy from the raw file.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from torchdeck import data
from torchdeck.data import NA_CATEGORY, TabularEncoding


@pytest.mark.parametrize(("name", "loader", "classes"), [
    ("iris", "load_iris", ("setosa", "versicolor", "virginica")),
    ("wine", "load_wine", ("class_0", "class_1", "class_2")),
    ("breast_cancer", "load_breast_cancer", ("malignant", "benign")),
    ("diabetes", "load_diabetes", ()),
])
def test_builtin_tables_match_scikit_learn(name, loader, classes):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)(**({"scaled": False} if name == "diabetes" else {}))
    ds = data.load(name)
    assert isinstance(ds, data.TabularDataset) and len(ds) == len(bunch.target)
    assert ds.table.names == tuple(bunch.feature_names)
    assert ds.classes == classes
    if classes:
        assert ds.target_kind == "categorical" and ds.targets.tolist() == bunch.target.tolist()
    else:
        assert ds.target_kind == "continuous"
        np.testing.assert_array_equal(ds.targets, bunch.target)
    for j, col in enumerate(bunch.feature_names):
        if col in ds.continuous:
            np.testing.assert_array_equal(ds.table[col], bunch.data[:, j])
        else:  # diabetes' sex column: codes 1 / 2, read as categories
            assert [float(v) for v in ds.table[col]] == bunch.data[:, j].tolist()
    expected_categorical = ("sex",) if name == "diabetes" else ()
    assert ds.categorical == expected_categorical
    # a fixed, seeded, complete and disjoint split
    again, other = data.load(name), data.load(name, seed=1)
    assert np.array_equal(ds.valid_idx, again.valid_idx) and not np.array_equal(ds.valid_idx, other.valid_idx)
    assert sorted([*ds.train_idx, *ds.valid_idx]) == list(range(len(ds)))
    assert len(ds.valid_idx) == round(0.2 * len(ds))
    table, targets = ds.split("valid")
    assert len(table) == len(targets) == len(ds.valid_idx)
    assert np.array_equal(targets, ds.targets[ds.valid_idx])


HEADER = ["id", "city", "rooms", "area", "score", "label"]
ROWS = [
    ["1", "paris", "2", "51.5", "0.3", "yes"],
    ["2", "lyon", "3", "", "1.5", "no"],
    ["3", "paris", "NA", "70.25", "2.5", "yes"],
    ["4", "", "1", "33.0", "0.1", "no"],
    ["5", "nice", "2", "48.0", "?", "yes"],
    ["6", "lyon", "4", "91.0", "3.2", "no"],
    ["7", "paris", "3", "n/a", "1.1", "yes"],
    ["8", "nice", "2", "45.5", "0.9", "no"],
    ["9", "lyon", "5", "120.0", "4.4", "yes"],
    ["10", "paris", "1", "30.0", "0.2", "no"],
]


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def homes(tmp_path):
    rows = [[str(i + 1), *r[1:]] for i, r in enumerate(ROWS * 3)]  # 30 rows, 30 distinct ids
    return _write(tmp_path / "homes.csv", HEADER, rows)


def test_column_kinds_are_detected_and_overridable(homes):
    ds = data.read_csv(homes, target="label")
    # text -> categorical; few whole numbers -> categorical; many whole numbers / decimals -> continuous
    assert ds.categorical == ("city", "rooms")
    assert ds.continuous == ("id", "area", "score")
    assert ds.classes == ("no", "yes") and ds.target_kind == "categorical"
    assert ds.table["city"][3] is None and np.isnan(ds.table["area"][1]) and np.isnan(ds.table["score"][4])
    assert ds.table["rooms"][2] is None  # "NA"
    fixed = data.read_csv(homes, target="label", categorical=["score"], continuous=["rooms"], drop=["id"])
    assert fixed.categorical == ("city", "score") and fixed.continuous == ("rooms", "area")
    assert "id" not in fixed.table.names
    few = data.read_csv(homes, target="label", max_categories=3)
    assert "rooms" in few.continuous  # 5 distinct values > 3
    assert data.read_csv(homes, target="id").target_kind == "continuous"  # 30 distinct whole numbers
    grades = _write(homes.parent / "grades.csv", ["x", "grade"],
                    [[str(i), g] for i, g in enumerate("10 9 2 10 9".split())])
    assert data.read_csv(grades, target="grade").classes == ("2", "9", "10")  # numeric order
    assert data.read_csv(grades, target="grade", target_type="continuous").target_kind == "continuous"


def test_encoding_uses_training_statistics_only(homes):
    ds = data.read_csv(homes, target="label", seed=4)
    train, _ = ds.split("train")
    enc = TabularEncoding.fit(train, ds.categorical, ds.continuous)
    # "area" and "score" have missing values in the training rows -> indicator columns
    assert enc.categorical == ("city", "rooms", "area_na", "score_na")
    assert enc.continuous == ("id", "area", "score")
    assert enc.vocab["city"] == (NA_CATEGORY, "lyon", "nice", "paris")
    assert enc.cardinalities == (4, 6, 3, 3)
    x = enc.transform(ds.table)
    assert x.shape == (30, 7) and x.dtype == np.float32
    # Reference, from the raw training values
    raw_area = np.array([np.nan if r[3] in ("", "n/a") else float(r[3]) for r in ROWS * 3])
    train_area = raw_area[ds.train_idx]
    median = np.median(train_area[~np.isnan(train_area)])
    filled = np.where(np.isnan(train_area), median, train_area)
    expected = (np.where(np.isnan(raw_area), median, raw_area) - filled.mean()) / filled.std()
    np.testing.assert_allclose(x[:, 5], expected, rtol=1e-5, atol=1e-6)
    assert np.all(x[:, 2] == np.where(np.isnan(raw_area), 2, 1))  # area_na: True / False codes
    city = [r[1] or None for r in ROWS * 3]
    assert x[:, 0].tolist() == [0 if c is None else enc.vocab["city"].index(c) for c in city]
    # training columns come out standardised
    assert np.allclose(x[ds.train_idx, 4:].mean(axis=0), 0, atol=1e-5)
    assert np.allclose(x[ds.train_idx, 4:].std(axis=0), 1, atol=1e-4)


def test_unseen_categories_and_missing_map_to_na():
    table = data.Table({"colour": np.array(["red", "blue", "red", None], dtype=object),
                        "size": np.array([1.0, 2.0, 3.0, 4.0])})
    enc = TabularEncoding.fit(table[:3], ["colour"], ["size"])
    assert enc.indicators == {}  # no missing "size" in training: no indicator
    new = data.Table({"colour": np.array(["green", None, "blue"], dtype=object), "size": np.array([np.nan, 1.0, 2.0])})
    x = enc.transform(new)
    assert x[:, 0].tolist() == [0, 0, 1]
    assert x[0, 1] == pytest.approx((2.0 - 2.0) / np.std([1.0, 2.0, 3.0]))  # NaN -> training median


def test_constant_column_is_not_divided_by_zero():
    table = data.Table({"c": np.array([5.0, 5.0, 5.0])})
    x = TabularEncoding.fit(table, [], ["c"]).transform(table)
    assert np.all(x == 0.0)


def test_table_indexing():
    t = data.Table({"a": np.arange(5.0), "b": np.array(list("vwxyz"), dtype=object)})
    assert len(t) == 5 and t.names == ("a", "b")
    sub = t[np.array([4, 0])]
    assert sub["a"].tolist() == [4.0, 0.0] and sub["b"].tolist() == ["z", "v"]
    assert t.row(1) == {"a": 1.0, "b": "w"}
    with pytest.raises(ValueError, match=r"Table: no column 'c'; columns: a, b"):
        t["c"]
    with pytest.raises(ValueError, match=r"Table: columns differ in length"):
        data.Table({"a": np.zeros(2), "b": np.zeros(3)})


def test_load_csv_through_the_registry(homes):
    ds = data.load("csv", path=str(homes), target="label")
    assert ds.name == "homes" and len(ds) == 30
    with pytest.raises(ValueError, match=r"csv: path is required \(got None\)"):
        data.load("csv", target="label")


def _error(tmp_path, header, rows, **kwargs):
    path = _write(tmp_path / "bad.csv", header, rows)
    with pytest.raises(ValueError) as info:
        data.read_csv(path, **{"target": "label", **kwargs})
    return str(info.value)


def test_errors_name_the_file_and_the_column(tmp_path):
    rows = [r[:] for r in ROWS]
    msg = _error(tmp_path, HEADER, rows, target="price")
    assert "bad.csv: no target column 'price'; columns: id, city, rooms, area, score, label" in msg
    assert "bad.csv: the file is empty" in _error(tmp_path, None, [])
    assert "bad.csv: a header (id, city, rooms, area, score, label) but no data rows" in _error(tmp_path, HEADER, [])
    one_class = [r[:-1] + ["yes"] for r in ROWS]
    assert "the target column 'label' has one class ('yes'); classification needs at least two" in _error(
        tmp_path, HEADER, one_class)
    ragged = [r[:] for r in ROWS]
    ragged[3] = ragged[3][:4]
    assert "bad.csv line 5: 4 values, the header has 6 columns" in _error(tmp_path, HEADER, ragged)
    no_target = [r[:] for r in ROWS]
    no_target[1][-1], no_target[6][-1] = "", "NA"
    assert "the target column 'label' is missing on 2 rows (line 3, line 8); fill or drop those rows" in _error(
        tmp_path, HEADER, no_target)
    assert "column 'city' is continuous but line 2 holds 'paris'; mark it categorical" in _error(
        tmp_path, HEADER, ROWS, continuous=["city"])
    assert "categorical names column 'town', which the data lacks" in _error(tmp_path, HEADER, ROWS,
                                                                             categorical=["town"])
    assert "column 'rooms' is named both categorical and continuous" in _error(
        tmp_path, HEADER, ROWS, categorical=["rooms"], continuous=["rooms"])
    assert "drop names the target column 'label'" in _error(tmp_path, HEADER, ROWS, drop=["label"])
    assert "the header names column 'city' twice" in _error(tmp_path, ["id", "city", "city", "a", "b", "label"], ROWS)
    empty_col = [r[:2] + [""] + r[3:] for r in ROWS]
    assert "column 'rooms' has no values; drop it with drop=['rooms']" in _error(tmp_path, HEADER, empty_col)
    assert "target_type must be 'auto', 'categorical' or 'continuous', got 'class'" in _error(
        tmp_path, HEADER, ROWS, target_type="class")
    with pytest.raises(FileNotFoundError, match=r"csv: file not found: '.*nowhere\.csv'"):
        data.read_csv(tmp_path / "nowhere.csv", target="label")
