"""MetricStream: the bridge from a training thread (or process) to live charts.

Thread-safe, bounded and decimating: each series keeps at most ``capacity`` points; when
full, each run of four points is folded into its minimum and maximum, so a spike stays
visible however long the run. Subscribers are called on the training thread after each
step and epoch; they must be quick (the TrainingMonitor throttles its redraws by wall-clock time).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np
import torch

from torchdeck.train._callback import Callback
from torchdeck.train._callbacks import Metrics, current_lr
from torchdeck.train._state import TrainState, progress_of

__all__ = ["Series", "MetricStream"]


class Series:
    """A bounded, decimating list of (x, y) points."""

    def __init__(self, capacity: int = 2000) -> None:
        if capacity < 8:
            raise ValueError(f"Series: capacity must be >= 8, got {capacity}")
        self.capacity = capacity
        self.xs: list[float] = []
        self.ys: list[float] = []

    def append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)
        if len(self.xs) > self.capacity:
            self._fold()

    def _fold(self) -> None:
        # Keep the last point as is so the newest value is always shown exactly.
        xs, ys = np.asarray(self.xs[:-1]), np.asarray(self.ys[:-1])
        n = len(xs) // 4 * 4
        bx, by = xs[:n].reshape(-1, 4), ys[:n].reshape(-1, 4)
        lo, hi = by.argmin(axis=1), by.argmax(axis=1)
        first, second = np.minimum(lo, hi), np.maximum(lo, hi)
        rows = np.arange(len(bx))
        keep_x = np.stack([bx[rows, first], bx[rows, second]], axis=1).ravel()
        keep_y = np.stack([by[rows, first], by[rows, second]], axis=1).ravel()
        self.xs = keep_x.tolist() + self.xs[n:]
        self.ys = keep_y.tolist() + self.ys[n:]

    def __len__(self) -> int:
        return len(self.xs)


class MetricStream(Callback):
    """Collects a run's live numbers for a UI: ``loss`` and ``lr`` per training step, every
    epoch metric per epoch (``train_loss``, ``valid_loss``, ``valid_accuracy``, ... at x =
    global step), and a ``progress`` dict.

    ``subscribe(fn)`` registers ``fn(stream, event)``; events are ``"fit_begin"``, ``"step"``,
    ``"epoch"`` and ``"fit_end"``. Read with ``snapshot()`` from any thread.

    A step's loss stays a tensor until someone reads the stream (or an epoch value is pushed,
    or ``capacity`` steps wait): then all waiting steps are converted at once, so a run on a
    GPU does not wait for its device at every step to feed a chart that redraws a few times
    a second.
    """

    reads = ("phase", "loss", "step", "epoch", "epochs", "batch_index", "batches", "metrics")
    after = (Metrics,)

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._series: dict[str, Series] = {}
        # A tuple, replaced on (un)subscribe: notifying iterates it without copying.
        self._subscribers: tuple[Callable[["MetricStream", str], None], ...] = ()
        # Training steps not yet in the series: (step, loss tensor, lr).
        self._pending: list[tuple[int, torch.Tensor, float]] = []
        self.progress: dict[str, Any] = {}
        self.version = 0

    # -- reading (any thread) ------------------------------------------------------------
    def snapshot(self) -> dict[str, tuple[list[float], list[float]]]:
        with self._lock:
            self._flush()
            return {k: (list(s.xs), list(s.ys)) for k, s in self._series.items()}

    def latest(self, name: str) -> float | None:
        with self._lock:
            self._flush()
            s = self._series.get(name)
            return s.ys[-1] if s and s.ys else None

    def subscribe(self, fn: Callable[["MetricStream", str], None]) -> Callable[[], None]:
        self._subscribers = (*self._subscribers, fn)

        def unsubscribe() -> None:
            subscribers = list(self._subscribers)
            if fn in subscribers:
                subscribers.remove(fn)
                self._subscribers = tuple(subscribers)
        return unsubscribe

    # -- writing ---------------------------------------------------------------------------
    def push(self, name: str, x: float, y: float) -> None:
        with self._lock:
            self._flush()  # waiting steps first, so every series stays in step order
            self._append(name, x, y)
            self.version += 1

    def clear(self) -> None:
        with self._lock:
            self._series.clear()
            self._pending = []
            self.progress = {}
            self.version += 1

    def _append(self, name: str, x: float, y: float) -> None:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = Series(self.capacity)
        series.append(x, y)

    def _flush(self) -> None:
        """Move the waiting steps into the ``loss`` and ``lr`` series (call with the lock held)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        steps, losses, lrs = zip(*pending)
        values = torch.stack(losses).reshape(len(losses)).tolist()  # one host sync for all; one value a step
        for x, loss, lr in zip(steps, values, lrs):
            self._append("loss", x, loss)
            self._append("lr", x, lr)

    def _notify(self, event: str) -> None:
        for fn in self._subscribers:
            fn(self, event)

    def _set_progress(self, state: TrainState, status: str) -> None:
        self.progress = progress_of(state, status)

    # -- callback hooks --------------------------------------------------------------------
    def fit_begin(self, state: TrainState) -> None:
        self.clear()
        self._set_progress(state, "running")
        self._notify("fit_begin")

    def step_end(self, state: TrainState) -> None:
        if state.phase.training:
            with self._lock:
                self._pending.append((state.step, state.loss.detach(), current_lr(state)))
                if len(self._pending) >= self.capacity:  # bounded even when nobody reads
                    self._flush()
                self.version += 1
        self._set_progress(state, "running")
        self._notify("step")

    def epoch_end(self, state: TrainState) -> None:
        if not state.phase.training:
            for name, value in state.metrics.items():
                self.push(name, state.step, value)
            self._notify("epoch")

    def fit_end(self, state: TrainState) -> None:
        self._set_progress(state, "done")
        self._notify("fit_end")
