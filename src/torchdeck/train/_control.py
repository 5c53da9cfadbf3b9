"""Callbacks that end a run: EarlyStopping, StopOnNaN, TimeBudget.

Each ends the fit with ``CancelFit(reason)``: ``fit_end`` still runs, the other callbacks
still see the epoch that ended (checkpoints, loggers), and the reason lands in
``state.stop_reason``. StopOnNaN also warns, since a NaN stop is a problem to look at.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable

import torch

from torchdeck.train._callback import Callback
from torchdeck.train._callbacks import Recorder, reduce_over_ranks
from torchdeck.train._checkpoint import Checkpointer
from torchdeck.train._events import CancelFit
from torchdeck.train._finite import all_finite, nonfinite_names
from torchdeck.train._monitor import Monitor
from torchdeck.train._precision import GradAccumulation, MixedPrecision
from torchdeck.train._state import TrainState

__all__ = ["EarlyStopping", "StopOnNaN", "TimeBudget", "GRAD_POLICIES"]


class EarlyStopping(Callback):
    """Ends the fit when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` complete epochs.

    Patience counts within one fit (each fit starts at 0); the best value carries over fits
    and checkpoints, so a later fit must beat the best so far. ``best``, ``best_epoch``
    and ``wait`` are readable.
    """

    reads = ("epoch_complete", "epochs_done", "metrics")
    after = (Recorder, Checkpointer)

    def __init__(self, monitor: str = "valid_loss", patience: int = 3, min_delta: float = 0.0,
                 mode: str = "min") -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be a positive integer (epochs), got {patience!r}")
        self.monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience = patience
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0

    def fit_begin(self, state: TrainState) -> None:
        self.wait = 0

    def epoch_end(self, state: TrainState) -> None:
        if not state.epoch_complete:
            return
        value = self.monitor.value(state)
        if self.monitor.improved(value, self.best):
            self.best, self.best_epoch, self.wait = value, state.epochs_done, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            m = self.monitor
            best = "no finite value yet" if self.best is None else f"{self.best:.6g} at epoch {self.best_epoch}"
            raise CancelFit(f"EarlyStopping: {m.metric} has not improved ({m.mode}, min_delta={m.min_delta:g}) "
                            f"for {self.patience} epochs; best {best}")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], int(state["best_epoch"]), int(state["wait"])

    def __repr__(self) -> str:
        m = self.monitor
        return f"EarlyStopping({m.metric!r}, patience={self.patience}, min_delta={m.min_delta:g}, mode={m.mode!r})"


# What StopOnNaN does with a finite loss but non-finite gradients.
GRAD_POLICIES: dict[str, str] = {
    "stop": "end the fit before the update is applied",
    "skip": "skip that update (warn), keep training",
    "off": "do not check gradients (e.g. when the optimiser skips non-finite steps itself)",
}


class StopOnNaN(Callback):
    """Ends the fit when the loss is NaN or infinite, naming the step, epoch and batch, and
    never lets a non-finite gradient reach the parameters unnoticed.

    After each training backward it checks the loss and every gradient at once: one fused
    2-norm over the gradients plus one host sync per step (what ``clip_norm`` computes:
    about 4 ms per 10M parameters on one CPU thread; with ``grads="off"`` only the loss is
    read, still one sync). A non-finite
    gradient with a finite loss follows ``grads``: ``"stop"`` (the default; the update is
    not applied), ``"skip"`` (the update is skipped, a warning names the parameters) or
    ``"off"``. Epoch losses of other phases (``valid_loss``) are checked at their epoch end.
    """

    reads = ("phase", "loss", "model", "step", "epoch", "batch_index", "metrics")
    # Gradient accumulation hands over the summed gradients at the real step; mixed
    # precision unscales them (and skips inf steps itself) first.
    after = (GradAccumulation, MixedPrecision)

    def __init__(self, grads: str = "stop") -> None:
        if grads not in GRAD_POLICIES:
            raise ValueError(f"StopOnNaN: grads must be one of {', '.join(map(repr, GRAD_POLICIES))}, got {grads!r}")
        self.grads = grads
        self.skipped = 0

    @staticmethod
    def _where(state: TrainState) -> str:
        return f"at step {state.step} (epoch {state.epoch + 1}, {state.phase.name} batch {state.batch_index + 1})"

    def _stop(self, message: str) -> CancelFit:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return CancelFit(message)

    def backward_end(self, state: TrainState) -> None:
        named = [(n, p.grad) for n, p in state.model.named_parameters() if p.grad is not None] \
            if self.grads != "off" else []
        if all_finite([g for _, g in named], extra=state.loss):
            return
        loss = state.loss.detach()
        if not bool(torch.isfinite(loss).all()):
            raise self._stop(f"StopOnNaN: the loss is {float(loss)} {self._where(state)}; training stopped "
                             "before this step's update")
        bad = nonfinite_names(named)
        message = f"StopOnNaN: non-finite gradient (NaN/inf) in {', '.join(bad)} {self._where(state)}"
        if self.grads == "skip":
            for p in state.model.parameters():
                p.grad = None  # no gradient: the optimiser leaves every parameter as it is
            self.skipped += 1
            warnings.warn(f"{message}; this update was skipped", RuntimeWarning, stacklevel=2)
            return
        raise self._stop(f"{message}; training stopped before the update was applied "
                         "(StopOnNaN(grads='skip') skips such updates instead)")

    def epoch_end(self, state: TrainState) -> None:
        if state.phase.training:
            return  # training losses were checked step by step
        key = f"{state.phase.name}_loss"
        value = state.metrics.get(key)
        if value is not None and not math.isfinite(value):
            raise self._stop(f"StopOnNaN: {key} is {value} at epoch {state.epoch + 1} (step {state.step})")

    def __repr__(self) -> str:
        return f"StopOnNaN(grads={self.grads!r})"


class TimeBudget(Callback):
    """Ends the fit once ``seconds`` of wall time have passed since it began (checked after
    each training step; a running validation pass is not cut short). ``clock`` is
    ``time.monotonic`` unless given (tests pass a fake one). In a torch.distributed run the
    ranks decide together (one tiny all-reduce a step): the first rank over budget stops them
    all at the same step."""

    reads = ("phase", "step", "epoch")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
            raise ValueError(f"TimeBudget: seconds must be a positive number, got {seconds!r}")
        self.seconds = float(seconds)
        self.clock = clock
        self._t0 = 0.0

    def fit_begin(self, state: TrainState) -> None:
        self._t0 = self.clock()

    def step_end(self, state: TrainState) -> None:
        if state.phase.training:
            spent = self.clock() - self._t0
            over = spent >= self.seconds
            # Decided on all ranks together: one going on alone would wait forever at the next all-reduce.
            if reduce_over_ranks([int(over)])[0]:
                why = f"{spent:.3g} s spent of {self.seconds:g} s" if over else f"another rank spent its {self.seconds:g} s"
                raise CancelFit(f"TimeBudget: {why}; stopped after step {state.step} (epoch {state.epoch + 1})")

    def __repr__(self) -> str:
        return f"TimeBudget({self.seconds:g})"
