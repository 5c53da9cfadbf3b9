"""Splitting loaders across ranks, without processes: each rank's share against the single-process loader."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from torchdeck import distributed
from torchdeck.data import TensorLoader, loader
from torchdeck.distributed import (DistributedLoader, RowShardedLoader, ShardedTensorLoader, shard_loader,
                                   shard_positions)


def _xy(n):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    return x, torch.arange(n)


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3), (2, 4)])
def test_training_positions_are_padded_to_equal_shares_and_cover_every_sample(n, world):
    shares = [shard_positions(n, r, world, pad=True) for r in range(world)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == -(-n // world)
    assert set(torch.cat(shares).tolist()) == set(range(n))


@pytest.mark.parametrize("n,world", [(11, 2), (7, 3), (9, 3)])
def test_validation_positions_split_every_sample_exactly_once(n, world):
    shares = torch.cat([shard_positions(n, r, world, pad=False) for r in range(world)])
    assert sorted(shares.tolist()) == list(range(n))


@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_batch_i_together_are_the_single_process_batch_i(shuffle):
    x, y = _xy(24)
    base = TensorLoader(x, y, 6, shuffle=shuffle, seed=3)
    single = [b[1].tolist() for epoch in range(2) for b in base]
    shards = [shard_loader(TensorLoader(x, y, 6, shuffle=shuffle, seed=3), r, 2, training=True) for r in range(2)]
    assert all(isinstance(s, ShardedTensorLoader) and s.batch_size == 3 for s in shards)
    per_rank = [[b[1].tolist() for epoch in range(2) for b in s] for s in shards]
    assert [sorted(a + b) for a, b in zip(*per_rank)] == [sorted(b) for b in single]


def test_generator_is_the_base_loaders_for_checkpoints():
    base = TensorLoader(*_xy(8), 4, shuffle=True)
    assert shard_loader(base, 1, 2, training=True).generator is base.generator


def test_a_sharded_loader_is_not_split_again():
    s = shard_loader(TensorLoader(*_xy(8), 4), 0, 2, training=True)
    assert shard_loader(s, 0, 2, training=True) is s


def test_dataloader_train_uses_a_distributed_sampler_reseeded_per_pass():
    x, y = _xy(10)
    shards = [shard_loader(loader(TensorDataset(x, y), 4, shuffle=True, seed=1, num_workers=0), r, 2, training=True)
              for r in range(2)]
    assert all(isinstance(s, DistributedLoader) for s in shards)
    first = [torch.cat([b[1] for b in s]).tolist() for s in shards]
    second = [torch.cat([b[1] for b in s]).tolist() for s in shards]
    assert len(first[0]) == len(first[1]) == 5 and set(first[0] + first[1]) == set(range(10))
    assert first != second  # set_epoch: a new order each pass
    assert shards[0].state_dict() == {"passes": 2}


def test_dataloader_valid_is_split_without_padding():
    x, y = _xy(11)
    got = [torch.cat([b[1] for b in shard_loader(loader(TensorDataset(x, y), 4, shuffle=False, num_workers=0),
                                                  r, 2, training=False)]).tolist() for r in range(2)]
    assert sorted(got[0] + got[1]) == list(range(11))


def test_other_loaders_keep_rows_of_each_global_batch():
    x, y = _xy(9)
    batches = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 9, 4)]  # 4, 4, 1 rows
    train = [list(RowShardedLoader(batches, r, 2, training=True)) for r in range(2)]
    assert [len(t) for t in train] == [3, 3]  # the 1-row batch is repeated so both ranks step
    valid = [list(shard_loader(batches, r, 2, training=False)) for r in range(2)]
    assert sorted(torch.cat([b[1] for v in valid for b in v]).tolist()) == list(range(9))


def test_a_validation_set_smaller_than_the_world_is_refused():
    with pytest.raises(ValueError, match="3 samples, fewer than the 4 processes"):
        shard_loader(TensorLoader(*_xy(3), 2), 0, 4, training=False)


@pytest.mark.parametrize("rank,world", [(2, 2), (-1, 2), (0, 0), (0, True)])
def test_bad_rank_or_world_is_refused(rank, world):
    with pytest.raises(ValueError, match="rank|world"):
        shard_loader(TensorLoader(*_xy(4), 2), rank, world, training=True)


def test_init_without_torchrun_env_names_the_missing_variables():
    with pytest.raises(ValueError, match="RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not set"):
        distributed.init(env={})
    env = {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    with pytest.raises(ValueError, match="RANK=2 must be below WORLD_SIZE=2"):
        distributed.init(env=env)
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        distributed.init(env={**env, "RANK": "x"})


def test_outside_a_run_this_process_is_rank_0_of_1():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)


def test_ddp_callback_needs_a_process_group():
    with pytest.raises(ValueError, match="distributed.init"):
        distributed.DDP()


@pytest.mark.parametrize("value", [0, -1, "x", 1.5, True, "0"])
def test_check_nproc_names_the_option(value):
    with pytest.raises(ValueError, match=r"--nproc: must be a positive integer .*got"):
        distributed.check_nproc(value, where="--nproc")
