"""Splits: disjoint, complete, deterministic for a seed; stratified shares; split columns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdeck import data


def _is_partition(train, valid, n):
    return (len(np.intersect1d(train, valid)) == 0 and np.array_equal(np.union1d(train, valid), np.arange(n))
            and np.all(np.diff(train) > 0) and np.all(np.diff(valid) > 0))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 500), fraction=st.floats(0.01, 0.6), seed=st.integers(0, 2**31))
def test_random_split_partitions_and_depends_only_on_its_arguments(n, fraction, seed):
    train, valid = data.random_split(n, fraction, seed)
    assert _is_partition(train, valid, n)
    assert len(valid) == max(1, round(n * fraction))
    np.random.seed(seed % 7)  # the global RNG plays no part
    again = data.random_split(n, fraction, seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], valid)
    assert train.dtype == valid.dtype == np.int64


def test_random_split_changes_with_the_seed():
    assert not np.array_equal(data.random_split(100, 0.2, 0)[1], data.random_split(100, 0.2, 1)[1])


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=6), fraction=st.floats(0.05, 0.6),
       seed=st.integers(0, 1000))
def test_stratified_split_keeps_each_class_share(counts, fraction, seed):
    if max(counts) < 2:
        counts = [*counts, 2]
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    train, valid = data.stratified_split(labels, fraction, seed)
    assert _is_partition(train, valid, len(labels))
    for c, n_c in enumerate(counts):
        expected = 0 if n_c < 2 else min(n_c - 1, max(1, round(n_c * fraction)))
        assert np.sum(labels[valid] == c) == expected
    again = data.stratified_split(labels, fraction, seed)
    assert np.array_equal(again[1], valid)


def test_split_registry_names():
    assert data.SPLITS.names() == ["random", "stratified"]
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    assert np.array_equal(data.SPLITS["random"](labels, 0.25, 3)[1], data.random_split(8, 0.25, 3)[1])


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda: data.random_split(1, 0.2), r"a train/valid split needs at least 2 samples, got 1"),
    (lambda: data.random_split(10, 0.0), r"valid_fraction must be a number in \(0, 1\), got 0\.0"),
    (lambda: data.random_split(10, True), r"valid_fraction must be a number in \(0, 1\), got True"),
    (lambda: data.random_split(2, 0.9), r"valid_fraction 0\.9 of 2 samples leaves none for training"),
    (lambda: data.random_split(10, 0.2, seed=-3), r"seed must be a non-negative integer, got -3"),
    (lambda: data.stratified_split([0, 1, 2], 0.5), r"a stratified split needs a class with at least 2 samples"),
])
def test_split_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_column_split_reads_words_and_booleans():
    values = ["train", "Valid", "TRUE", "false", " 1 ", "0", "val", "training", "yes", "no", "1.0"]
    train, valid = data.column_split(values, "t.csv", "part")
    assert valid.tolist() == [1, 2, 4, 6, 8, 10] and train.tolist() == [0, 3, 5, 7, 9]


def test_column_split_names_the_bad_rows():
    values = ["train", "test", None, "valid", "?"] + ["x"] * 5
    with pytest.raises(ValueError, match=r"t\.csv: split column 'part' must mark each row train or valid; 8 rows do "
                                         r"not \(line 3 holds 'test', line 4 holds None, line 6 holds '\?', line 7 "
                                         r"holds 'x', line 8 holds 'x', \.\.\.\)"):
        data.column_split(values, "t.csv", "part", row_name=lambda i: f"line {i + 2}")
