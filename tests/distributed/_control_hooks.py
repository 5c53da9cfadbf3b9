"""``--setup`` hook for test_control.py (imported by the worker processes): every rank logs
its training steps with the time each ended, and its fit's end, as JSON lines in
``$TD_TEST_STEPLOG.<rank>``; each step is slowed a little so that a test can act mid-run."""

from __future__ import annotations

import json
import os
import time

from torchdeck import distributed
from torchdeck.train import Callback

STEP_SECONDS = 0.03


class StepLog(Callback):
    reads = ("phase", "step", "stop_reason")

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def step_end(self, state) -> None:
        if state.phase.training:
            time.sleep(STEP_SECONDS)
            self._write({"step": state.step, "t": time.monotonic()})

    def fit_end(self, state) -> None:
        self._write({"end": state.step, "stop_reason": state.stop_reason})


def log_steps(learner) -> None:
    learner.add_callback(StepLog(f"{os.environ['TD_TEST_STEPLOG']}.{distributed.rank()}"))
