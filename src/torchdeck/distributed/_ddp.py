"""The DDP callback: one process of a data-parallel run (torch DistributedDataParallel)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from torchdeck.distributed._env import info, is_initialized
from torchdeck import train as _train
from torchdeck.distributed._shard import shard_loader
from torchdeck.train import Callback, Checkpointer, CSVLogger, JSONLLogger, ProgressBar
from torchdeck.train._state import TrainState

if TYPE_CHECKING:
    from torchdeck.train import Learner

__all__ = ["DDP", "MAIN_ONLY", "register_main_only"]

# torch 2.14 renamed DDP's broadcast_buffers (and warns on the old name); the engine supports torch >= 2.4.
_DDP_PARAMS = inspect.signature(DistributedDataParallel).parameters
_SYNC_BUFFERS = "forward_sync_buffers" if "forward_sync_buffers" in _DDP_PARAMS else "broadcast_buffers"

# Callbacks that talk to people or write files: only rank 0 keeps them (the other ranks
# would print the same lines W times and race on the same files).
MAIN_ONLY: list[type[Callback]] = [ProgressBar, Checkpointer, CSVLogger, JSONLLogger]
# The TensorBoard logger is newer than this module (read by name so either can land first).
if getattr(_train, "TensorBoard", None) is not None:
    MAIN_ONLY.append(_train.TensorBoard)


def register_main_only(cls: type[Callback]) -> type[Callback]:
    """Mark a callback class as rank 0's alone (a logger, a notifier); usable as a decorator."""
    if cls not in MAIN_ONLY:
        MAIN_ONLY.append(cls)
    return cls


class DDP(Callback):
    """Makes a learner one process of a data-parallel run. Start the processes with torchrun
    (or ``torchdeck train spec.yaml --nproc N``) and call :func:`torchdeck.distributed.init`
    first; then ``learner.add_callback(DDP())`` (or :func:`torchdeck.distributed.prepare`).

    - Each phase's loader is replaced by this rank's share (``shard_loader``): training padded
      to equal batches, validation unpadded, so the all-reduced metrics count each sample once.
      The spec's batch size is the global one: each rank steps on ``batch_size // world``.
    - The model moves to this rank's device; during training steps ``state.model`` is the
      ``DistributedDataParallel`` wrapper (gradients are averaged across ranks in backward),
      at all other times the plain module, so checkpoints and exports see the usual
      parameter names and validation runs no collective per step.
    - On ranks other than 0 the callbacks in ``MAIN_ONLY`` (progress bar, checkpointer, file
      loggers) are removed.

    Args:
        find_unused_parameters, gradient_as_bucket_view: passed to ``DistributedDataParallel``.
        sync_buffers: send rank 0's buffers (BatchNorm statistics) to all ranks before each
            training forward and before validation (DDP's ``forward_sync_buffers``, called
            ``broadcast_buffers`` before torch 2.14).
    """

    reads = ("phase", "model")
    writes = ("model",)

    def __init__(self, *, find_unused_parameters: bool = False, sync_buffers: bool = True,
                 gradient_as_bucket_view: bool = False) -> None:
        if not is_initialized():
            raise ValueError("DDP: torch.distributed is not initialized; call torchdeck.distributed.init() "
                             "in a process started by torchrun first")
        self.info = info()
        for name, value in (("find_unused_parameters", find_unused_parameters), ("sync_buffers", sync_buffers),
                            ("gradient_as_bucket_view", gradient_as_bucket_view)):
            if not isinstance(value, bool):
                raise ValueError(f"DDP: {name} must be True or False, got {value!r}")
        self.sync_buffers = sync_buffers
        self.options = {"find_unused_parameters": find_unused_parameters,
                        "gradient_as_bucket_view": gradient_as_bucket_view, _SYNC_BUFFERS: sync_buffers}
        self.module: torch.nn.Module | None = None
        self.wrapped: DistributedDataParallel | None = None
        self._learner: "Learner | None" = None
        self._filtering = False

    # -- set-up: called by Learner.set_callbacks each time the callbacks change ---------------
    def attach(self, learner: "Learner") -> None:
        if self._filtering:
            return
        self._learner = learner
        # Shard here, not at fit_begin: fit counts each loader's batches (progress, one-cycle
        # lengths) before the first event.
        for phase in learner.phases:
            learner.loaders[phase.name] = shard_loader(learner.loaders[phase.name], self.info.rank,
                                                       self.info.world_size, training=phase.training)
        if learner.device != self.info.device:
            learner.to(self.info.device)
        if self.info.rank != 0:
            # A Throttle is judged by what it wraps (a throttled CSV logger writes files too).
            keep = [cb for cb in learner.callbacks if not isinstance(getattr(cb, "callback", cb), tuple(MAIN_ONLY))]
            if len(keep) != len(learner.callbacks):
                self._filtering = True  # set_callbacks attaches every callback again, this one too
                try:
                    learner.set_callbacks(keep)
                finally:
                    self._filtering = False

    # -- events -------------------------------------------------------------------------------
    def fit_begin(self, state: TrainState) -> None:
        module = self._plain(state.model)
        if self.module is not module:
            # Wrapping broadcasts rank 0's parameters and buffers: all ranks start each fit equal.
            device_ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            self.module = module
            self.wrapped = DistributedDataParallel(module, device_ids=device_ids, **self.options)
        state.model = module

    def epoch_begin(self, state: TrainState) -> None:
        if not state.phase.training and self.sync_buffers:
            # DDP sends rank 0's buffers (BatchNorm statistics) before each training forward,
            # but each rank's last forward updated its own: evaluate all ranks with rank 0's.
            for b in state.model.buffers():
                dist.broadcast(b, 0)

    def step_begin(self, state: TrainState) -> None:
        if state.phase.training and self.wrapped is not None:
            state.model = self.wrapped

    def step_end(self, state: TrainState) -> None:
        state.model = self._plain(state.model)

    def epoch_end(self, state: TrainState) -> None:
        state.model = self._plain(state.model)

    def fit_end(self, state: TrainState) -> None:
        state.model = self._plain(state.model)
        # Let go of the wrapper (the next fit wraps afresh): its reducer holds the process
        # group, and a group still alive when the interpreter exits can abort the process
        # ("terminate called without an active exception") as its threads are torn down.
        self.wrapped = None
        self.module = None

    @staticmethod
    def _plain(model: torch.nn.Module) -> torch.nn.Module:
        return model.module if isinstance(model, DistributedDataParallel) else model

    def __repr__(self) -> str:
        return f"DDP(rank={self.info.rank}, world={self.info.world_size}, device={str(self.info.device)!r})"


def prepare(learner: "Learner", **options: Any) -> DDP:
    """Put a :class:`DDP` callback first on ``learner`` (its model swaps then come before any
    other callback's handlers) and return it."""
    ddp = DDP(**options)
    learner.set_callbacks([ddp, *[cb for cb in learner.callbacks if not isinstance(cb, DDP)]])
    return ddp
