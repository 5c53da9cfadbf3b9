"""File loggers: CSVLogger (one row per epoch) and JSONLLogger (one line per epoch, and per
training step if asked). Each epoch's lines are written and the file closed at that epoch's
end, so what is on disk is complete after every epoch, also when the process dies."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Any

from torchdeck.train._callback import Callback
from torchdeck.train._callbacks import Recorder
from torchdeck.train._state import TrainState

__all__ = ["CSVLogger", "JSONLLogger"]


class _EpochLogger(Callback):
    """Base: builds one row per complete epoch; subclasses fill ``_start`` and ``_write``.

    ``append=False`` starts the file afresh at this logger's first fit (later fits of the
    same learner add to it). ``append=True`` keeps the file, dropping rows past the point
    the learner is at — so a run resumed from a checkpoint logs as if never interrupted.
    """

    reads = ("phase", "epoch_complete", "epochs_done", "step", "metrics", "history", "batches")
    after = (Recorder,)

    def __init__(self, path: str | os.PathLike, *, append: bool = False) -> None:
        if not isinstance(append, bool):
            raise ValueError(f"{type(self).__name__}: append must be True or False, got {append!r}")
        self.path = os.path.abspath(os.fspath(path))
        if os.path.isdir(self.path):
            raise ValueError(f"{type(self).__name__}: path {self.path!r} is a directory; give a file name")
        self.append = append
        self._started = False
        self._t0 = 0.0

    def fit_begin(self, state: TrainState) -> None:
        if not self._started:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._start(state, keep=self.append and os.path.exists(self.path))
            self._started = True

    def epoch_begin(self, state: TrainState) -> None:
        # state.batches lists the fit's phases in order: the first one opens an epoch.
        if next(iter(state.batches), None) == state.phase.name:
            self._t0 = time.perf_counter()

    def epoch_end(self, state: TrainState) -> None:
        if state.epoch_complete:
            row = {"epoch": state.epochs_done, "step": state.step, **state.metrics,
                   "seconds": time.perf_counter() - self._t0}
            self._write(state, row)

    def _start(self, state: TrainState, keep: bool) -> None:
        raise NotImplementedError

    def _write(self, state: TrainState, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


class CSVLogger(_EpochLogger):
    """One row per complete epoch: ``epoch`` (over all fits), ``step``, every metric
    (``train_loss``, ``valid_loss``, ``valid_accuracy``, ...) and ``seconds``. A metric that
    first appears later widens the header (the file is rewritten once)."""

    def __init__(self, path: str | os.PathLike, *, append: bool = False) -> None:
        super().__init__(path, append=append)
        self._columns: list[str] = []

    def _start(self, state: TrainState, keep: bool) -> None:
        rows: list[dict[str, str]] = []
        if keep:
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self._columns = list(reader.fieldnames or [])
                rows = [r for r in reader if _int(r.get("epoch")) <= state.epochs_done]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if self._columns:
                writer = csv.DictWriter(f, self._columns)
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, self.path)

    def _write(self, state: TrainState, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self._columns]
        if new:
            old_rows: list[dict[str, str]] = []
            if self._columns:
                with open(self.path, newline="", encoding="utf-8") as f:
                    old_rows = list(csv.DictReader(f))
            self._columns += new
            self._rewrite(old_rows)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self._columns).writerow(row)


def _int(text: Any) -> int:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return 0


def _json_value(v: Any) -> Any:
    # Strict JSON has no NaN/inf: those are written as null.
    return None if isinstance(v, float) and not math.isfinite(v) else v


class JSONLLogger(_EpochLogger):
    """One JSON object per line: ``{"type": "epoch", "epoch": 3, "step": 36, "train_loss": ...,
    "valid_loss": ..., ..., "seconds": ...}`` per complete epoch and, with ``steps=True``,
    ``{"type": "step", "step": 35, "loss": ..., "lr": ...}`` per training step (taken from
    the history at each training epoch end: no cost per step). NaN and inf are written as
    null (strict JSON)."""

    def __init__(self, path: str | os.PathLike, *, steps: bool = False, append: bool = False) -> None:
        super().__init__(path, append=append)
        if not isinstance(steps, bool):
            raise ValueError(f"JSONLLogger: steps must be True or False, got {steps!r}")
        self.steps = steps
        self._logged = 0  # history entries already written as step lines

    def _start(self, state: TrainState, keep: bool) -> None:
        kept: list[str] = []
        if keep:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
                    if (obj.get("type") == "epoch" and obj.get("epoch", 0) <= state.epochs_done) or \
                            (obj.get("type") == "step" and obj.get("step", 0) < state.step):
                        kept.append(line if line.endswith("\n") else line + "\n")
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)
        # Steps already in the history (a resumed run) were logged by the run that made them.
        self._logged = len(state.history.steps)

    def epoch_end(self, state: TrainState) -> None:
        if self.steps and state.phase.training:
            h = state.history
            lines = [{"type": "step", "step": s, "loss": _json_value(l), "lr": _json_value(r)}
                     for s, l, r in zip(h.steps[self._logged:], h.losses[self._logged:], h.lrs[self._logged:])]
            self._logged = len(h.steps)
            self._append(lines)
        super().epoch_end(state)

    def _write(self, state: TrainState, row: dict[str, Any]) -> None:
        self._append([{"type": "epoch", **{k: _json_value(v) for k, v in row.items()}}])

    def _append(self, objs: list[dict[str, Any]]) -> None:
        if objs:
            with open(self.path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(o, allow_nan=False) + "\n" for o in objs)
