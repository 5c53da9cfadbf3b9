"""The Studio in the kernel, without a browser: panels edit the spec, the monitor trains and
streams into the charts from its background thread."""

from __future__ import annotations

import time

import numpy as np
import pytest

from torchdeck.spec import Experiment
from torchdeck.schedules import curve
from torchdeck.widgets import Studio


@pytest.fixture
def studio() -> Studio:
    s = Studio()
    yield s
    run = s.monitor.run
    if run is not None and not run.done:
        run.stop()
        run.join(30)


def _wait(pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_nothing_trains_until_train_is_pressed(studio):
    assert studio.monitor.run is None
    assert "idle" in studio.monitor.status.value
    assert studio.chain_panel.summary.value == "<code>clip_norm(1.0) → adam → scale_lr(3e-3)</code>"
    assert all(t.x == () for t in studio.monitor.chart.data)


@pytest.mark.slow
def test_one_epoch_streams_into_the_charts(studio):
    mon = studio.monitor
    mon.epochs.value = 1
    assert studio.spec.train.epochs == 1
    t0 = time.monotonic()
    mon.train_button.click()
    assert mon.run is not None and mon.run.join(120)
    elapsed = time.monotonic() - t0
    assert mon.run.status == "finished", mon.run.traceback
    assert "finished" in mon.status.value

    snap = mon.stream.snapshot()
    losses = list(mon._traces["loss"].y)
    assert losses == snap["loss"][1]
    assert len(losses) == len(mon.learner.history.losses) == studio.state.steps_per_epoch()
    np.testing.assert_allclose(losses, mon.learner.history.losses, rtol=1e-6)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), "the loss did not go down"

    acc = mon._traces["valid_accuracy"]
    assert len(acc.y) == 1 and acc.y[0] == pytest.approx(mon.learner.history.epochs[-1]["valid_accuracy"])
    assert f"{acc.y[0]:.4f}" in mon.headline.value
    assert list(mon._traces["valid_loss"].x) == [studio.state.steps_per_epoch()]
    # Redraws are throttled by wall-clock time (plus one per epoch event and the final one).
    assert mon.redraws <= elapsed / mon.redraw_interval + 4
    assert not mon.train_button.disabled and mon.stop_button.disabled


@pytest.mark.slow
def test_stop_answers_within_one_step(studio):
    mon = studio.monitor
    mon.epochs.value = 500
    run = mon.start()
    _wait(lambda: run.learner.state.step >= 5)
    mon.stop_button.click()
    step_at_stop = run.learner.state.step
    assert run.join(30)
    assert run.status == "stopped"
    assert run.learner.state.step - step_at_stop <= 1
    assert "stopped" in mon.status.value


@pytest.mark.slow
def test_pause_holds_the_step_count_then_resume_continues(studio):
    mon = studio.monitor
    mon.epochs.value = 500
    run = mon.start()
    _wait(lambda: run.learner.state.step >= 3)
    mon.pause_button.click()
    _wait(lambda: run.status == "paused")
    held = run.learner.state.step
    time.sleep(0.3)
    assert run.learner.state.step == held
    assert mon.pause_button.description == "Resume"
    mon.pause_button.click()
    _wait(lambda: run.learner.state.step > held + 2)
    mon.stop()
    assert run.join(30) and run.status == "stopped"


def test_a_second_start_while_running_is_refused(studio):
    mon = studio.monitor
    mon.epochs.value = 500
    first = mon.start()
    assert mon.start() is None
    assert "already in progress" in studio.state.error
    first.stop()
    assert first.join(30)


def test_bad_values_are_refused_with_the_field_and_the_spec_is_kept(studio):
    before = studio.spec
    studio.chain_panel.set_value(2, "lr", -1.0)
    assert studio.state.error == "optim.chain[2].scale_lr: lr must be in [0.0, inf), got -1.0"
    assert studio.spec == before
    assert studio.error.value == studio.state.error

    studio.monitor.epochs.value = 3
    assert studio.state.error == "" and studio.spec.train.epochs == 3

    studio.spec_panel.yaml.value = "optim: {chain: [adamm]}"
    assert not studio.spec_panel.apply()
    assert studio.state.error.startswith("optim.chain[0]: unknown rule 'adamm'; allowed:")
    assert studio.spec.train.epochs == 3


def test_yaml_applied_in_the_spec_panel_reaches_every_panel(studio):
    spec = Experiment().with_changes(optim={"chain": [{"momentum": {"rho": 0.8}}, {"scale_lr": {"lr": 0.05}}]},
                                     **{"train.epochs": 4})
    studio.spec_panel.yaml.value = spec.to_yaml()
    assert studio.spec_panel.apply()
    assert studio.spec == spec
    assert studio.chain_panel.summary.value == "<code>momentum(rho=0.8) → scale_lr(0.05)</code>"
    assert studio.monitor.epochs.value == 4
    assert "4 epochs" in studio.schedule_panel.summary.value


def test_chain_rules_are_added_before_scale_lr_and_removed(studio):
    studio.chain_panel.add_rule("weight_decay")
    assert str(studio.spec.rule()) == "clip_norm(1.0) → adam → weight_decay(5e-4) → scale_lr(3e-3)"
    assert "O.weight_decay(5e-4)" in studio.chain_panel.code.value
    studio.chain_panel.remove_rule(0)
    assert str(studio.spec.rule()) == "adam → weight_decay(5e-4) → scale_lr(3e-3)"


def test_schedule_plot_follows_edits_and_the_run_length(studio):
    panel = studio.schedule_panel
    total = studio.state.total_steps()
    xs, ys = curve(studio.spec.schedule_objects()["lr"], total)
    assert list(panel.figure.data[0].x) == xs.tolist()
    assert panel.figure.data[0].y[0] == pytest.approx(3e-4)
    editor = next(e for e in panel.editors.children if e.description == "lr: linear.start")
    editor.value = 1e-3
    assert studio.spec.schedules["lr"]["sequence"]["schedules"][0]["linear"]["start"] == 1e-3
    assert panel.figure.data[0].y[0] == pytest.approx(1e-3)
    # A refused value (negative) leaves the spec and puts the field back.
    editor = next(e for e in panel.editors.children if e.description == "lr: linear.start")
    editor.value = -1.0
    assert "start must be >= 0.0" in studio.state.error
    assert studio.spec.schedules["lr"]["sequence"]["schedules"][0]["linear"]["start"] == 1e-3
    studio.monitor.epochs.value = 2
    assert len(panel.figure.data[0].x) == studio.state.total_steps() == 2 * studio.state.steps_per_epoch()


def test_an_option_value_the_builder_refuses_leaves_the_spec_as_it_was(studio):
    before = studio.spec
    assert not studio.state.edit(**{"data.options": {"valid_fraction": 2.0}})
    assert studio.state.error == "data.options: valid_fraction must be in (0, 1), got 2.0"
    assert studio.spec == before
    assert not studio.state.edit(**{"trian.epochs": 3})
    assert studio.state.error == "trian.epochs: no such field in the spec"
