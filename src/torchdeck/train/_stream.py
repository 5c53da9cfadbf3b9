"""MetricStream: the bridge from a training thread (or process) to live charts.

Thread-safe, bounded and decimating: each series keeps at most ``capacity`` points; when
full, each run of four points is folded into its minimum and maximum, so a spike stays
visible however long the run. Subscribers are called on the training thread after each
step and epoch; they must be quick (the TrainingMonitor throttles its redraws by wall-clock time).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
import torch

from torchdeck.train._callback import Callback
from torchdeck.train._callbacks import Metrics, Recorder
from torchdeck.train._state import TrainState, progress_of

__all__ = ["Series", "MetricStream", "MOMENTUM_KEYS", "momentum_key"]


class Series:
    """A bounded, decimating list of (x, y) points.

    ``version`` changes whenever the points do, so a reader can skip a series it has drawn.
    """

    def __init__(self, capacity: int = 2000) -> None:
        if capacity < 8:
            raise ValueError(f"Series: capacity must be >= 8, got {capacity}")
        self.capacity = capacity
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.version = 0

    def append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)
        self.version += 1
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


# Param-group keys that hold a momentum-like coefficient, in the order they are looked for,
# with how to read the coefficient from the value: torch's SGD and RMSprop say "momentum",
# torchdeck's Adam family "b1", torch's Adam family "betas" (b1, b2), torchdeck's momentum and
# nesterov rules "rho". (Adadelta's "rho" is a decay, not a momentum; it is shown all the same,
# labelled with its key.)
MOMENTUM_KEYS: dict[str, Callable[[Any], Any]] = {
    "momentum": lambda value: value,
    "b1": lambda value: value,
    "betas": lambda value: value[0],
    "rho": lambda value: value,
}


def momentum_key(optimizer: torch.optim.Optimizer) -> str | None:
    """The key of ``MOMENTUM_KEYS`` that the optimiser's first param group has, or None."""
    groups = optimizer.param_groups
    if not groups:
        return None
    return next((key for key in MOMENTUM_KEYS if key in groups[0]), None)


def _as_float(value: Any) -> float:
    return float(value) if value is not None else float("nan")


def _floats(values: tuple[Any, ...]) -> list[float]:
    """Hyperparameter values as floats; tensor ones (copied on their device at their step)
    come to the host together, with one sync."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if not tensors:
        return [_as_float(v) for v in values]
    host = iter(torch.stack([t.reshape(()).to(torch.float64) for t in tensors]).tolist())
    return [next(host) if isinstance(v, torch.Tensor) else _as_float(v) for v in values]


def _held(value: Any) -> Any:
    """A hyperparameter as it is at this step. A tensor one (capturable optimisers, tensor lrs)
    is copied on its device, no host sync, since schedulers may change it in place later."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


class MetricStream(Callback):
    """Collects a run's live numbers for a UI: ``loss``, ``lr`` and (when the optimiser's
    first param group has one, see ``MOMENTUM_KEYS``) ``momentum`` per training step, every
    epoch metric per epoch (``train_loss``, ``valid_loss``, ``valid_accuracy``, ... at x =
    global step), one row per epoch (``epoch_rows()``: the Recorder's history row), and a
    ``progress`` dict.

    ``subscribe(fn)`` registers ``fn(stream, event)``; events are ``"fit_begin"``, ``"step"``,
    ``"epoch"`` and ``"fit_end"``. Read with ``snapshot()``, ``arrays()`` or ``epoch_rows()``
    from any thread.

    A step's loss stays a tensor until someone reads the stream (or an epoch value is pushed,
    or ``capacity`` steps wait): then all waiting steps are converted at once, so a run on a
    GPU does not wait for its device at every step to feed a chart that redraws a few times
    a second. The lr and momentum are read from the param group at each step; a tensor
    hyperparameter is copied on its device then and converted with the losses.
    """

    reads = ("phase", "loss", "step", "epoch", "epochs", "batch_index", "batches", "metrics", "optimizer", "history")
    # After the Recorder: an epoch's row is the one the history keeps.
    after = (Metrics, Recorder)

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._series: dict[str, Series] = {}
        self._epoch_rows: list[dict[str, float]] = []
        # A tuple, replaced on (un)subscribe: notifying iterates it without copying.
        self._subscribers: tuple[Callable[["MetricStream", str], None], ...] = ()
        # Training steps not yet in the series: (step, loss tensor, lr, momentum or None).
        self._pending: list[tuple[int, torch.Tensor, Any, Any]] = []
        self._momentum_read: Callable[[Any], Any] | None = None
        self.momentum_key: str | None = None
        self.progress: dict[str, Any] = {}
        self.version = 0       # changes with every new number
        self.generation = 0    # changes when the stream is cleared (each fit begins with a clear)
        self._epoch_t0 = 0.0

    # -- reading (any thread) ------------------------------------------------------------
    def snapshot(self) -> dict[str, tuple[list[float], list[float]]]:
        with self._lock:
            self._flush()
            return {k: (list(s.xs), list(s.ys)) for k, s in self._series.items()}

    def arrays(self, drawn: dict[str, int] | None = None) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
        """``{name: (version, xs, ys)}`` as float arrays, for the series whose version differs
        from ``drawn[name]`` (all series when ``drawn`` is None): a chart redraws only what moved."""
        drawn = drawn or {}
        with self._lock:
            self._flush()
            return {k: (s.version, np.asarray(s.xs, dtype=np.float64), np.asarray(s.ys, dtype=np.float64))
                    for k, s in self._series.items() if drawn.get(k) != s.version}

    def epoch_rows(self, start: int = 0) -> list[dict[str, float]]:
        """One dict per finished epoch of this fit (``epoch``, ``step``, the metrics,
        ``epoch_seconds``), from the ``start``-th on: a reader that keeps the rows it has asks
        only for the new ones."""
        with self._lock:
            return [dict(row) for row in self._epoch_rows[start:]]

    @property
    def epoch_count(self) -> int:
        """Epochs finished in this fit (rows in ``epoch_rows()``)."""
        return len(self._epoch_rows)

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
            self._epoch_rows = []
            self._pending = []
            self.progress = {}
            self.version += 1
            self.generation += 1

    def _append(self, name: str, x: float, y: float) -> None:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = Series(self.capacity)
        series.append(x, y)

    def _flush(self) -> None:
        """Move the waiting steps into the step series (call with the lock held)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        steps, losses, lrs, momenta = zip(*pending)
        values = torch.stack(losses).reshape(len(losses)).tolist()  # one host sync for all; one value a step
        for x, loss, lr in zip(steps, values, _floats(lrs)):
            self._append("loss", x, loss)
            self._append("lr", x, lr)
        if self._momentum_read is not None:
            for x, m in zip(steps, _floats(momenta)):
                self._append("momentum", x, m)

    def _notify(self, event: str) -> None:
        for fn in self._subscribers:
            fn(self, event)

    def _set_progress(self, state: TrainState, status: str) -> None:
        self.progress = progress_of(state, status)

    def _epoch_row(self, state: TrainState) -> dict[str, float]:
        rows = state.history.epochs
        last = rows[-1] if rows else None
        if last is not None and last.get("epoch") == state.epoch + 1 and last.get("step") == state.step:
            return dict(last)  # the Recorder's row: the table shows what the history keeps
        # No Recorder (someone replaced the callbacks): the same row, timed here.
        return {"epoch": state.epoch + 1, "step": state.step, **state.metrics,
                "epoch_seconds": time.perf_counter() - self._epoch_t0}

    # -- callback hooks --------------------------------------------------------------------
    def fit_begin(self, state: TrainState) -> None:
        self.clear()
        # Which key holds the momentum is decided once per fit: a step then costs one lookup.
        self.momentum_key = momentum_key(state.optimizer)
        self._momentum_read = MOMENTUM_KEYS[self.momentum_key] if self.momentum_key else None
        self._set_progress(state, "running")
        self._notify("fit_begin")

    def epoch_begin(self, state: TrainState) -> None:
        if state.phase.training:
            self._epoch_t0 = time.perf_counter()

    def step_end(self, state: TrainState) -> None:
        if state.phase.training:
            groups = state.optimizer.param_groups
            group = groups[0] if groups else {}
            read = self._momentum_read
            momentum = _held(read(group.get(self.momentum_key))) if read is not None else None
            with self._lock:
                self._pending.append((state.step, state.loss.detach(), _held(group.get("lr")), momentum))
                if len(self._pending) >= self.capacity:  # bounded even when nobody reads
                    self._flush()
                self.version += 1
        self._set_progress(state, "running")
        self._notify("step")

    def epoch_end(self, state: TrainState) -> None:
        if not state.phase.training:
            row = self._epoch_row(state)
            with self._lock:
                self._flush()
                for name, value in state.metrics.items():
                    self._append(name, state.step, value)
                self._epoch_rows.append(row)
                self.version += 1
            self._notify("epoch")

    def fit_end(self, state: TrainState) -> None:
        self._set_progress(state, "done")
        self._notify("fit_end")
