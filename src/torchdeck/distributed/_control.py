"""Pause, resume and a graceful stop for a run on several processes.

The parent writes one word (``run`` / ``pause`` / ``stop``) into a small control file in the
launch's work folder (atomically: a temporary file renamed over it, so a rank never reads
half a word); every rank's :class:`ProcessControl` looks at it at each step_begin, and the
ranks agree through one all-reduce (MAX over the codes in ``COMMANDS``), so they all pause
or stop at the same step: a rank that went on alone would wait for ever at the next
gradient all-reduce.

Cost when never paused: one ``os.stat`` (the file is read again only when it changed) and one
all-reduce of two numbers per check. A check every step would cost about 1 ms a step with gloo
on a CPU, which doubles a toy model's step, so the ranks check every ``interval`` steps,
agreed in the same all-reduce: each rank proposes as many steps as fit in ``response`` seconds
(by its own recent step time; at least 1, at most ``MAX_INTERVAL``) and they take the smallest.
A command is then answered within about ``response`` seconds, or at the next step when steps
are slower than that. Paused ranks poll the file every ``poll`` seconds, all-reducing each
time, so they also resume at the same step.

Rank 0 acknowledges a change in a second file (``<control>.ack``: ``"paused <step>"`` or
``"running <step>"``), which the parent reads to tell that the ranks have really paused.

Validation steps: ranks may hold one validation batch more than another (no padding), so
the agreed check runs only on the batches every rank has (their minimum, one all-reduce at
the pass's start); a rank's extra last batch runs unchecked.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable

import torch.distributed as dist

from torchdeck.train import Callback
from torchdeck.train._callbacks import reduce_over_ranks
from torchdeck.train._events import CancelFit
from torchdeck.train._state import TrainState

__all__ = ["COMMANDS", "CONTROL_ENV", "STOP_REASON", "ProcessControl", "write_control", "read_control",
           "read_ack", "check_command"]

CONTROL_ENV = "TORCHDECK_CONTROL"  # the control file's path, set by launch() for every rank

# Command -> code; the ranks take the MAX, so a stop anywhere outranks a pause, a pause a run.
COMMANDS: dict[str, int] = {"run": 0, "pause": 1, "stop": 2}
_NAMES = {code: name for name, code in COMMANDS.items()}

# The fit's stop_reason after a graceful stop: what the parent reads (relayed at fit_end)
# to tell a stopped run from a finished one.
STOP_REASON = "stopped by the user"


def check_command(command: str) -> str:
    if command not in COMMANDS:
        raise ValueError(f"control: command must be one of {', '.join(map(repr, COMMANDS))}, got {command!r}")
    return command


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".control-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old word or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_control(path: str, command: str) -> None:
    """Set the command every rank of the run reads (``"run"``, ``"pause"`` or ``"stop"``)."""
    _write_atomic(path, check_command(command))


def read_control(path: str) -> str:
    """The command in ``path``; ``"run"`` when the file is missing or holds something else
    (a damaged file must not stop a run)."""
    try:
        with open(path) as f:
            word = f.read().strip()
    except OSError:
        return "run"
    return word if word in COMMANDS else "run"


def read_ack(path: str) -> tuple[str, int] | None:
    """Rank 0's last acknowledgement ``(status, step)`` (``"paused"`` / ``"running"``), or None."""
    try:
        with open(path + ".ack") as f:
            status, step = f.read().split()
        return status, int(step)
    except (OSError, ValueError):
        return None


class _Watch:
    """The control file's command, re-read only when its stat changed (one ``os.stat`` a call)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._code = 0

    def code(self) -> int:
        try:
            st = os.stat(self.path)
        except OSError:
            self._key, self._code = None, 0
            return 0
        key = (st.st_ino, st.st_mtime_ns, st.st_size)  # a rename gives a new inode
        if key != self._key:
            self._key, self._code = key, COMMANDS[read_control(self.path)]
        return self._code


MAX_INTERVAL = 64  # most steps between two checks, however quick the steps


def _agree(code: int, interval: int = 1) -> tuple[int, int]:
    """The largest ``code`` and the smallest ``interval`` over the ranks, in one all-reduce
    (MAX of ``(code, -interval)``)."""
    top, neg = reduce_over_ranks([code, -interval])
    return top, -neg


class ProcessControl(Callback):
    """Every rank's side of the control file (see the module docstring).

    ``path``: the control file (default: the ``TORCHDECK_CONTROL`` environment variable).
    ``poll``: seconds between looks at the file while paused. ``response``: the seconds of
    steps between two checks (see the module docstring; 0 checks at every step). ``ack``: whether this rank
    writes the acknowledgement file (default: rank 0 only). ``paused_at``: the step of the
    last pause (None before any), for tests and logs.
    """

    reads = ("phase", "step", "batch_index", "batches", "epoch")

    def __init__(self, path: str | None = None, *, poll: float = 0.05, response: float = 0.02,
                 ack: bool | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        path = os.environ.get(CONTROL_ENV, "") if path is None else path
        if not path:
            raise ValueError(f"ProcessControl: path must name the control file (or set {CONTROL_ENV}), got {path!r}")
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0 < poll <= 5:
            raise ValueError(f"ProcessControl: poll must be a number of seconds in (0, 5], got {poll!r}")
        if isinstance(response, bool) or not isinstance(response, (int, float)) or not 0 <= response <= 5:
            raise ValueError(f"ProcessControl: response must be a number of seconds in [0, 5], got {response!r}")
        self.path = path
        self.poll = float(poll)
        self.response = float(response)
        self.clock = clock
        self.ack = ack
        self.sleep = sleep
        self.paused_at: int | None = None
        self._watch = _Watch(path)
        self._checked = 0  # batches of the current pass that every rank has (validation)
        self._countdown = 0  # steps to go before the next check
        self._interval = 1   # steps between the last two checks
        self._last: float | None = None  # the clock at the last check of this pass

    def _acks(self) -> bool:
        if self.ack is not None:
            return self.ack
        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0

    def _acknowledge(self, status: str, step: int) -> None:
        if self._acks():
            _write_atomic(self.path + ".ack", f"{status} {step}")

    def epoch_begin(self, state: TrainState) -> None:
        # Every rank starts each pass with a check: the countdowns stay in step across ranks.
        self._countdown, self._last = 0, None
        if not state.phase.training:
            self._checked = reduce_over_ranks([state.batches.get(state.phase.name, 0)], "min")[0]

    def _proposal(self, now: float) -> int:
        """Steps until the next check, by this rank's own step time since the last one."""
        if self._last is None or self.response == 0:
            return 1
        per_step = max((now - self._last) / self._interval, 1e-9)
        return max(1, min(MAX_INTERVAL, int(self.response / per_step + 1e-6)))  # 4.9999… steps are 5

    def step_begin(self, state: TrainState) -> None:
        if not state.phase.training and state.batch_index >= self._checked:
            return  # a batch another rank does not have: it would wait alone at the all-reduce
        if self._countdown > 0:
            self._countdown -= 1
            return
        now = self.clock()
        code, self._interval = _agree(self._watch.code(), self._proposal(now))
        self._countdown, self._last = self._interval - 1, now
        if code == COMMANDS["pause"]:
            code = self._pause(state)
            self._last = None  # the pause is no step time
        if code == COMMANDS["stop"]:
            raise CancelFit(STOP_REASON)

    def _pause(self, state: TrainState) -> int:
        """Wait (every rank in step, one all-reduce per poll) until the command is run or stop."""
        self.paused_at = state.step
        self._acknowledge("paused", state.step)
        code = COMMANDS["pause"]
        while code == COMMANDS["pause"]:
            self.sleep(self.poll)
            code = _agree(self._watch.code())[0]
        self._acknowledge("running", state.step)
        return code

    def __repr__(self) -> str:
        return f"ProcessControl({self.path!r}, poll={self.poll:g}, response={self.response:g})"
