"""The process group: read torchrun's environment, start torch.distributed, say who we are."""

from __future__ import annotations

import dataclasses
import gc
import os
from typing import Mapping

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init", "is_initialized", "is_main", "rank", "world_size", "local_rank", "info",
           "shutdown", "TORCHRUN_VARS", "BACKENDS"]

# What torchrun (and torch.distributed.run) sets in every worker's environment.
TORCHRUN_VARS: tuple[str, ...] = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# The collective backend per device type: NCCL talks GPU to GPU; gloo works on CPU tensors.
BACKENDS: dict[str, str] = {"cuda": "nccl", "cpu": "gloo"}


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device  # the device this rank trains on (cuda:LOCAL_RANK on a GPU node)
    backend: str


_INFO: DistInfo | None = None


def _int_var(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        out = int(value)
    except ValueError:
        raise ValueError(f"distributed.init: environment variable {name}={value!r} is not an integer") from None
    if out < 0:
        raise ValueError(f"distributed.init: environment variable {name}={value!r} must be >= 0")
    return out


def _pick_device(device: str, local: int) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"distributed.init: device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("distributed.init: device='cuda' but CUDA is not available here; use 'cpu' or 'auto'")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    # One GPU per process: torchrun numbers the processes on a node from 0 (LOCAL_RANK).
    # NCCL refuses two ranks on one GPU, so more processes than GPUs is an error here.
    gpus = torch.cuda.device_count()
    if local >= gpus:
        raise ValueError(f"distributed.init: LOCAL_RANK={local} but this node has {gpus} GPU(s); start at most "
                         f"{gpus} processes per node on CUDA, or train on device 'cpu'")
    return torch.device("cuda", local)


def init(device: str = "auto", *, backend: str | None = None, env: Mapping[str, str] | None = None) -> DistInfo:
    """Start the default process group from torchrun's environment variables.

    Args:
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``.
        backend: ``"gloo"`` / ``"nccl"``; default from the device (``BACKENDS``).
        env: the environment to read (default ``os.environ``; tests pass their own).

    Calling it again in the same process returns the first call's answer.
    """
    global _INFO
    if _INFO is not None and dist.is_initialized():
        return _INFO
    env = os.environ if env is None else env
    missing = [v for v in TORCHRUN_VARS if v not in env]
    if missing:
        raise ValueError(f"distributed.init: environment variables {', '.join(missing)} are not set; start the "
                         "script with torchrun (e.g. `torchrun --standalone --nproc_per_node 2 script.py`) "
                         "or `torchdeck train spec.yaml --nproc N`")
    r, n, local = (_int_var(env, v) for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if n < 1 or r >= n:
        raise ValueError(f"distributed.init: RANK={r} must be below WORLD_SIZE={n} (>= 1)")
    dev = _pick_device(device, local)
    backend = BACKENDS[dev.type] if backend is None else backend
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"distributed.init: backend must be 'gloo' or 'nccl', got {backend!r}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        # env:// reads MASTER_ADDR/PORT, RANK and WORLD_SIZE itself; passing rank and size too
        # makes a mismatch with `env` an error rather than a silent surprise.
        dist.init_process_group(backend, init_method="env://", rank=r, world_size=n)
    _INFO = DistInfo(rank=r, world_size=n, local_rank=local, device=dev, backend=backend)
    return _INFO


def shutdown(*, wait: bool = True) -> None:
    """Destroy the process group at the end of a worker; harmless when none was started.

    ``wait``: first wait for every rank to get here (a barrier), so no rank tears down its
    connections while another still uses them; pass False after an error (the other ranks
    may never arrive).
    """
    global _INFO
    if dist.is_available() and dist.is_initialized():
        # A DDP wrapper caught in a reference cycle keeps the group (and gloo's threads) alive
        # into interpreter finalization, where tearing them down can abort the process
        # ("terminate called without an active exception"): free such objects now.
        gc.collect()
        if wait:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()
    _INFO = None


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank; 0 outside a distributed run."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Processes in the run; 1 outside a distributed run."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """Rank on this node (torchrun's LOCAL_RANK); 0 outside a distributed run."""
    return _INFO.local_rank if _INFO is not None else 0


def is_main() -> bool:
    """True on rank 0, the process that prints, logs, checkpoints and relays; and outside a run."""
    return rank() == 0


def info() -> DistInfo:
    """This process's place, as :func:`init` returned it (CPU, rank 0 of 1 outside a run)."""
    if _INFO is not None:
        return _INFO
    return DistInfo(rank=rank(), world_size=world_size(), local_rank=local_rank(), device=torch.device("cpu"),
                    backend=dist.get_backend() if is_initialized() else "")
