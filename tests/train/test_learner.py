"""The Learner: event order, callback ordering, cancels, metrics, and real training on digits."""

from __future__ import annotations

import math

import pytest
import torch

from torchdeck.spec import Experiment
from torchdeck.train import (EVENTS, CancelEpoch, CancelFit, CancelStep, Callback, Metrics, Recorder,
                             order_callbacks)

from ._tiny import tiny_data, tiny_learner


class Log(Callback):
    """Records (event, phase) for every event."""

    def __init__(self):
        self.seen = []

    def _log(self, name, state):
        self.seen.append((name, state.phase.name if state.phase is not None else None))


for _event in EVENTS:
    setattr(Log, _event, lambda self, state, _e=_event: self._log(_e, state))


@pytest.mark.slow
def test_default_spec_learns_digits():
    learner = Experiment().with_changes(**{"train.epochs": 2}).build()
    learner.fit()
    rows = learner.history.epochs
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["valid_loss"] < rows[0]["valid_loss"] < math.log(10)
    assert rows[1]["valid_accuracy"] > 0.9
    assert len(learner.history.losses) == rows[1]["step"] == 2 * len(learner.loaders["train"])


def test_event_order():
    log = Log()
    learner = tiny_learner([log], n_train=12, n_valid=5, batch_size=8)  # 2 train batches, 1 valid batch
    learner.fit(1)
    train_step = ["step_begin", "loss_begin", "backward_begin", "backward_end", "step_end"]
    valid_step = ["step_begin", "loss_begin", "step_end"]
    expected = (["fit_begin", "epoch_begin"] + train_step * 2 + ["epoch_end", "epoch_begin"] + valid_step
                + ["epoch_end", "fit_end"])
    assert [e for e, _ in log.seen] == expected
    assert log.seen[1] == ("epoch_begin", "train")
    assert all(p == "valid" for e, p in log.seen[13:-1])


def test_backward_end_sees_gradients_and_step_end_sees_the_update():
    seen = {}

    class Probe(Callback):
        def backward_begin(self, state):
            seen["grad_before"] = state.model[0].weight.grad
            seen["w"] = state.model[0].weight.detach().clone()

        def backward_end(self, state):
            seen["grad"] = state.model[0].weight.grad is not None
            seen["unchanged"] = torch.equal(state.model[0].weight, seen["w"])

        def step_end(self, state):
            if state.phase.training:
                seen["moved"] = not torch.equal(state.model[0].weight, seen["w"])
            raise CancelFit

    tiny_learner([Probe()]).fit(1)
    assert seen == {"grad_before": None, "w": seen["w"], "grad": True, "unchanged": True, "moved": True}


def test_after_ordering_is_respected():
    order = []

    class A(Callback):
        def fit_begin(self, state):
            order.append("A")

    class B(Callback):
        after = (A,)

        def fit_begin(self, state):
            order.append("B")

    class C(Callback):
        after = (B,)

        def fit_begin(self, state):
            order.append("C")

    learner = tiny_learner([C(), B(), A()])
    learner.fit(1)
    assert order == ["A", "B", "C"]
    # Metrics runs before Recorder (Recorder declares after=Metrics) whatever order they are given in.
    cbs = order_callbacks([Recorder(), Metrics()])
    assert [type(c) for c in cbs] == [Metrics, Recorder]


def test_after_cycle_is_refused():
    class X(Callback):
        pass

    class Y(Callback):
        after = (X,)

    X.after = (Y,)
    with pytest.raises(ValueError, match=r"callback ordering has a cycle through"):
        order_callbacks([X(), Y()])


def test_two_callbacks_writing_one_field_are_refused_naming_both():
    class First(Callback):
        writes = ("loss",)

    class Second(Callback):
        writes = ("loss",)

    with pytest.raises(ValueError, match=r"callbacks First\(\) and Second\(\) both write state\.loss"):
        tiny_learner([First(), Second()])
    learner = tiny_learner([First()])
    with pytest.raises(ValueError, match=r"callbacks First\(\) and Second\(\) both write state\.loss"):
        learner.add_callback(Second())
    with pytest.raises(ValueError, match=r"callbacks Metrics\(accuracy\) and Second\(\) both write state\.metrics"):
        Second.writes = ("metrics",)
        tiny_learner([Second()])


def test_cancel_step_skips_the_rest_of_the_step():
    class SkipSecondBackward(Callback):
        def __init__(self):
            self.step_ends = []

        def backward_begin(self, state):
            if state.batch_index == 1:
                raise CancelStep

        def step_end(self, state):
            self.step_ends.append((state.phase.name, state.batch_index))

    cb = SkipSecondBackward()
    learner = tiny_learner([cb], n_train=24, batch_size=8)
    w0 = [p.detach().clone() for p in learner.model.parameters()]
    learner.fit(1)
    assert cb.step_ends == [("train", 0), ("train", 2), ("valid", 0), ("valid", 1)]
    assert learner.state.step == 3  # a cancelled step still counts as a step taken
    assert learner.history.steps == [0, 2]
    assert any(not torch.equal(a, b) for a, b in zip(w0, learner.model.parameters()))


def test_cancel_epoch_ends_both_phases_of_that_epoch():
    class StopEpochEarly(Callback):
        def step_begin(self, state):
            if state.epoch == 0 and state.batch_index == 1:
                raise CancelEpoch

    log = Log()
    learner = tiny_learner([StopEpochEarly(), log], n_train=24)
    learner.fit(2)
    events = [e for e in log.seen]
    assert events.count(("epoch_begin", "train")) == 2
    assert events.count(("epoch_begin", "valid")) == 1  # epoch 0's validation was skipped
    assert learner.state.step == 1 + 3  # epoch 0: batch 0 only (cancelled at batch 1); epoch 1: 3 steps
    assert len(learner.history.epochs) == 1 and learner.history.epochs[0]["epoch"] == 2


def test_cancel_fit_ends_training_and_runs_fit_end():
    class Stop(Callback):
        def step_end(self, state):
            if state.step == 1:
                raise CancelFit

    log = Log()
    learner = tiny_learner([Stop(), log], n_train=40)
    learner.fit(3)
    assert learner.state.step == 1
    # The cancelled pass still ends (its metrics and history close), then the fit ends.
    assert log.seen[-2:] == [("epoch_end", "train"), ("fit_end", "train")]
    assert ("epoch_begin", "valid") not in log.seen
    h = learner.history
    assert len(h.steps) == len(h.lrs) == len(h.losses) == 2  # the Recorder saw the cancelling step too


def test_fit_end_runs_when_a_callback_raises():
    class Boom(Callback):
        def backward_end(self, state):
            raise RuntimeError("boom at backward_end")

    log = Log()
    learner = tiny_learner([Boom(), log])
    with pytest.raises(RuntimeError, match="boom at backward_end"):
        learner.fit(1)
    assert log.seen[-1][0] == "fit_end"


def test_fit_validates_epochs():
    with pytest.raises(ValueError, match=r"fit: epochs must be a positive integer, got 0"):
        tiny_learner().fit(0)


def test_learner_refuses_missing_loader():
    from torchdeck.train import Learner

    (xt, yt), _ = tiny_data()
    from torchdeck.data import TensorLoader

    with pytest.raises(ValueError, match=r"Learner: no loader for phase 'valid'; loaders given: train"):
        Learner(torch.nn.Linear(4, 3), {"train": TensorLoader(xt, yt)}, torch.nn.functional.cross_entropy,
                torch.optim.SGD(torch.nn.Linear(4, 3).parameters(), lr=0.1))


def test_metrics_are_batch_size_weighted():
    # 10 valid samples in batches of 4, 4, 2: a plain mean of batch means would be wrong.
    learner = tiny_learner(n_train=20, n_valid=10, batch_size=4)
    learner.fit(2)
    _, (xv, yv) = tiny_data(20, 10)
    with torch.no_grad():
        pred = learner.model(xv)
    expected_loss = torch.nn.functional.cross_entropy(pred, yv).item()
    expected_acc = (pred.argmax(1) == yv).float().mean().item()
    batch_means = [torch.nn.functional.cross_entropy(pred[i:i + 4], yv[i:i + 4]).item() for i in (0, 4, 8)]
    assert abs(sum(batch_means) / 3 - expected_loss) > 1e-4  # the weighting matters for this data
    row = learner.history.epochs[-1]
    assert row["valid_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert row["valid_accuracy"] == pytest.approx(expected_acc, abs=1e-7)
    assert learner.state.metrics["valid_loss"] == row["valid_loss"]


def test_train_metrics_weight_each_step_by_its_batch():
    (xt, yt), _ = tiny_data(20, 10)
    losses = []

    class Capture(Callback):
        reads = ("loss",)

        def backward_begin(self, state):
            losses.append((state.loss.item(), len(state.yb)))

    learner = tiny_learner([Capture()], n_train=20, batch_size=8)
    learner.fit(1)
    expected = sum(l * n for l, n in losses) / sum(n for _, n in losses)
    assert [n for _, n in losses] == [8, 8, 4]
    assert learner.history.epochs[0]["train_loss"] == pytest.approx(expected, rel=1e-6)
    assert learner.history.losses == pytest.approx([l for l, _ in losses], rel=1e-6)


def test_history_records_lr_and_steps_over_fits():
    learner = tiny_learner(n_train=16, batch_size=8)
    learner.fit(1)
    learner.fit(2)
    assert learner.history.steps == list(range(6))
    assert learner.history.lrs == [1e-2] * 6
    assert [r["epoch"] for r in learner.history.epochs] == [1, 1, 2]


def test_predict_uses_eval_mode_without_grad():
    learner = tiny_learner()
    learner.model.train()
    out = learner.predict(torch.zeros(2, 4))
    assert out.shape == (2, 3) and not out.requires_grad and learner.model.training
