"""Pause, resume and the graceful stop of runs on several processes (distributed._control).

In one process: the control file, and ProcessControl on a learner (its reference: the same
learner trained without it). With torchrun (2 gloo ranks; each start costs seconds, so two
runs check everything): a pause holds both ranks at one step and changes nothing in the
training; a stop ends both at one step with exit status 0, "stopped" and a complete CSV log.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from torchdeck import distributed
from torchdeck import optim as O
from torchdeck.distributed import STOP_REASON, ProcessControl, read_control, write_control
from torchdeck.distributed._control import read_ack
from torchdeck.distributed._launch import DistributedRun
from torchdeck.distributed._relay import RelayServer, Replay
from torchdeck.spec import Experiment
from torchdeck.train import Callback, MetricStream, TrainingPhase

from . import _cases

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# 1438 training samples in batches of 64 (two ranks of 32 make the single process's batches): 23 steps an epoch.
SPEC = {"name": "tiny", "task": {"name": "image-classification"},
        "data": {"name": "digits", "options": {"valid_fraction": 0.2}},
        "model": {"backbone": "mlp", "options": {"in_features": 64, "hidden": 16}},
        "optim": {"chain": [{"adam": {}}, {"scale_lr": {"lr": 0.01}}]}, "schedules": {},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu"}}
STEPS_PER_EPOCH = 23


# -- the control file ---------------------------------------------------------------------

def test_control_file_round_trip_and_refusals(tmp_path):
    path = str(tmp_path / "control")
    assert read_control(path) == "run"  # no file yet: run
    for command in ("pause", "stop", "run"):
        write_control(path, command)
        assert read_control(path) == command
    assert os.listdir(tmp_path) == ["control"]  # the temporary file was renamed, not left
    with open(path, "w") as f:
        f.write("halt")
    assert read_control(path) == "run"  # a damaged file does not stop a run
    with pytest.raises(ValueError, match=r"command must be one of 'run', 'pause', 'stop', got 'halt'"):
        write_control(path, "halt")
    with pytest.raises(ValueError, match=r"ProcessControl: poll must be .* got 0"):
        ProcessControl(path, poll=0)
    with pytest.raises(ValueError, match=r"ProcessControl: path must name the control file .* got ''"):
        ProcessControl("")


class WriteAt(Callback):
    """Writes ``command`` into the control file at the end of training step ``step``."""

    reads = ("phase", "step")

    def __init__(self, path, step, command):
        self.path, self.step, self.command = path, step, command

    def step_end(self, state):
        if state.phase.training and state.step == self.step:
            write_control(self.path, self.command)


def _learner(callbacks, epochs=2):
    learner = _cases.learner("tensor")
    learner.set_callbacks([*learner.callbacks, *callbacks])
    learner.epochs = epochs
    return learner


def test_a_pause_waits_polling_then_training_goes_on_unchanged(tmp_path):
    path = str(tmp_path / "control")
    write_control(path, "run")
    sleeps = []

    def sleep(seconds):  # the paused loop's wait: the test resumes the run on the third one
        sleeps.append(seconds)
        assert read_ack(path) == ("paused", 3)
        if len(sleeps) == 3:
            write_control(path, "run")

    control = ProcessControl(path, poll=0.05, response=0, sleep=sleep)  # response 0: a check every step
    paused = _learner([WriteAt(path, 2, "pause"), control]).fit()
    assert sleeps == [0.05] * 3 and control.paused_at == 3
    assert read_ack(path) == ("running", 3)
    reference = _learner([]).fit()  # the same run, never paused
    assert paused.history.steps == reference.history.steps and paused.state.stop_reason == ""
    for (name, p), q in zip(paused.model.state_dict().items(), reference.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_stop_ends_the_fit_at_the_next_step_and_says_why(tmp_path):
    path = str(tmp_path / "control")
    write_control(path, "run")
    ended = []

    class FitEnd(Callback):
        reads = ("step", "stop_reason")

        def fit_end(self, state):
            ended.append((state.step, state.stop_reason))

    learner = _learner([WriteAt(path, 5, "stop"), ProcessControl(path, response=0), FitEnd()], epochs=3).fit()
    assert learner.history.steps == list(range(6))  # step 6 never began
    assert ended == [(6, STOP_REASON)]


class Clock(Callback):
    """A fake clock that moves on ``dt`` seconds at every training step's end."""

    reads = ("phase",)

    def __init__(self, dt):
        self.now, self.dt = 0.0, dt

    def __call__(self):
        return self.now

    def step_end(self, state):
        self.now += self.dt


def test_quick_steps_are_checked_every_few_steps_and_a_stop_answered_within_the_response_time(tmp_path):
    from torchdeck.data import TensorLoader
    from torchdeck.train import Learner
    path = str(tmp_path / "control")
    write_control(path, "run")
    clock = Clock(0.004)  # 4 ms a step; response 20 ms: a check every 5 steps once measured
    checks = []
    control = ProcessControl(path, response=0.02, clock=clock)
    watch_code = control._watch.code
    control._watch.code = lambda: (checks.append(round(clock.now / 0.004)), watch_code())[1]
    x, y = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), torch.randint(0, 2, (64,))
    learner = Learner(torch.nn.Linear(3, 2), {"train": TensorLoader(x, y, 2)}, torch.nn.functional.cross_entropy,
                      O.adam(), phases=(TrainingPhase(),), callbacks=[WriteAt(path, 13, "stop"), clock, control])
    learner.fit(1)  # 32 steps
    # a check at the pass's first step, one at the next (nothing measured yet), then every 5
    assert checks == [0, 1, 6, 11, 16]
    assert learner.state.stop_reason == STOP_REASON
    stopped_at = learner.history.steps[-1] + 1  # the step that never began: 16
    assert 0 < stopped_at - 13 <= 5  # within the 20 ms response (5 steps of 4 ms)


def test_stop_falls_back_to_sigterm_when_the_ranks_do_not_answer(tmp_path):
    # A "run" that never reads its control file: the graceful stop times out, SIGTERM ends it.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    workdir = tempfile.TemporaryDirectory(prefix="torchdeck-test-")
    control = os.path.join(workdir.name, "control")
    write_control(control, "run")
    replay = Replay([])
    run = DistributedRun(process, RelayServer(replay), replay, MetricStream(), workdir, control)
    run.pause()
    assert read_control(control) == "pause" and not run.paused  # nobody acknowledged
    code = run.stop(timeout=0.5)
    assert code == -15 and run.outcome == "stopped" and run.stopped
    assert not os.path.exists(workdir.name)


# -- two gloo ranks -----------------------------------------------------------------------

pytestmark_two = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs for 2 processes")


def _launch(spec, tmp_path, **kwargs):
    log = str(tmp_path / "steps")
    path = os.pathsep.join([os.path.join(ROOT, "src"), HERE, os.environ.get("PYTHONPATH", "")])
    run = distributed.launch(spec, 2, setup="_control_hooks:log_steps", capture=True,
                             env={"PYTHONPATH": path, "TD_TEST_STEPLOG": log}, **kwargs)
    return run, log


def _rank_log(log, rank):
    with open(f"{log}.{rank}") as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if "step" in r]
    ends = [r for r in records if "end" in r]
    return steps, ends


def _relayed_step(run):
    """The last training step rank 0's relay has reported (-1 before any)."""
    steps, _ = run.stream.snapshot().get("loss", ([], []))
    return steps[-1] if steps else -1


def _wait(pred, run, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert not run.done, run.output[-3000:]
        assert time.monotonic() < deadline, "condition not reached in time: " + run.output[-3000:]
        time.sleep(0.02)


@pytestmark_two
def test_two_ranks_pause_at_one_step_and_resume_to_the_uninterrupted_weights(tmp_path):
    from safetensors.torch import load_file

    weights = str(tmp_path / "w.safetensors")
    run, log = _launch(Experiment.from_dict(SPEC), tmp_path, save=weights)
    try:
        _wait(lambda: _relayed_step(run) >= 5, run)
        run.pause()
        _wait(lambda: run.paused, run, timeout=30)
        before = _relayed_step(run)
        time.sleep(1.2)
        assert _relayed_step(run) == before and run.paused and not run.done  # held
        run.resume()
        assert run.wait(120) == 0, run.output[-3000:]
    finally:
        if not run.done:
            run.stop(5)
    assert run.outcome == "finished" and not run.stopped and not run.paused

    total = 2 * STEPS_PER_EPOCH
    paused_at = []
    for rank in (0, 1):
        steps, ends = _rank_log(log, rank)
        assert [r["step"] for r in steps] == list(range(total)), rank
        assert ends == [{"end": total, "stop_reason": ""}]
        gaps = [(b["t"] - a["t"], b["step"]) for a, b in zip(steps, steps[1:])]
        gap, step = max(gaps)
        assert gap >= 1.0 and 5 <= step < total, (rank, gap, step)
        assert sorted(gaps)[-2][0] < 1.0  # one pause, not several
        paused_at.append(step)  # the step the rank waited before (paused at its step_begin)
    assert paused_at[0] == paused_at[1]

    # The same training as one uninterrupted process of the same spec (DDP's mean of two
    # half-batches is the full batch's gradient; the sums differ only in rounding).
    reference = Experiment.from_dict(SPEC).build().fit().model.state_dict()
    trained = load_file(weights)
    assert trained.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(trained[name], value, rtol=1e-4, atol=1e-5, msg=name)


@pytestmark_two
def test_two_ranks_stop_gracefully_at_one_step_with_a_complete_csv_log(tmp_path):
    csv_path = str(tmp_path / "log.csv")
    spec = Experiment.from_dict({**SPEC, "train": {**SPEC["train"], "epochs": 50},
                                 "callbacks": [{"csv_logger": {"path": csv_path}}]})
    run, log = _launch(spec, tmp_path)
    try:
        _wait(lambda: len(run.history.epochs) >= 1, run)
        code = run.stop(timeout=60)
    finally:
        if not run.done:
            run.stop(5)
    assert code == 0, run.output[-3000:]
    assert run.outcome == "stopped" and run.stop_reason == STOP_REASON and run.errors == []

    ends = [_rank_log(log, rank) for rank in (0, 1)]
    (steps0, end0), (steps1, end1) = ends
    assert end0 == end1 and len(end0) == 1 and end0[0]["stop_reason"] == STOP_REASON
    assert [r["step"] for r in steps0] == [r["step"] for r in steps1] == list(range(end0[0]["end"]))
    assert end0[0]["end"] < 50 * STEPS_PER_EPOCH

    # The logger closed its file at each complete epoch: every row the relay saw, and only those.
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    relayed = run.history.epochs
    assert len(rows) == len(relayed) >= 1
    for row, rel in zip(rows, relayed):
        assert int(row["epoch"]) == rel["epoch"] and int(row["step"]) == rel["step"]
        assert float(row["valid_loss"]) == pytest.approx(rel["valid_loss"], rel=1e-12)
    assert sorted(os.listdir(tmp_path)) == ["log.csv", "steps.0", "steps.1"]
