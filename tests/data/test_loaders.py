"""data.loader: every sample once per epoch with worker processes, a seeded order, per-worker
seeding, and the defaults."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdeck import data

from ._image_files import class_tree


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    class_tree(root, {"a": 9, "b": 8})
    return data.image_folder(root, valid_fraction=0.3)


def _keys(images):
    """Each image's bytes: the images are distinct seeded noise, so they identify the samples."""
    return [bytes(x) for x in images.numpy()]


def test_two_workers_yield_every_sample_once_per_epoch(folder):
    dl = data.loader(folder, batch_size=4, shuffle=True, num_workers=2, seed=1)
    assert dl.num_workers == 2 and dl.persistent_workers
    expected = sorted(bytes(x) for x in folder.images)
    orders = []
    for _ in range(2):
        seen = []
        for images, labels in dl:
            assert images.dtype == torch.uint8 and images.shape[1:] == (8, 10, 3) and labels.dtype == torch.int64
            for x, y in zip(images.numpy(), labels.tolist()):
                i = next(k for k in range(len(folder)) if np.array_equal(folder.images[k], x))
                assert folder.labels[i] == y  # each image arrives with its own label
            seen += _keys(images)
        assert sorted(seen) == expected
        orders.append(seen)
    assert orders[0] != orders[1]  # a new order each epoch


def _order(dl):
    return [k for images, _ in dl for k in _keys(images)]


def test_order_depends_only_on_the_seed(folder):
    torch.manual_seed(0)
    first = _order(data.loader(folder, 5, shuffle=True, seed=7))
    torch.manual_seed(123)  # the global RNG plays no part
    torch.rand(3)
    assert _order(data.loader(folder, 5, shuffle=True, seed=7)) == first
    assert _order(data.loader(folder, 5, shuffle=True, seed=8)) != first
    assert _order(data.loader(folder, 5)) == [bytes(x) for x in folder.images]  # not shuffled: file order


def test_split_loads_only_that_split_and_shuffles_train_by_default(folder):
    train = data.loader(folder, 4, split="train")
    valid = data.loader(folder, 4, split="valid")
    assert sorted(_order(train)) == sorted(bytes(folder.images[i]) for i in folder.train_idx)
    assert _order(valid) == [bytes(folder.images[i]) for i in folder.valid_idx]  # in order
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert isinstance(valid.sampler, torch.utils.data.SequentialSampler)


def _draw(sample):
    """A transform that draws from NumPy's global RNG in whichever process runs it."""
    info = torch.utils.data.get_worker_info()
    return info.id if info is not None else -1, np.random.randint(0, 2**31)


def _draws_by_worker(dataset, seed):
    dl = data.loader(dataset, 2, num_workers=2, seed=seed, transform=_draw, persistent_workers=False)
    out = {}
    for workers, values in dl:
        for w, v in zip(workers.tolist(), values.tolist()):
            out.setdefault(w, []).append(v)
    return out


def test_workers_are_seeded_apart_and_reproducibly(folder):
    a = _draws_by_worker(folder, seed=3)
    assert sorted(a) == [0, 1]
    # torch seeds NumPy in each worker from the loader's generator: apart, yet reproducible.
    assert a[0][:4] != a[1][:4]
    assert _draws_by_worker(folder, seed=3) == a
    assert _draws_by_worker(folder, seed=4) != a


def test_defaults(folder, monkeypatch):
    dl = data.loader(folder, 8)
    assert dl.num_workers == 0 and not dl.persistent_workers  # tiny: fewer than 4 batches
    assert dl.pin_memory == torch.cuda.is_available() and dl.batch_size == 8 and not dl.drop_last
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    many = data.default_num_workers(10_000, 8)
    assert 1 <= many <= data.MAX_WORKERS
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")  # 64 processes on this node share its CPUs
    assert data.default_num_workers(10_000, 8) == 1
    assert data.default_num_workers(31, 8) == 0


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda ds: data.loader([1, 2, 3], 2, split="train"), r"split='train' needs a data set with train_idx and "
                                                          r"valid_idx; list has none"),
    (lambda ds: data.loader(object(), 2), r"loader: dataset must support len\(\) and dataset\[i\], got object"),
    (lambda ds: data.loader(ds, 0), r"loader: batch_size must be a positive integer, got 0"),
    (lambda ds: data.loader(ds, 2, split="test"), r"loader: split must be 'train', 'valid' or null, got 'test'"),
    (lambda ds: data.loader(ds, 2, num_workers=-1), r"num_workers must be a non-negative integer or null, got -1"),
    (lambda ds: data.loader(ds, 2, num_workers=0, persistent_workers=True), r"persistent_workers=True needs "
                                                                            r"num_workers > 0"),
    (lambda ds: data.loader(ds, 2, seed=1.5), r"loader: seed must be a non-negative integer, got 1\.5"),
])
def test_bad_arguments(folder, call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(folder)
