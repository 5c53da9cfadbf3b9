"""MetricStream keeps each step's loss as a tensor until it is read: what readers see must be
what the Recorder kept, in step order, and the stream must stay bounded when nobody reads."""

from __future__ import annotations

import time

import pytest
import torch

from torchdeck import optim as O
from torchdeck.data import TensorLoader
from torchdeck.train import Learner, MetricStream, TrainingPhase

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
