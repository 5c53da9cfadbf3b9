"""Augmenting loaders split across ranks: each rank augments only its share, and the ranks
together make the single-process batches bit for bit (in process), and a 2-rank gloo run of an
augmented task ends with the single-process weights (torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from torchdeck import augment as A
from torchdeck import data, tasks
from torchdeck.distributed import shard_loader
from torchdeck.distributed._shard import ShardedAugmentedBatches, is_sharded
from torchdeck.tasks._classification import AugmentedLoader
from torchdeck.tasks._augmented import AugmentedBatches
from torchdeck.train import Learner
from torchdeck.train._checkpoint import capture, restore

from . import _augmented_child as case

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src")
WORLD = 2


def _counted(loader: AugmentedLoader) -> case.CountingAugment:
    loader.augment = case.CountingAugment(loader.augment)
    return loader.augment


def _classification_loaders(n_train: int, batch: int, seed: int = 3):
    """The single-process loader and WORLD ranks' shares of identical ones, each counting its augment calls."""
    task = case.task(n_train=n_train, n_valid=4)
    single = task.loaders(batch, seed=seed)["train"]
    shards = [shard_loader(task.loaders(batch, seed=seed)["train"], r, WORLD, training=True) for r in range(WORLD)]
    counters = [_counted(s.base) for s in shards]
    return single, _counted(single), shards, counters


@pytest.mark.parametrize("n_train,batch", [(32, 8), (28, 8)])  # 28: a last batch of 4
def test_ranks_batch_i_interleaved_is_the_single_process_batch_i_bit_for_bit(n_train, batch):
    single, single_count, shards, counters = _classification_loaders(n_train, batch)
    assert all(isinstance(s, ShardedAugmentedBatches) and s.batch_size == batch // WORLD for s in shards)
    for _ in range(2):  # a new order and new augmentations each pass, drawn alike by all
        ranks = [list(s) for s in shards]
        ref = list(single)
        assert [len(r) for r in ranks] == [len(ref)] * WORLD
        for i, (x, y) in enumerate(ref):
            for r in range(WORLD):
                assert torch.equal(ranks[r][i][0], x[r::WORLD]) and torch.equal(ranks[r][i][1], y[r::WORLD])
    # Each rank augmented only its half; together exactly the single process's images and seeds.
    assert [len(c.seeds) for c in counters] == [n_train] * WORLD  # 2 passes of n_train / 2
    assert len(single_count.seeds) == 2 * n_train
    assert sorted(counters[0].seeds + counters[1].seeds) == sorted(single_count.seeds)
    assert not set(counters[0].seeds) & set(counters[1].seeds)


def test_padding_repeats_the_first_samples_with_their_own_augmentation():
    # 27 samples on 2 ranks: the epoch is padded to 28 with the order's first sample (as TensorLoader's).
    single, _, shards, counters = _classification_loaders(27, 8)
    xs, ys = zip(*single)
    ref_x, ref_y = torch.cat(xs), torch.cat(ys)  # the single-process epoch, in its order
    padded = torch.arange(28) % 27
    for r, s in enumerate(shards):
        got_x, got_y = (torch.cat(t) for t in zip(*s))
        assert torch.equal(got_x, ref_x[padded[r::WORLD]]) and torch.equal(got_y, ref_y[padded[r::WORLD]])
        assert len(counters[r].seeds) == 14


def _shapes_loader(n_train: int, seed: int = 4) -> tuple[AugmentedBatches, list[list[int]]]:
    shapes = data.load("shapes", n=n_train + 4, size=16, seed=0)
    task = tasks.Segmentation(shapes, augment=A.Pipeline(A.FlipX(), A.Rotate(30), A.Zoom((0.8, 1.2))))
    loader = task.loaders(6, seed=seed)["train"]
    calls: list[list[int]] = []
    make = loader.make_batch

    def counting(indices, seeds):
        calls.append(list(indices))
        return make(indices, seeds)

    loader.make_batch = counting
    return loader, calls


def test_segmentation_batches_split_across_ranks_with_their_masks():
    single, single_calls = _shapes_loader(24)
    n = single.n
    assert n % WORLD == 0 and n % 6  # even, with a short last batch
    ref = list(single)
    for r in range(WORLD):
        base, calls = _shapes_loader(24)
        shard = shard_loader(base, r, WORLD, training=True)
        got = list(shard)
        assert len(got) == len(ref)
        for (x, y), (gx, gy) in zip(ref, got):
            assert torch.equal(gx, x[r::WORLD]) and torch.equal(gy, y[r::WORLD])
        assert sum(len(c) for c in calls) == n // WORLD  # only its own samples were augmented
        assert calls == [c[r::WORLD] for c in single_calls]


def test_validation_share_is_unpadded_and_covers_every_sample_once():
    base, _ = _shapes_loader(24)
    n = base.n
    shares = [shard_loader(_shapes_loader(24)[0], r, 3, training=False) for r in range(3)]
    ys = [torch.cat([y for _, y in s]) for s in shares]
    assert sum(len(y) for y in ys) == n
    ref = torch.cat([y for _, y in base])  # the single pass, in its order
    got = torch.empty_like(ref)
    for r, y in enumerate(ys):
        got[r::3] = y
    assert torch.equal(got, ref)


def test_an_augmented_loader_is_sharded_by_type_and_not_split_again():
    loader = case.task(n_train=8, n_valid=4).loaders(4)["train"]
    assert isinstance(loader, AugmentedLoader) and isinstance(loader, AugmentedBatches)
    shard = shard_loader(loader, 1, WORLD, training=True)
    assert isinstance(shard, ShardedAugmentedBatches) and is_sharded(shard)
    assert shard_loader(shard, 1, WORLD, training=True) is shard
    assert shard.generator is loader.generator  # what checkpoints save
    assert repr(shard) == "ShardedAugmentedBatches(rank=1, world=2, training=True)"


def test_a_checkpoint_resumes_the_sharded_augmentations():
    train = shard_loader(case.task(n_train=16, n_valid=4).loaders(8, seed=1)["train"], 1, WORLD, training=True)
    valid = case.task(n_train=16, n_valid=4).loaders(8)["valid"]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(case.SIZE * case.SIZE, 10))
    learner = Learner(model, {"train": train, "valid": valid}, torch.nn.functional.cross_entropy,
                      torch.optim.SGD(model.parameters(), lr=0.1))
    learner.fit(1)
    snap = capture(learner)
    after = list(train)
    restore(learner, snap)
    again = list(train)
    assert len(after) == 2 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(after, again))
    # and they are rank 1's rows of the single process's second pass
    single = case.task(n_train=16, n_valid=4).loaders(8, seed=1)["train"]
    list(single)
    for (x, y), (gx, gy) in zip(single, again):
        assert torch.equal(gx, x[1::WORLD]) and torch.equal(gy, y[1::WORLD])


# -- two gloo ranks under torchrun --------------------------------------------------------------
@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_augmented")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           os.path.join(HERE, "_augmented_child.py"), str(out)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(out / f"augmented-rank{r}.pt") for r in range(WORLD)]
    reference, counter = case.learner()
    reference.fit(case.EPOCHS)
    return ranks, reference, counter


def test_ddp_augmented_weights_equal_single_process_with_the_global_batch(ddp_run):
    (r0, r1), reference, _ = ddp_run
    expected = reference.model.state_dict()
    assert r0["weights"].keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(r0["weights"][name], value, atol=1e-6, rtol=0)
        torch.testing.assert_close(r1["weights"][name], r0["weights"][name], atol=0, rtol=0)
    assert r0["loader"] == r1["loader"] == "ShardedAugmentedBatches"
    assert r0["batches"] == r1["batches"] == {"train": case.N_TRAIN // case.BATCH, "valid": 2}
    assert r0["metrics"]["valid_accuracy"] == pytest.approx(reference.state.metrics["valid_accuracy"], abs=1e-9)


def test_ddp_each_rank_augments_only_its_half(ddp_run):
    (r0, r1), _, counter = ddp_run
    assert len(counter.seeds) == case.EPOCHS * case.N_TRAIN
    assert len(r0["seeds"]) == len(r1["seeds"]) == case.EPOCHS * case.N_TRAIN // WORLD
    assert sorted(r0["seeds"] + r1["seeds"]) == sorted(counter.seeds)
