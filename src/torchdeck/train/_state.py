"""The learner's state: one typed object every callback reads from and writes to."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

__all__ = ["TrainState", "History", "progress_of"]


@dataclasses.dataclass
class History:
    """What a run has recorded: per training step and per epoch.

    ``steps``/``losses``/``lrs`` are parallel lists (global step, train loss, lr of group 0);
    ``epochs`` holds one dict per finished epoch (``{"epoch": 1, "train_loss": ...,
    "valid_loss": ..., "valid_accuracy": ...}``).
    """

    steps: list[int] = dataclasses.field(default_factory=list)
    losses: list[float] = dataclasses.field(default_factory=list)
    lrs: list[float] = dataclasses.field(default_factory=list)
    epochs: list[dict[str, float]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TrainState:
    """Everything a step touches.

    Fields a callback may declare in ``reads`` / ``writes``: any of these names.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[Any, Any], torch.Tensor]
    phase: Any = None             # the running Phase (train / valid)
    epoch: int = 0                # 0-based index of the running epoch
    epochs: int = 0               # epochs planned for this fit
    step: int = 0                 # training steps done so far, over all fits (the schedules' t)
    batch_index: int = 0          # position of the batch in the running phase
    batches: dict[str, int] = dataclasses.field(default_factory=dict)  # batches per phase
    xb: Any = None
    yb: Any = None
    pred: Any = None
    loss: torch.Tensor | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # latest epoch values
    history: History = dataclasses.field(default_factory=History)
    epochs_done: int = 0          # epochs whose every phase ran to its end, over all fits
    # True only during the epoch_end of an epoch's last phase when no phase was cancelled:
    # the one moment per epoch for callbacks that act once an epoch is complete
    # (checkpoints, early stopping, loggers). epochs_done already counts that epoch then.
    epoch_complete: bool = False
    stop_reason: str = ""         # why the last fit ended early (the CancelFit message), else ""


def progress_of(state: TrainState, status: str) -> dict[str, Any]:
    """Where a run is, for people: status, epoch i of n, phase, batch j of m, global step."""
    phase = state.phase.name if state.phase is not None else ""
    return {"status": status, "epoch": state.epoch + 1, "epochs": state.epochs, "phase": phase,
            "batch": state.batch_index + 1, "batches": state.batches.get(phase, 0), "step": state.step}
