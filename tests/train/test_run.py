"""Background runs (``fit_async``) and the MetricStream / Series that feed live charts."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdeck.train import Callback, MetricStream, Series

from ._tiny import tiny_learner


class Slow(Callback):
    """Makes each step take a few milliseconds so a run lasts long enough to control."""

    def step_end(self, state):
        time.sleep(0.003)


def _wait(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.002)


def test_stop_ends_the_run_within_one_step():
    learner = tiny_learner([Slow()], n_train=64, batch_size=4, epochs=1000)
    run = learner.fit_async()
    _wait(lambda: learner.state.step >= 5)
    run.stop()
    at_stop = learner.state.step  # the step in flight when stop was set may still finish
    assert run.join(10)
    assert run.status == "stopped"
    assert learner.state.step - at_stop <= 1
    assert run.error is None


def test_pause_holds_the_step_count_and_resume_continues():
    learner = tiny_learner([Slow()], n_train=64, batch_size=4, epochs=1000)
    run = learner.fit_async()
    try:
        _wait(lambda: learner.state.step >= 3)
        run.pause()
        _wait(lambda: run.status == "paused")
        held = learner.state.step
        time.sleep(0.3)
        assert learner.state.step == held and run.status == "paused"
        run.resume()
        _wait(lambda: learner.state.step >= held + 3)
        assert run.status == "running"
    finally:
        run.stop()
        run.join(10)
    assert run.status == "stopped"


def test_stop_while_paused_ends_the_run():
    learner = tiny_learner([Slow()], n_train=64, batch_size=4, epochs=1000)
    run = learner.fit_async()
    _wait(lambda: learner.state.step >= 2)
    run.pause()
    _wait(lambda: run.status == "paused")
    run.stop()
    assert run.join(10) and run.status == "stopped"


def test_a_second_fit_async_while_running_is_refused_then_allowed_after():
    learner = tiny_learner([Slow()], n_train=64, batch_size=4, epochs=1000)
    run = learner.fit_async()
    try:
        _wait(lambda: run.status == "running")
        with pytest.raises(RuntimeError, match=r"already has a run in progress \(status running\)"):
            learner.fit_async()
    finally:
        run.stop()
        run.join(10)
    # After the run ends the control callback is gone and a new run may start.
    assert not any(type(c).__name__ == "RunControl" for c in learner.callbacks)
    run2 = learner.fit_async(1)
    assert run2.join(20) and run2.status == "finished"


def test_finished_run():
    learner = tiny_learner(n_train=16, batch_size=8)
    run = learner.fit_async(2)
    assert run.join(20)
    assert run.status == "finished" and run.done and run.error is None
    assert learner.state.step == 4
    assert run.progress["status"] == "finished" and run.progress["step"] == 4


def test_an_exception_in_training_fails_the_run_with_error_and_traceback():
    calls = []

    def bad_loss(pred, y):
        calls.append(1)
        if len(calls) == 3:
            raise FloatingPointError("loss exploded")
        return pred.logsumexp(1).mean() - pred.gather(1, y[:, None]).mean()

    learner = tiny_learner(n_train=64, batch_size=4, epochs=5, loss_fn=bad_loss)
    run = learner.fit_async()
    assert run.join(20)
    assert run.status == "failed"
    assert isinstance(run.error, FloatingPointError) and str(run.error) == "loss exploded"
    assert "FloatingPointError: loss exploded" in run.traceback and "bad_loss" in run.traceback
    assert learner.state.step == 2


def test_metric_stream_receives_loss_per_step_and_epoch_metrics():
    stream = MetricStream()
    events = []
    unsubscribe = stream.subscribe(lambda s, e: events.append(e))
    learner = tiny_learner([stream], n_train=24, n_valid=10, batch_size=8, epochs=2)
    learner.fit()
    snap = stream.snapshot()
    xs, ys = snap["loss"]
    assert xs == list(range(6))
    assert ys == pytest.approx(learner.history.losses, rel=1e-6)
    assert snap["lr"][1] == [1e-2] * 6
    for name in ("train_loss", "valid_loss", "valid_accuracy"):
        assert snap[name][0] == [3, 6]
        assert snap[name][1] == pytest.approx([row[name] for row in learner.history.epochs])
    assert stream.latest("valid_accuracy") == learner.history.epochs[-1]["valid_accuracy"]
    assert stream.latest("nothing") is None
    assert events[0] == "fit_begin" and events[-1] == "fit_end"
    assert events.count("epoch") == 2 and events.count("step") == 6 + 2 * 2
    assert stream.progress["status"] == "done" and stream.progress["step"] == 6
    unsubscribe()
    learner.fit(1)  # a new fit clears the stream; the unsubscribed function hears nothing
    assert events.count("fit_begin") == 1
    assert stream.snapshot()["loss"][0] == [6, 7, 8]


@settings(max_examples=60, deadline=None)
@given(ys=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=400),
       capacity=st.integers(8, 64))
def test_series_decimation_keeps_extremes_and_last_point_and_stays_bounded(ys, capacity):
    s = Series(capacity)
    for i, y in enumerate(ys):
        s.append(float(i), y)
        assert len(s) <= capacity
        assert s.xs[-1] == float(i) and s.ys[-1] == y
        assert min(s.ys) == min(ys[:i + 1]) and max(s.ys) == max(ys[:i + 1])
    assert s.xs == sorted(s.xs) and len(set(s.xs)) == len(s.xs)
    # every kept point is a real (x, y) pair from the input
    assert all(ys[int(x)] == y for x, y in zip(s.xs, s.ys))
    if len(ys) <= capacity:
        assert s.ys == ys


def test_series_refuses_tiny_capacity():
    with pytest.raises(ValueError, match=r"Series: capacity must be >= 8, got 4"):
        Series(4)


def test_on_done_after_the_end_is_called_at_once():
    learner = tiny_learner([])
    run = learner.fit_async(1)
    assert run.join(60) and run.status == "finished"
    seen = []
    run.on_done(lambda r: seen.append(r.status))
    assert seen == ["finished"]
