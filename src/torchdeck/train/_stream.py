"""MetricStream: the bridge from a training thread (or process) to live charts.

Thread-safe, bounded and decimating: each series keeps at most ``capacity`` points; when
full, each run of four points is folded into its minimum and maximum, so a spike stays
visible however long the run. Subscribers are called on the training thread after each
push; they must be quick (the TrainingMonitor throttles its redraws by wall-clock time).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

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
    """

    reads = ("phase", "loss", "step", "epoch", "epochs", "batch_index", "batches", "metrics")
    after = (Metrics,)

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._series: dict[str, Series] = {}
        self._subscribers: list[Callable[["MetricStream", str], None]] = []
        self.progress: dict[str, Any] = {}
        self.version = 0

    # -- reading (any thread) ------------------------------------------------------------
    def snapshot(self) -> dict[str, tuple[list[float], list[float]]]:
        with self._lock:
            return {k: (list(s.xs), list(s.ys)) for k, s in self._series.items()}

    def latest(self, name: str) -> float | None:
        with self._lock:
            s = self._series.get(name)
            return s.ys[-1] if s and s.ys else None

    def subscribe(self, fn: Callable[["MetricStream", str], None]) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    # -- writing ---------------------------------------------------------------------------
    def push(self, name: str, x: float, y: float) -> None:
        with self._lock:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = Series(self.capacity)
            series.append(x, y)
            self.version += 1

    def clear(self) -> None:
        with self._lock:
            self._series.clear()
            self.progress = {}
            self.version += 1

    def _notify(self, event: str) -> None:
        for fn in list(self._subscribers):
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
            self.push("loss", state.step, float(state.loss.detach()))
            self.push("lr", state.step, current_lr(state))
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
