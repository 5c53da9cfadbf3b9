"""Data-parallel training on several processes (torch.distributed + torchrun).

In a process torchrun started::

    from torchdeck import distributed
    distributed.init()                 # process group from RANK, WORLD_SIZE, ... (gloo / nccl)
    learner = spec.build()
    distributed.prepare(learner)       # DDP callback: sharded loaders, DDP model, rank 0 logs
    learner.fit()                      # metrics are over all ranks' samples

From a script or the Studio: ``run = distributed.launch(spec, nproc=2)``; ``run.stream``
fills from rank 0's relay, ``run.wait()`` gives the exit status;
``run.pause()`` / ``run.resume()`` / ``run.stop()`` act on every rank at the same step. On the command line:
``torchdeck train spec.yaml --nproc 2``.
"""

from torchdeck.distributed._control import (COMMANDS, CONTROL_ENV, STOP_REASON, ProcessControl, read_control,
                                            write_control)
from torchdeck.distributed._ddp import DDP, MAIN_ONLY, prepare, register_main_only
from torchdeck.distributed._env import (BACKENDS, TORCHRUN_VARS, DistInfo, info, init, is_initialized, is_main,
                                        local_rank, rank, shutdown, world_size)
from torchdeck.distributed._launch import DistributedRun, check_nproc, launch, torchrun_command
from torchdeck.distributed._relay import RelaySender, RelayServer, Replay
from torchdeck.distributed._shard import (SHARDERS, DistributedLoader, RowShardedLoader, ShardedAugmentedBatches,
                                          ShardedTensorLoader,
                                          ShardSampler, rank_batch_size, register_sharder, shard_loader,
                                          shard_positions)
from torchdeck.distributed.worker import load_setup

__all__ = ["init", "shutdown", "is_initialized", "is_main", "rank", "world_size", "local_rank", "info", "DistInfo",
           "TORCHRUN_VARS", "BACKENDS", "DDP", "prepare", "MAIN_ONLY", "register_main_only", "launch",
           "DistributedRun", "check_nproc", "torchrun_command", "RelaySender", "RelayServer", "Replay", "SHARDERS",
           "register_sharder", "shard_loader", "shard_positions", "rank_batch_size", "ShardedTensorLoader",
           "DistributedLoader", "ShardSampler", "RowShardedLoader", "load_setup", "ShardedAugmentedBatches",
           "ProcessControl", "COMMANDS", "CONTROL_ENV", "STOP_REASON", "write_control", "read_control"]
