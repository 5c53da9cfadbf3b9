"""Built-in data: the digits split and the TensorLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdeck import data


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_digits_split_is_fixed_disjoint_and_complete(digits):
    assert digits.images.shape == (1797, 8, 8, 1) and digits.images.dtype == np.uint8
    train, valid = set(digits.train_idx.tolist()), set(digits.valid_idx.tolist())
    assert not train & valid
    assert train | valid == set(range(1797))
    assert len(valid) == round(1797 * 0.2)
    again = data.load("digits")
    assert np.array_equal(again.train_idx, digits.train_idx) and np.array_equal(again.valid_idx, digits.valid_idx)
    other = data.load("digits", seed=1)
    assert not np.array_equal(other.valid_idx, digits.valid_idx)


def test_digits_match_scikit_learn(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    assert np.array_equal(digits.labels, bunch.target)
    assert digits.images.max() == 255 and digits.images.min() == 0
    np.testing.assert_allclose(digits.images[..., 0] / 255.0 * 16.0, bunch.images, atol=16 / 255 / 2 + 1e-9)
    assert digits.classes == tuple("0123456789")
    x, y = digits.split("valid")
    assert np.array_equal(x, digits.images[digits.valid_idx]) and np.array_equal(y, digits.labels[digits.valid_idx])
    with pytest.raises(ValueError, match=r"digits: unknown split 'test'; allowed: train, valid"):
        digits.split("test")


def test_seeded_split_depends_only_on_its_arguments():
    a = data.seeded_split(100, 0.25, seed=3)
    b = data.seeded_split(100, 0.25, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a[1]) == 25 and len(a[0]) == 75
    with pytest.raises(ValueError, match=r"valid_fraction must be in \(0, 1\), got 1\.0"):
        data.seeded_split(10, 1.0, seed=0)


def test_unknown_data_set_names_the_allowed():
    with pytest.raises(ValueError, match=r"unknown data set 'mnist'; allowed: .*digits"):
        data.load("mnist")


def _order(loader):
    return torch.cat([y for _, y in loader]).tolist()


def test_tensor_loader_order_depends_only_on_the_seed():
    x = torch.arange(50).float()[:, None]
    y = torch.arange(50)
    torch.manual_seed(0)
    a = data.TensorLoader(x, y, 8, shuffle=True, seed=5)
    first_a, second_a = _order(a), _order(a)
    torch.manual_seed(12345)  # the global RNG plays no part
    torch.rand(7)
    b = data.TensorLoader(x, y, 8, shuffle=True, seed=5)
    assert _order(b) == first_a and _order(b) == second_a
    assert first_a != second_a  # each pass reshuffles
    assert sorted(first_a) == list(range(50))
    assert _order(data.TensorLoader(x, y, 8, shuffle=True, seed=6)) != first_a
    for xb, yb in data.TensorLoader(x, y, 8, shuffle=True, seed=5):
        assert torch.equal(xb[:, 0].long(), yb)  # pairs stay together


def test_tensor_loader_batches_and_lengths():
    x, y = torch.zeros(10, 2), torch.arange(10)
    assert [len(b[1]) for b in data.TensorLoader(x, y, 4)] == [4, 4, 2]
    assert len(data.TensorLoader(x, y, 4)) == 3
    assert [len(b[1]) for b in data.TensorLoader(x, y, 4, drop_last=True)] == [4, 4]
    assert _order(data.TensorLoader(x, y, 4)) == list(range(10))
    with pytest.raises(ValueError, match=r"TensorLoader: x has 10 samples, y has 9"):
        data.TensorLoader(x, y[:9])
    with pytest.raises(ValueError, match=r"TensorLoader: batch_size must be a positive integer, got 0"):
        data.TensorLoader(x, y, 0)
