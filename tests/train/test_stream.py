"""MetricStream keeps each step's loss as a tensor until it is read: what readers see must be
what the Recorder kept, in step order, and the stream must stay bounded when nobody reads."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from torchdeck import optim as O
from torchdeck.data import TensorLoader
from torchdeck.schedules import Linear, Scheduler
from torchdeck.train import Callback, Learner, MetricStream, Recorder, TrainingPhase

from ._tiny import tiny_data, tiny_learner


def test_unread_stream_stays_bounded_and_keeps_extremes_and_the_last_step():
    stream = MetricStream(capacity=8)
    learner = tiny_learner([stream], n_train=96, batch_size=4, epochs=2)  # 48 steps, read only at the end
    learner.fit()
    xs, ys = stream.snapshot()["loss"]
    losses = learner.history.losses
    assert len(xs) <= 8
    assert xs == sorted(xs) and xs[-1] == learner.history.steps[-1]
    assert ys[-1] == pytest.approx(losses[-1], rel=1e-6)
    assert min(ys) == pytest.approx(min(losses), rel=1e-6) and max(ys) == pytest.approx(max(losses), rel=1e-6)


def test_readers_during_the_run_see_every_step_in_order():
    stream = MetricStream()
    reads: list[tuple[str, int, list[float]]] = []

    def on_step(s: MetricStream, event: str) -> None:
        if event == "step":
            reads.append((s.progress["phase"], s.progress["step"], s.snapshot()["loss"][0]))
            s.push("custom", len(reads), 1.0)  # a push between steps must keep the waiting steps first

    stream.subscribe(on_step)
    learner = tiny_learner([stream], n_train=24, n_valid=8, batch_size=8, epochs=2)
    learner.fit()
    assert [phase for phase, _, _ in reads] == ["train"] * 3 + ["valid"] + ["train"] * 3 + ["valid"]
    for phase, step, xs in reads:
        # A training step's own loss is visible at its step event; a validation step sees the
        # training steps done so far.
        assert xs == list(range(step + 1 if phase == "train" else step))
    xs, ys = stream.snapshot()["loss"]
    assert xs == learner.history.steps == list(range(6))
    assert ys == pytest.approx(learner.history.losses, rel=1e-6)
    assert stream.snapshot()["lr"][1] == learner.history.lrs
    assert stream.snapshot()["custom"][0] == list(range(1, 9))


def test_a_reader_thread_sees_consistent_prefixes_while_training():
    stream = MetricStream()
    learner = tiny_learner([stream], n_train=160, batch_size=4, epochs=2)
    run = learner.fit_async()
    prefixes = []
    while not run.done:
        prefixes.append(stream.snapshot().get("loss", ([], [])))
        time.sleep(0.001)
    assert run.join(20) and run.status == "finished", run.error
    final_x, final_y = stream.snapshot()["loss"]
    assert final_x == learner.history.steps and final_y == pytest.approx(learner.history.losses, rel=1e-6)
    for xs, ys in prefixes:  # every read is the start of the final series
        assert xs == final_x[:len(xs)] and ys == final_y[:len(ys)]


def test_steps_of_a_training_only_run_wait_until_read_or_cleared():
    (xt, yt), _ = tiny_data(n_train=24)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    streams = [MetricStream(), MetricStream()]
    learners = [Learner(model, {"train": TensorLoader(xt, yt, 8)}, torch.nn.functional.cross_entropy,
                        O.chain(O.adam(), O.scale_lr(1e-2)), callbacks=[stream], phases=(TrainingPhase(),))
                for stream in streams]
    for learner in learners:  # no validation phase: no epoch metric is pushed, nothing else moves the steps
        learner.fit(2)
    assert streams[0].latest("loss") == pytest.approx(learners[0].history.losses[-1], rel=1e-6)
    assert streams[0].snapshot()["loss"][0] == learners[0].history.steps == list(range(6))
    streams[1].clear()
    assert streams[1].snapshot() == {} and streams[1].latest("loss") is None


# -- momentum, epoch rows, arrays ------------------------------------------------------------
@pytest.mark.parametrize("make_optimizer, key, expected", [
    (lambda ps: O.Optimizer(ps, O.chain(O.adam(b1=0.8), O.scale_lr(1e-2))), "b1", 0.8),
    (lambda ps: O.Optimizer(ps, O.chain(O.momentum(rho=0.7), O.scale_lr(1e-2))), "rho", 0.7),
    (lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.6), "momentum", 0.6),
    (lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.85, 0.99)), "betas", 0.85),
    (lambda ps: O.Optimizer(ps, O.scale_lr(1e-2)), None, None),
])
def test_momentum_is_read_from_the_first_param_group_whatever_its_name(make_optimizer, key, expected):
    stream = MetricStream()
    learner = tiny_learner([stream], n_train=24, batch_size=8, epochs=2)
    learner.state.optimizer = make_optimizer(learner.model.parameters())
    learner.fit()
    snap = stream.snapshot()
    assert stream.momentum_key == key
    if key is None:
        assert "momentum" not in snap
    else:
        assert snap["momentum"] == (list(range(6)), [expected] * 6)
    assert snap["lr"] == (list(range(6)), [1e-2] * 6)


def test_a_scheduled_momentum_is_recorded_at_each_step():
    stream = MetricStream()
    b1 = Linear(0.95, 0.85, steps=6)  # the schedule's own values are the reference below
    learner = tiny_learner([stream, Scheduler({"b1": b1})], n_train=24, batch_size=8, epochs=2)
    learner.fit()
    xs, ys = stream.snapshot()["momentum"]
    assert xs == list(range(6))
    assert ys == pytest.approx([0.95 - 0.1 * t / 6 for t in range(6)], rel=1e-12)


def test_epoch_rows_are_the_recorders_rows_and_new_rows_can_be_asked_alone():
    stream = MetricStream()
    learner = tiny_learner([stream], n_train=24, batch_size=8, epochs=3)
    learner.fit()
    assert stream.epoch_rows() == learner.history.epochs and stream.epoch_count == 3
    assert stream.epoch_rows(2) == learner.history.epochs[2:]
    rows = stream.epoch_rows()
    rows[0]["epoch"] = 99  # copies: a reader cannot change the stream
    assert stream.epoch_rows()[0]["epoch"] == 1


def test_without_a_recorder_the_stream_makes_the_same_row_itself():
    stream = MetricStream()
    learner = tiny_learner([stream], n_train=24, batch_size=8, epochs=2)
    learner.remove_callback(Recorder)
    assert not any(isinstance(cb, Recorder) for cb in learner.callbacks)
    learner.fit()
    rows = stream.epoch_rows()
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [3, 6]
    snap = stream.snapshot()
    assert [r["valid_loss"] for r in rows] == snap["valid_loss"][1]
    assert all(r["epoch_seconds"] >= 0 for r in rows)


def test_arrays_return_only_series_that_moved_and_a_clear_is_a_new_generation():
    stream = MetricStream()
    learner = tiny_learner([stream], n_train=24, batch_size=8, epochs=1)
    learner.fit()
    first = stream.arrays()
    np.testing.assert_array_equal(first["loss"][1], learner.history.steps)
    np.testing.assert_allclose(first["loss"][2], learner.history.losses, rtol=1e-6)
    drawn = {k: version for k, (version, _, _) in first.items()}
    assert stream.arrays(drawn) == {}
    stream.push("valid_loss", 9, 0.5)
    moved = stream.arrays(drawn)
    assert list(moved) == ["valid_loss"] and moved["valid_loss"][2][-1] == 0.5
    generation = stream.generation
    learner.fit(1)  # a fit begins with a clear
    assert stream.generation == generation + 1


def test_tensor_hyperparameters_changed_in_place_are_recorded_as_they_were_at_each_step():
    class InPlaceDecay(Callback):
        """Halves a tensor lr in place after every step, as tensor-lr schedulers do."""

        def step_end(self, state) -> None:
            if state.phase.training:
                state.optimizer.param_groups[0]["lr"].mul_(0.5)

    stream = MetricStream()
    learner = tiny_learner([InPlaceDecay(), stream], n_train=24, batch_size=8, epochs=1)
    learner.state.optimizer = torch.optim.SGD(learner.model.parameters(), lr=torch.tensor(0.1), momentum=0.9)
    learner.fit()
    # The decay runs first at each step (the order given), so step k's lr reads 0.1 / 2**(k+1); a
    # stream that kept the tensor itself would show the last value at every step.
    order = [type(cb).__name__ for cb in learner.callbacks]
    assert order.index("InPlaceDecay") < order.index("MetricStream")
    assert stream.snapshot()["lr"][1] == pytest.approx([0.05, 0.025, 0.0125], rel=1e-6)
