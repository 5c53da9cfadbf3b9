"""Throttle: run a callback's per-step work only every n steps or every t seconds."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from torchdeck.train._callback import Callback
from torchdeck.train._callbacks import Recorder
from torchdeck.train._state import TrainState

__all__ = ["Throttle", "STEP_EVENTS"]

STEP_EVENTS: tuple[str, ...] = ("step_begin", "loss_begin", "backward_begin", "backward_end", "step_end")


class Throttle(Callback):
    """Wraps ``callback`` so its step events (``step_begin`` .. ``step_end``) reach it only on
    chosen steps: every ``every_steps``-th step (the first included) and/or once
    ``every_seconds`` have passed since the last chosen one. Fit and epoch events always
    reach it. A chosen step delivers all of that step's events.

    The wrapper takes the callback's ``reads``, ``writes`` and ``after``, and also runs after
    the Recorder (most wrapped callbacks read metrics or history).
    """

    after = (Recorder,)

    def __init__(self, callback: Callback, *, every_steps: int | None = None, every_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(callback, Callback):
            raise ValueError(f"Throttle: callback must be a Callback, got {callback!r}")
        if every_steps is None and every_seconds is None:
            raise ValueError("Throttle: give every_steps=, every_seconds= or both")
        if every_steps is not None and (isinstance(every_steps, bool) or not isinstance(every_steps, int)
                                        or every_steps < 1):
            raise ValueError(f"Throttle: every_steps must be a positive integer, got {every_steps!r}")
        if every_seconds is not None and (isinstance(every_seconds, bool) or not isinstance(every_seconds, (int, float))
                                          or not 0 < every_seconds < math.inf):
            raise ValueError(f"Throttle: every_seconds must be a positive number, got {every_seconds!r}")
        self.callback = callback
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.clock = clock
        self.reads = callback.reads
        self.writes = callback.writes
        self.after = (*callback.after, *(c for c in type(self).after if c not in callback.after))
        self.in_probes = getattr(callback, "in_probes", False)
        self._count = 0
        self._last = -math.inf
        self._on = False
        inner = callback.handles()
        # step_begin is where the choice is made, so the wrapper needs it whenever the wrapped
        # callback handles any step event.
        wants_steps = any(e in inner for e in STEP_EVENTS)
        self._handles = tuple(e for e in inner if e not in STEP_EVENTS) + (STEP_EVENTS if wants_steps else ())
        self._inner = {e: getattr(callback, e) for e in inner}

    def handles(self) -> tuple[str, ...]:
        return self._handles

    def attach(self, learner: Any) -> None:
        attach = getattr(self.callback, "attach", None)
        if attach is not None:
            attach(learner)

    def _due(self) -> bool:
        if self.every_steps is not None and self._count % self.every_steps == 0:
            return True
        return self.every_seconds is not None and self.clock() - self._last >= self.every_seconds

    def _forward(self, event: str, state: TrainState) -> None:
        handler = self._inner.get(event)
        if handler is not None:
            handler(state)

    def fit_begin(self, state: TrainState) -> None:
        self._forward("fit_begin", state)

    def epoch_begin(self, state: TrainState) -> None:
        self._forward("epoch_begin", state)

    def step_begin(self, state: TrainState) -> None:
        self._on = self._due()
        self._count += 1
        if self._on:
            if self.every_seconds is not None:
                self._last = self.clock()
            self._forward("step_begin", state)

    def loss_begin(self, state: TrainState) -> None:
        if self._on:
            self._forward("loss_begin", state)

    def backward_begin(self, state: TrainState) -> None:
        if self._on:
            self._forward("backward_begin", state)

    def backward_end(self, state: TrainState) -> None:
        if self._on:
            self._forward("backward_end", state)

    def step_end(self, state: TrainState) -> None:
        if self._on:
            self._forward("step_end", state)

    def epoch_end(self, state: TrainState) -> None:
        self._forward("epoch_end", state)

    def fit_end(self, state: TrainState) -> None:
        self._forward("fit_end", state)

    def state_dict(self) -> dict[str, Any]:
        inner = self.callback.state_dict() if callable(getattr(self.callback, "state_dict", None)) else None
        return {"count": self._count, "inner": inner}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._count = int(state["count"])
        if state["inner"] is not None and callable(getattr(self.callback, "load_state_dict", None)):
            self.callback.load_state_dict(state["inner"])

    def __repr__(self) -> str:
        every = ", ".join(f"{k}={v}" for k, v in (("every_steps", self.every_steps),
                                                   ("every_seconds", self.every_seconds)) if v is not None)
        return f"Throttle({self.callback!r}, {every})"
