"""The training monitor without a browser: its charts, table and grid against the run's own
records (the Recorder's history) and closed-form schedules; redraws counted on a fake clock;
a failing run shown in place; the buttons through a run's states."""

from __future__ import annotations

import html
import io
import re
import time

import numpy as np
import pytest
import torch
from PIL import Image

from torchdeck import optim as O
from torchdeck.data import TensorLoader
from torchdeck.render import grid_image, to_png
from torchdeck.spec import Experiment
from torchdeck.train import Callback, Learner
from torchdeck.widgets import StudioState, TrainingMonitor

STEPS_PER_EPOCH = 6  # digits: 1437 training images in batches of 256

LR0, LR1, LR_STEPS = 3e-4, 3e-3, 50  # the default spec's warm-up: linear from LR0 to LR1 over 50 steps
B1_0, B1_1, B1_STEPS = 0.95, 0.85, 12


def tiny_spec(epochs: int = 2, **changes) -> Experiment:
    """The Studio's default run on a small MLP in big batches: a step takes a millisecond."""
    return Experiment().with_changes(model={"backbone": "mlp", "options": {"hidden": 16}},
                                     **{"train.epochs": epochs, "train.batch_size": 256}, **changes)


@pytest.fixture(scope="module")
def state() -> StudioState:
    s = StudioState(tiny_spec())
    s.task()  # build the digits task once for the module
    return s


@pytest.fixture
def monitors(state):
    made: list[TrainingMonitor] = []

    def make(spec: Experiment | None = None, **kwargs) -> TrainingMonitor:
        state.spec = spec if spec is not None else tiny_spec()
        mon = TrainingMonitor(state, **kwargs)
        made.append(mon)
        return mon
    yield make
    for mon in made:
        if mon.run is not None and not mon.run.done:
            mon.run.stop()
            mon.run.join(30)


def _wait(pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def _table_cells(table_html: str) -> tuple[list[str], list[list[str]]]:
    head = [html.unescape(c) for c in re.findall(r"<th>(.*?)</th>", table_html)]
    rows = [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r)]
            for r in re.findall(r"<tr>(.*?)</tr>", table_html.split("<tbody>")[1])]
    return head, rows


def _buttons(mon: TrainingMonitor) -> tuple[bool, bool, str, bool]:
    """(train enabled, pause enabled, pause label, stop enabled)"""
    return (not mon.train_button.disabled, not mon.pause_button.disabled, mon.pause_button.description,
            not mon.stop_button.disabled)


READY = (True, False, "Pause", False)


def _status(mon: TrainingMonitor) -> str:
    return re.match(r"status: <b>(\w+)</b>", mon.status.value).group(1)


def test_a_run_fills_charts_table_and_grid_with_the_histories_numbers(monitors):
    b1 = {"linear": {"start": B1_0, "end": B1_1, "steps": B1_STEPS}}
    spec = tiny_spec(2, schedules={**Experiment().schedules, "b1": b1})
    mon = monitors(spec)
    run = mon.start()
    assert run is not None and run.join(60) and run.status == "finished", run.traceback
    history = mon.learner.history
    steps = np.arange(2 * STEPS_PER_EPOCH)
    tr = mon._traces

    # Per step: the loss the Recorder kept; the lr and b1 the schedules set, in closed form.
    np.testing.assert_array_equal(tr["loss"].x, history.steps)
    np.testing.assert_allclose(tr["loss"].y, history.losses, rtol=1e-6)
    np.testing.assert_array_equal(tr["lr"].x, steps)
    np.testing.assert_allclose(tr["lr"].y, LR0 + (LR1 - LR0) * steps / LR_STEPS, rtol=1e-12)
    np.testing.assert_allclose(tr["lr"].y, history.lrs, rtol=0)
    np.testing.assert_allclose(tr["momentum"].y, B1_0 + (B1_1 - B1_0) * steps / B1_STEPS, rtol=1e-12)
    assert tr["momentum"].name == "momentum (b1)"
    assert mon.current_step == history.steps[-1] == steps[-1]

    # Per epoch: at the epoch's last step, the Recorder's values.
    for key in ("train_loss", "valid_loss", "valid_accuracy"):
        np.testing.assert_array_equal(tr[key].x, [row["step"] for row in history.epochs])
        np.testing.assert_allclose(tr[key].y, [row[key] for row in history.epochs], rtol=1e-12)
    assert isinstance(tr["loss"].y, np.ndarray)  # arrays go to plotly, not lists

    head, rows = _table_cells(mon.table.value)
    assert head == ["epoch", "train loss", "valid loss", "valid accuracy", "time"]
    assert rows == [[str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['valid_loss']:.4f}",
                     f"{r['valid_accuracy']:.4f}", f"{r['epoch_seconds']:.2f} s"] for r in history.epochs]
    assert f"{history.epochs[-1]['valid_accuracy']:.4f}" in mon.headline.value
    assert mon.progress_bar.value == 1.0 and "epoch 2/2" in mon.progress.value

    # The grid shows the last epoch's predictions (the model has not changed since).
    expected = mon.learner.show_results(8)
    assert mon.predictions.value == to_png(grid_image(expected.images, expected.captions, columns=8, scale=6))
    assert Image.open(io.BytesIO(mon.predictions.value)).size[0] > 8 * 8 * 6
    assert mon.predictions.layout.display is None
    assert "finished" in mon.status.value and _buttons(mon) == READY
    assert mon.failure.value == ""


def test_sample_predictions_do_not_change_the_run(monitors):
    finals = []
    for n in (8, 0):
        mon = monitors(tiny_spec(2), predictions=n)
        run = mon.start()
        assert run.join(60) and run.status == "finished", run.traceback
        finals.append(torch.cat([p.detach().flatten() for p in mon.learner.model.parameters()]))
        assert (mon.predictions.value != b"") == (n > 0)
    torch.testing.assert_close(finals[0], finals[1], rtol=0, atol=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tick(Callback):
    """Moves the fake clock on by ``dt`` seconds at every step (training and validation)."""

    def __init__(self, clock: FakeClock, dt: float) -> None:
        self.clock, self.dt = clock, dt

    def step_begin(self, state) -> None:
        self.clock.now += self.dt


def _many_short_epochs(mon: TrainingMonitor, clock: FakeClock, dt: float, epochs: int) -> Learner:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=gen), torch.randint(0, 10, (40,), generator=gen)
    loaders = {"train": TensorLoader(x[:32], y[:32], 8), "valid": TensorLoader(x[32:], y[32:], 8)}
    learner = Learner(torch.nn.Linear(4, 10), loaders, torch.nn.functional.cross_entropy,
                      O.chain(O.momentum(rho=0.8), O.scale_lr(0.01)), metrics=["accuracy"],
                      callbacks=[Tick(clock, dt), mon.stream])
    learner.fit(epochs)  # 4 training + 1 validation steps per epoch
    return learner


@pytest.mark.parametrize("dt", [0.001, 0.013, 0.25])
def test_redraws_are_bounded_by_the_interval_and_the_last_state_is_drawn(monitors, dt):
    clock = FakeClock()
    mon = monitors(redraw_interval=0.1, clock=clock, predictions=0)
    learner = _many_short_epochs(mon, clock, dt, epochs=20)  # 100 steps, 20 epoch ends
    elapsed = clock.now
    # One redraw at the first event, then at most one per interval, and one at the end.
    assert mon.redraws <= int(elapsed / 0.1) + 2
    # ... and one at every event past the interval: an event every dt.
    assert mon.redraws >= min(100, int(elapsed / max(0.1, dt))) - 1
    np.testing.assert_allclose(mon._traces["loss"].y, learner.history.losses, rtol=1e-6)
    np.testing.assert_allclose(mon._traces["momentum"].y, [0.8] * 80, rtol=0)
    assert mon._traces["momentum"].name == "momentum"  # not started here: the label is generic
    assert len(mon._traces["valid_loss"].x) == 20
    head, rows = _table_cells(mon.table.value)
    assert [r[0] for r in rows] == [str(e["epoch"]) for e in learner.history.epochs] == [str(i) for i in range(1, 21)]


def test_a_second_fit_into_the_same_monitor_starts_from_empty_traces(monitors):
    clock = FakeClock()
    mon = monitors(clock=clock, predictions=0)
    _many_short_epochs(mon, clock, 0.05, epochs=3)
    second = _many_short_epochs(mon, clock, 0.05, epochs=1)
    np.testing.assert_array_equal(mon._traces["loss"].x, second.history.steps)
    assert len(mon._traces["valid_loss"].x) == 1
    assert len(_table_cells(mon.table.value)[1]) == 1


def test_a_failing_run_shows_its_error_and_a_folded_traceback(monitors, monkeypatch):
    def build_then_break(self, *args, **kwargs):
        learner = original(self, *args, **kwargs)
        model = learner.state.model
        calls = []

        def forward(x):
            calls.append(1)
            if len(calls) == 3:
                raise ValueError("shape <8, 64> & no good")
            return type(model).forward(model, x)
        model.forward = forward
        return learner

    original = Experiment.build
    monkeypatch.setattr(Experiment, "build", build_then_break)
    mon = monitors()
    run = mon.start()
    assert run.join(60) and run.status == "failed"
    assert "failed" in mon.status.value and "ValueError: shape &lt;8, 64&gt; &amp; no good" in mon.status.value
    shown = mon.failure.value
    assert "<code>ValueError: shape &lt;8, 64&gt; &amp; no good</code>" in shown
    folded = re.search(r"<details><summary>traceback</summary><pre>(.*)</pre></details>", shown, re.S)
    assert folded is not None
    assert html.unescape(folded.group(1)) == run.traceback and "in forward" in run.traceback
    assert "<8" not in folded.group(1)  # escaped, not markup
    assert _buttons(mon) == READY
    # Two steps ran; the Recorder never closed that epoch, the stream shows them all the same.
    np.testing.assert_array_equal(mon._traces["loss"].x, [0, 1])

    monkeypatch.setattr(Experiment, "build", original)
    assert mon.start().join(60)
    assert mon.failure.value == ""  # the next run clears it


def test_buttons_follow_the_run_through_pause_resume_and_stop(monitors):
    mon = monitors(tiny_spec(500))
    assert _buttons(mon) == READY and "idle" in mon.status.value
    run = mon.start()
    assert _buttons(mon) == (False, True, "Pause", True) and "running" in mon.status.value
    _wait(lambda: run.learner.state.step >= 3)
    mon.pause_button.click()
    assert _buttons(mon) == (False, True, "Resume", True) and "paused" in mon.status.value
    _wait(lambda: run.status == "paused")
    held = run.learner.state.step
    assert mon.current_step >= held - 2  # pausing drew what had come
    mon.train_button.click()  # disabled in the page; a call anyway is refused
    assert mon.run is run
    mon.pause_button.click()
    assert _buttons(mon) == (False, True, "Pause", True) and "running" in mon.status.value
    _wait(lambda: run.learner.state.step > held + 2)
    mon.pause_button.click()  # pause again, then stop while paused
    mon.stop_button.click()
    # "stopping" until the run's thread ends it, which may already have happened.
    assert (_status(mon), _buttons(mon)) in {("stopping", (False, False, "Pause", False)), ("stopped", READY)}
    assert run.join(30) and run.status == "stopped"
    assert _buttons(mon) == READY and "stopped" in mon.status.value
    mon.pause_button.click()  # after the run: nothing to pause
    assert _buttons(mon) == READY and "stopped" in mon.status.value
    np.testing.assert_array_equal(mon._traces["loss"].x, run.learner.history.steps)


@pytest.mark.parametrize("kwargs, message", [
    ({"redraw_interval": 0}, "redraw_interval must be a positive number of seconds, got 0"),
    ({"redraw_interval": "fast"}, "redraw_interval must be a positive number of seconds, got 'fast'"),
    ({"predictions": -1}, "predictions must be a number of samples >= 0 (0: none), got -1"),
    ({"predictions": True}, "predictions must be a number of samples >= 0 (0: none), got True"),
])
def test_bad_settings_are_refused_naming_the_field(state, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(f"TrainingMonitor: {message}")):
        TrainingMonitor(state, **kwargs)


def test_long_runs_are_decimated_to_capacity_keeping_extremes_and_the_last_step(monitors):
    clock = FakeClock()
    mon = monitors(capacity=16, clock=clock, predictions=0)
    learner = _many_short_epochs(mon, clock, 0.05, epochs=20)  # 80 training steps into 16 points
    xs, ys = np.asarray(mon._traces["loss"].x), np.asarray(mon._traces["loss"].y)
    losses = learner.history.losses
    assert len(xs) <= 16 and xs[-1] == learner.history.steps[-1] and np.all(np.diff(xs) > 0)
    assert ys.min() == pytest.approx(min(losses), rel=1e-6) and ys.max() == pytest.approx(max(losses), rel=1e-6)
    assert ys[-1] == pytest.approx(losses[-1], rel=1e-6)


class StopInSecondValidation(Callback):
    """Ends the fit as epoch 2's validation pass begins, as Stop pressed then does (CancelFit
    at the step boundary)."""

    reads = ("phase", "epoch")

    def step_begin(self, state) -> None:
        from torchdeck.train import CancelFit
        if not state.phase.training and state.epoch == 1:
            raise CancelFit("stopped by the test")


def test_a_run_stopped_during_validation_keeps_the_last_validation_headline(monitors):
    mon = monitors(predictions=0)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=gen), torch.randint(0, 10, (40,), generator=gen)
    loaders = {"train": TensorLoader(x[:32], y[:32], 8), "valid": TensorLoader(x[32:], y[32:], 8)}
    learner = Learner(torch.nn.Linear(4, 10), loaders, torch.nn.functional.cross_entropy,
                      O.chain(O.adam(), O.scale_lr(0.01)), metrics=["accuracy"],
                      callbacks=[mon.stream, StopInSecondValidation()])
    learner.fit(3)
    mon.redraw()
    rows = learner.history.epochs
    assert rows[-1].get("valid_accuracy") is None  # the stopped epoch: no validation batch was seen
    assert html.unescape(mon.headline.value) == f"valid accuracy <b>{rows[0]['valid_accuracy']:.4f}</b>"
