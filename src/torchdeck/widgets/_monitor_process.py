"""Runs on several processes for the training monitor: a :func:`torchdeck.distributed.launch`
run behind the same handle as a local :class:`~torchdeck.train.Run` (status, error, stop,
on_done, join, pause, resume), and the check of the Processes field."""

from __future__ import annotations

import os
from typing import Any, Callable

from torchdeck import distributed
from torchdeck.spec import Experiment
from torchdeck.train import BackgroundRun

__all__ = ["ProcessRun", "ProcessFailure", "check_processes"]


def check_processes(value: Any, limit: int | None = None) -> int:
    """The Processes field as an int in ``1..limit`` (default: this machine's CPU count), or a
    ValueError naming the field, the value and what is allowed."""
    limit = (os.cpu_count() or 1) if limit is None else limit
    n = distributed.check_nproc(value, "Processes")
    if n > limit:
        raise ValueError(f"Processes: must be at most {limit} (this machine's CPU count), got {n}")
    return n


class ProcessFailure(RuntimeError):
    """A run on several processes failed: which rank, and its error (or torchrun's exit status)."""


class ProcessRun(BackgroundRun):
    """A :func:`torchdeck.distributed.launch` run, seen through the part of
    :class:`~torchdeck.train.Run` the monitor uses: ``status``, ``error`` / ``traceback``,
    ``stop``, ``pause``, ``resume``, ``on_done``, ``join``, ``done``.

    A watcher thread waits for torchrun (the launch handle, ``launch``); Stop only sets a flag
    that the watcher answers within ``poll`` seconds by stopping every rank (gracefully, at
    their next step; SIGTERM if they do not end in time), so the button's click never blocks
    the kernel. Pause and Resume write the launch's control file at once (a few bytes); the
    watcher turns ``status`` to ``paused`` once the ranks have acknowledged, and back to
    ``running`` once they go on, as a local run's status follows its thread. ``spec``: what the ranks run. ``weights``: where rank 0
    saves the trained weights (a file in a folder removed once the done callbacks have run),
    or None.
    """

    def __init__(self, launch: distributed.DistributedRun, spec: Experiment, *, weights: str | None = None,
                 cleanup: Callable[[], None] | None = None, poll: float = 0.2) -> None:
        super().__init__("torchdeck-processes")
        self.launch = launch
        self.spec = spec
        self.epochs = spec.train.epochs
        self.weights = weights
        self.returncode: int | None = None
        self._cleanup = cleanup
        self._poll = poll

    def start(self) -> "ProcessRun":
        self.status = "running"
        super().start()
        return self

    def _wait(self) -> int:
        while not self._stop.wait(self._poll):
            if self.launch.done:
                return self.launch.wait()
            self._follow_pause()
        return self.launch.stop()  # every rank at its next step; SIGTERM after 30 s, a kill 10 s later

    def _follow_pause(self) -> None:
        paused = self.launch.paused
        if paused and self.status == "running":
            self.status = "paused"
        elif not paused and self.status == "paused":
            self.status = "running"

    def _main(self) -> None:
        final = "finished"
        try:
            self.returncode = self._wait()
            if self._stop.is_set() or self.launch.stopped:
                final = "stopped"
            elif self.returncode != 0 or self.launch.errors:
                self.error, self.traceback = _failure(self.launch, self.returncode)
                final = "failed"
        except BaseException as e:
            final = self._failed(e)
        finally:
            try:
                self._finish(final)
            finally:
                if self._cleanup is not None:
                    self._cleanup()

    def stop(self) -> None:
        """End the run on every rank (within ``poll`` seconds plus torchrun's shutdown)."""
        if not self.done:
            self.status = "stopping"
        self._stop.set()

    def pause(self) -> None:
        """Pause every rank at its next step (the same step on all)."""
        if not self.done:
            self.launch.pause()

    def resume(self) -> None:
        if not self.done:
            self.launch.resume()

    def __repr__(self) -> str:
        return f"ProcessRun(status={self.status!r}, epochs={self.epochs}, pid={self.launch.process.pid})"


def _failure(launch: distributed.DistributedRun, returncode: int) -> tuple[ProcessFailure, str]:
    """The error to show for a failed launch: the first rank that reported one (the others
    usually fail because it left), with its traceback; else torchrun's status and output."""
    errors = launch.errors
    if errors:
        first = errors[0]
        others = len({e.get("rank") for e in errors} - {first.get("rank")})
        more = f" ({others} more rank{'s' if others > 1 else ''} failed)" if others else ""
        return (ProcessFailure(f"rank {first.get('rank')}: {first.get('type')}: {first.get('message')}{more}"),
                str(first.get("traceback", "")))
    return (ProcessFailure(f"torchrun exited with status {returncode} and no rank reported an error"),
            launch.output[-4000:])
