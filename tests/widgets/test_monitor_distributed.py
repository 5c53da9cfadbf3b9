"""The training monitor with Processes > 1: Train launches torchrun and the charts, table,
progress and status follow rank 0's relayed stream; Pause holds every rank and Resume lets
them go on; Stop ends every process (gracefully: exit status 0); a failing rank
shows its error in place; a refused Processes value starts nothing.

Each torchrun run costs seconds (three interpreters importing torch on a shared machine): the
file keeps to three of them.
"""

from __future__ import annotations

import html
import os
import re
import time

import numpy as np
import pytest

from torchdeck import distributed
from torchdeck.spec import Experiment
from torchdeck.train import Run
from torchdeck.widgets import StudioState, TrainingMonitor
from torchdeck.widgets._monitor_process import ProcessRun

STEPS_PER_EPOCH = 6  # digits: 1437 training images in batches of 256 (2 ranks of 128)

pytestmark = [pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs for 2 processes"),
              pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the ranks' processes in /proc")]


def tiny_spec(epochs: int = 1, **model_options) -> Experiment:
    """The Studio's default run on a small MLP in big batches."""
    return Experiment().with_changes(model={"backbone": "mlp", "options": {"hidden": 16, **model_options}},
                                     **{"train.epochs": epochs, "train.batch_size": 256})


@pytest.fixture(scope="module")
def state() -> StudioState:
    s = StudioState(tiny_spec())
    s.task()
    return s


@pytest.fixture
def monitors(state):
    made: list[TrainingMonitor] = []

    def make(spec: Experiment | None = None, **kwargs) -> TrainingMonitor:
        state.spec = spec if spec is not None else tiny_spec()
        state.error = ""
        mon = TrainingMonitor(state, **kwargs)
        made.append(mon)
        return mon
    yield make
    for mon in made:
        if mon.run is not None and not mon.run.done:
            mon.run.stop()
            mon.run.join(60)


def _wait(pred, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _status(mon: TrainingMonitor) -> str:
    return re.match(r"status: <b>(\w+)</b>", mon.status.value).group(1)


def _buttons(mon: TrainingMonitor) -> tuple[bool, bool, bool]:
    """(train enabled, pause enabled, stop enabled)"""
    return not mon.train_button.disabled, not mon.pause_button.disabled, not mon.stop_button.disabled


def _rows(table_html: str) -> list[list[str]]:
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r)]
            for r in re.findall(r"<tr>(.*?)</tr>", table_html.split("<tbody>")[1])]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (from each process's parent in /proc)."""
    parents = {int(p): _parent(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_two_processes_fill_charts_table_and_status_from_the_relayed_history(monitors):
    mon = monitors(tiny_spec(1), predictions=4)
    mon.processes.value = 2
    run = mon.start()
    assert isinstance(run, ProcessRun)
    assert _status(mon) in ("starting", "running")
    assert _buttons(mon) == (False, True, True)  # Pause and Stop, as for a run in this kernel
    assert run.join(120), run
    assert run.status == "finished" and _status(mon) == "finished", (run.traceback, run.launch.output[-3000:])
    assert mon.learner is None  # no model in this process

    history = run.launch.history.epochs  # rank 0's Recorder rows, as relayed
    assert [row["epoch"] for row in history] == [1]
    tr = mon._traces
    for key in ("train_loss", "valid_loss", "valid_accuracy"):
        np.testing.assert_array_equal(tr[key].x, [row["step"] for row in history])
        np.testing.assert_allclose(tr[key].y, [row[key] for row in history], rtol=1e-12)
    np.testing.assert_array_equal(tr["loss"].x, np.arange(STEPS_PER_EPOCH))
    np.testing.assert_array_equal(tr["lr"].x, np.arange(STEPS_PER_EPOCH))
    # The default warm-up: linear from 3e-4 to 3e-3 over 50 steps, in closed form.
    np.testing.assert_allclose(tr["lr"].y, 3e-4 + (3e-3 - 3e-4) * np.arange(STEPS_PER_EPOCH) / 50, rtol=1e-12)
    assert tr["momentum"].name == "momentum (b1)"  # named from the relayed optimiser state
    assert mon.current_step == STEPS_PER_EPOCH - 1

    rows = _rows(mon.table.value)
    r = history[0]
    assert rows == [[str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['valid_loss']:.4f}",
                     f"{r['valid_accuracy']:.4f}", f"{r['epoch_seconds']:.2f} s"]]
    assert f"{r['valid_accuracy']:.4f}" in mon.headline.value
    assert mon.progress_bar.value == 1.0 and "epoch 1/1" in mon.progress.value
    assert mon.failure.value == "" and mon.state.error == ""
    # The end's grid, from the weights rank 0 saved (their folder is gone once shown).
    assert mon.predictions.value[:8] == b"\x89PNG\r\n\x1a\n" and mon.predictions.layout.display is None
    assert not os.path.exists(os.path.dirname(run.weights))
    assert _buttons(mon) == (True, False, False)


def _relayed_step(mon: TrainingMonitor) -> int:
    steps, _ = mon.stream.snapshot().get("loss", ([], []))
    return steps[-1] if steps else -1


def test_pause_holds_every_rank_resume_goes_on_and_stop_ends_them_all(monitors):
    mon = monitors(tiny_spec(500), predictions=0)
    mon.processes.value = 2
    run = mon.start()
    assert isinstance(run, ProcessRun)
    _wait(lambda: _relayed_step(mon) >= 1 or run.done)  # the ranks are training
    assert not run.done, run.launch.output[-3000:]
    assert _status(mon) == "running"
    started = _children(run.launch.process.pid)
    assert len(started) >= 2  # the two ranks (and whatever torchrun runs besides)

    mon.toggle_pause()
    assert _status(mon) == "paused" and _buttons(mon) == (False, True, True)
    assert mon.pause_button.description == "Resume"
    _wait(lambda: run.status == "paused" or run.done, 30)  # the ranks have acknowledged
    held = _relayed_step(mon)
    time.sleep(1.2)
    assert _relayed_step(mon) == held and run.status == "paused" and not run.done

    mon.toggle_pause()
    assert _status(mon) == "running" and mon.pause_button.description == "Pause"
    _wait(lambda: run.status == "running" or run.done, 30)  # the ranks have gone on
    _wait(lambda: _relayed_step(mon) > held + 1 or run.done, 30)  # and train
    assert not run.done

    mon.stop()
    assert _status(mon) == "stopping" and _buttons(mon) == (False, False, False)
    assert run.join(90), run
    assert run.status == "stopped" and _status(mon) == "stopped"
    # Stopped at a step boundary, not killed: the fit ended and torchrun exited 0.
    assert run.returncode == 0 and run.launch.outcome == "stopped", run.launch.output[-3000:]
    assert [pid for pid in started if _alive(pid)] == []
    assert mon.failure.value == ""
    assert mon.stream.epoch_count < 500
    assert _buttons(mon) == (True, False, False)


def test_a_failing_rank_shows_its_error_in_place(monitors, state):
    # Builds on every rank, fails at the first forward: the digits have 64 features, not 63.
    broken = tiny_spec(1, in_features=63)
    mon = monitors(broken, predictions=4)
    mon.processes.value = 2
    run = mon.start()
    assert isinstance(run, ProcessRun)
    assert run.join(120), run
    assert run.status == "failed" and _status(mon) == "failed"

    # The same error as this process gets from a rank's batch (256 over 2 ranks).
    with pytest.raises(RuntimeError) as local:
        broken.with_changes(**{"train.batch_size": 128}).build(task=state.task()).fit()
    message = str(local.value)
    box = html.unescape(mon.failure.value)
    assert "the run failed" in box and f"RuntimeError: {message}" in box
    assert re.search(r"ProcessFailure: rank [01]: RuntimeError", box)
    traceback_text = box.split("<pre>")[1]
    assert "Traceback (most recent call last)" in traceback_text and "File " in traceback_text
    assert "RuntimeError" in html.unescape(mon.status.value)
    assert mon.predictions.layout.display == "none"  # no grid for a failed run
    assert _buttons(mon) == (True, False, False)


@pytest.mark.parametrize("value", [0, -2, (os.cpu_count() or 1) + 1, "two", 1.5, True])
def test_a_refused_processes_value_starts_nothing(monitors, monkeypatch, value):
    launched = []
    monkeypatch.setattr(distributed, "launch", lambda *a, **k: launched.append(a))
    mon = monitors()
    if isinstance(value, int) and not isinstance(value, bool):
        mon.processes.value = value  # the field, as a user would type it
        run = mon.start()
    else:
        run = mon.start(processes=value)  # the API takes what the field cannot hold
    assert run is None and mon.run is None and launched == []
    assert mon.state.error.startswith("Processes: must be")
    assert repr(value) in mon.state.error
    limit = os.cpu_count() or 1
    allowed = f"at most {limit}" if isinstance(value, int) and not isinstance(value, bool) and value > limit \
        else "a positive integer"
    assert allowed in mon.state.error
    assert _status(mon) == "idle"


def test_one_process_is_todays_run_in_this_kernel(monitors, monkeypatch):
    monkeypatch.setattr(distributed, "launch", lambda *a, **k: pytest.fail("one process must not launch torchrun"))
    mon = monitors(tiny_spec(1))
    assert mon.processes.value == 1
    run = mon.start()
    assert isinstance(run, Run) and run.join(60) and run.status == "finished", run.traceback
    np.testing.assert_allclose(mon._traces["valid_loss"].y, [r["valid_loss"] for r in mon.learner.history.epochs])
