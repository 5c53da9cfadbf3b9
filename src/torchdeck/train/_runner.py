"""Background runs: ``Learner.fit_async`` returns a :class:`Run` to pause, resume and stop."""

from __future__ import annotations

import threading
import traceback
from typing import TYPE_CHECKING, Any, Callable

from torchdeck.train._callback import Callback
from torchdeck.train._events import CancelFit
from torchdeck.train._state import TrainState, progress_of

if TYPE_CHECKING:
    from torchdeck.train._learner import Learner

__all__ = ["Run", "RunControl", "BackgroundRun"]

class RunControl(Callback):
    """Checks the run's flags at every step boundary: stop raises CancelFit, pause waits."""

    def __init__(self, run: "Run") -> None:
        self.run = run

    def step_begin(self, state: TrainState) -> None:
        run = self.run
        if run._pause.is_set() and not run._stop.is_set():
            run.status = "paused"
            while run._pause.is_set() and not run._stop.is_set():
                run._wake.wait(0.5)
                run._wake.clear()
            if not run._stop.is_set():
                run.status = "running"
        if run._stop.is_set():
            raise CancelFit("stopped by the user")


class BackgroundRun:
    """Work on a background thread, seen through a status: starting, running, (paused,)
    stopping, stopped, finished or failed. Subclasses write ``_main`` and end it with
    ``_finish(final)``; ``error`` holds the exception of a failed run and ``traceback`` its text.
    """

    def __init__(self, thread_name: str) -> None:
        self.status = "starting"
        self.error: BaseException | None = None
        self.traceback = ""
        self._stop = threading.Event()
        self._done_callbacks: list[Callable[[Any], None]] = []
        self._done_lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=thread_name, daemon=True)

    def start(self) -> "BackgroundRun":
        self._thread.start()
        return self

    def _main(self) -> None:
        raise NotImplementedError

    def _failed(self, error: BaseException) -> str:
        """Keep ``error`` for the UI (the thread must not die silently); the final status."""
        self.error, self.traceback = error, traceback.format_exc()
        return "failed"

    def _finish(self, final: str) -> None:
        # The final status is set last and under the lock: once a run says it is done, what it
        # used is free, and a callback registered meanwhile runs exactly once.
        with self._done_lock:
            self.status = final
            callbacks, self._done_callbacks = self._done_callbacks, []
        for fn in callbacks:
            fn(self)

    def on_done(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(run)`` once the run has ended: on its thread, or now if it already has."""
        with self._done_lock:
            if not self.done:
                self._done_callbacks.append(fn)
                return
        fn(self)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end, its done callbacks included; True if it has."""
        self._thread.join(timeout)
        return self.done and not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self.status in ("stopped", "finished", "failed")


class Run(BackgroundRun):
    """A fit running on a background thread.

    ``status`` is one of: starting, running, paused, stopping, stopped, finished, failed.
    ``error`` holds the exception of a failed run and ``traceback`` its text; the learner's
    model and history stay as they were at the failing step.
    """

    def __init__(self, learner: "Learner", epochs: int) -> None:
        super().__init__("torchdeck-fit")
        self.learner = learner
        self.epochs = epochs
        self._pause = threading.Event()
        self._wake = threading.Event()
        self._control = RunControl(self)

    def _main(self) -> None:
        self.learner.add_callback(self._control)
        final = "finished"
        try:
            if not self._stop.is_set():
                self.status = "running"
            self.learner.fit(self.epochs)
            if self._stop.is_set():
                final = "stopped"
        except BaseException as e:
            final = self._failed(e)
        finally:
            self.learner.remove_callback(self._control)
            self._finish(final)

    # -- control -----------------------------------------------------------------------------
    def stop(self) -> None:
        """End the run at the next step boundary (within one step)."""
        if not self.done:
            self.status = "stopping"
        self._stop.set()
        self._wake.set()

    def pause(self) -> None:
        if not self.done:
            self._pause.set()

    def resume(self) -> None:
        self._pause.clear()
        self._wake.set()

    @property
    def progress(self) -> dict[str, int | str]:
        return progress_of(self.learner.state, self.status)

    def __repr__(self) -> str:
        return f"Run(status={self.status!r}, epochs={self.epochs})"
