"""Callbacks that end or shape a run: EarlyStopping, StopOnNaN, TimeBudget, Throttle, SanityCheck."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from torchdeck.train import (CancelFit, CancelStep, Callback, EarlyStopping, MetricStream, SanityCheck, StopOnNaN,
                             Throttle, TimeBudget, sanity_check)

from ._digits import digits_learner, one_thread  # noqa: F401  (fixture)
from ._tiny import tiny_learner

pytestmark = pytest.mark.usefixtures("one_thread")


def scripted(values):
    """A metric whose epoch value is ``values[k]`` on the k-th validation pass (one batch each)."""
    calls = itertools.count()

    def metric(pred, target):
        return torch.tensor(values[next(calls)])
    return metric


def weights(learner):
    return [p.detach().clone() for p in learner.model.parameters()]


def assert_equal_tensors(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert torch.equal(x, y)


# -- EarlyStopping --------------------------------------------------------------------------------
@pytest.mark.parametrize("values, kwargs, stops_after", [
    # best 0.9 at epoch 2, no improvement at 3 and 4: patience 2 stops after epoch 4
    ([1.0, 0.9, 0.95, 0.91, 0.89, 0.5], {"patience": 2}, 4),
    # min_delta 0.05: 0.97 is not better than 1.0 by more than 0.05, 0.9 is; then 0.87, 0.86 are not
    ([1.0, 0.97, 0.9, 0.87, 0.86, 0.5, 0.4], {"patience": 2, "min_delta": 0.05}, 5),
    # mode max: accuracy-like values
    ([0.5, 0.6, 0.6, 0.7, 0.69, 0.7, 0.65, 0.9], {"patience": 3, "mode": "max"}, 7),
    # never stops within the fit
    ([1.0, 0.9, 0.8, 0.7], {"patience": 1}, 4),
])
def test_early_stopping_stops_at_the_expected_epoch(values, kwargs, stops_after):
    stopper = EarlyStopping("valid_metric", **kwargs)
    learner = tiny_learner([stopper], n_valid=5, metrics=(scripted(values),))
    learner.fit(len(values))
    assert len(learner.history.epochs) == stops_after
    if stops_after < len(values):
        assert learner.state.stop_reason.startswith("EarlyStopping: valid_metric has not improved")
        assert f"for {kwargs['patience']} epochs" in learner.state.stop_reason
    else:
        assert learner.state.stop_reason == ""


def test_early_stopping_patience_restarts_each_fit_but_the_best_carries_over():
    stopper = EarlyStopping("valid_metric", patience=2)
    learner = tiny_learner([stopper], n_valid=5, metrics=(scripted([0.5, 0.6, 0.7, 0.4, 0.45, 0.46, 0.3]),))
    learner.fit(5)
    assert len(learner.history.epochs) == 3 and stopper.best == 0.5 and stopper.best_epoch == 1
    learner.fit(5)  # 0.4 beats the best so far, then 0.45 and 0.46 do not
    assert len(learner.history.epochs) == 6 and stopper.best == pytest.approx(0.4) and stopper.best_epoch == 4
    assert learner.state.stop_reason.endswith("best 0.4 at epoch 4")


def test_a_cancel_at_epoch_end_still_lets_later_callbacks_see_the_epoch():
    seen = []

    class StopNow(Callback):
        def epoch_end(self, state):
            if state.epoch_complete:
                raise CancelFit("stop now")

    class Seen(Callback):
        def epoch_end(self, state):
            seen.append((state.phase.name, state.epoch_complete))

    learner = tiny_learner([StopNow(), Seen()])
    learner.fit(3)
    assert seen == [("train", False), ("valid", True)]
    assert learner.state.stop_reason == "stop now" and learner.state.epochs_done == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"patience": 0}, r"EarlyStopping: patience must be a positive integer \(epochs\), got 0"),
    ({"mode": "down"}, r"EarlyStopping: mode must be one of 'min', 'max', got 'down'"),
    ({"min_delta": -0.1}, r"EarlyStopping: min_delta must be a finite number >= 0, got -0.1"),
    ({"monitor": ""}, r"EarlyStopping: monitor must be a metric name"),
])
def test_early_stopping_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


# -- StopOnNaN ------------------------------------------------------------------------------------
class WeightsAt(Callback):
    """Keeps the weights as they were when training step ``step`` began."""

    def __init__(self, step):
        self.step, self.kept = step, None

    def step_begin(self, state):
        if state.phase.training and state.step == self.step:
            self.kept = [p.detach().clone() for p in state.model.parameters()]


def nan_loss_at(step):
    counter = itertools.count()

    def loss(pred, y):
        value = torch.nn.functional.cross_entropy(pred, y)
        return value * math.nan if torch.is_grad_enabled() and next(counter) == step else value
    return loss


def nan_grad_at(step):
    """Finite loss, NaN gradient: 0 * sqrt(0) is 0 forwards and 0 * inf = NaN backwards."""
    counter = itertools.count()

    def loss(pred, y):
        value = torch.nn.functional.cross_entropy(pred, y)
        if torch.is_grad_enabled() and next(counter) == step:
            value = value + 0.0 * torch.sqrt(pred[0, 0] - pred[0, 0])
        return value
    return loss


def test_nan_loss_stops_before_the_update_naming_step_and_epoch():
    probe = WeightsAt(4)
    learner = tiny_learner([StopOnNaN(), probe], n_train=24, batch_size=8, loss_fn=nan_loss_at(4))
    with pytest.warns(RuntimeWarning, match=r"StopOnNaN: the loss is nan at step 4 \(epoch 2, train batch 2\)"):
        learner.fit(3)
    assert learner.state.stop_reason.startswith("StopOnNaN: the loss is nan at step 4 (epoch 2, train batch 2)")
    assert_equal_tensors(weights(learner), probe.kept)  # the NaN step changed nothing
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())


def test_nan_gradient_with_finite_loss_is_not_applied():
    probe = WeightsAt(2)
    learner = tiny_learner([StopOnNaN(), probe], n_train=24, batch_size=8, loss_fn=nan_grad_at(2))
    with pytest.warns(RuntimeWarning, match=r"non-finite gradient \(NaN/inf\) in 0.weight, 0.bias, 2.weight, "
                                            r"2.bias at step 2 \(epoch 1, train batch 3\)"):
        learner.fit(2)
    assert_equal_tensors(weights(learner), probe.kept)
    # Without the check the same run writes NaN into the weights: the check is what stops it.
    unchecked = tiny_learner(n_train=24, batch_size=8, loss_fn=nan_grad_at(2))
    unchecked.fit(1)
    assert not torch.isfinite(unchecked.model[0].weight).all()


def test_skip_policy_skips_exactly_that_update():
    learner = tiny_learner([StopOnNaN(grads="skip")], n_train=40, batch_size=8, loss_fn=nan_grad_at(3))
    with pytest.warns(RuntimeWarning, match=r"at step 3 .* this update was skipped"):
        learner.fit(2)

    class SkipStep3(Callback):
        def backward_begin(self, state):
            if state.step == 3:
                raise CancelStep

    reference = tiny_learner([SkipStep3()], n_train=40, batch_size=8)
    reference.fit(2)
    assert learner.state.step == reference.state.step == 10 and learner.state.stop_reason == ""
    assert_equal_tensors(weights(learner), weights(reference))
    assert learner.callbacks[-1].skipped == 1


def test_nan_validation_loss_stops_at_epoch_end():
    def loss(pred, y):
        value = torch.nn.functional.cross_entropy(pred, y)
        return value if torch.is_grad_enabled() else value * math.nan

    learner = tiny_learner([StopOnNaN()], loss_fn=loss)
    with pytest.warns(RuntimeWarning, match=r"StopOnNaN: valid_loss is nan at epoch 1"):
        learner.fit(3)
    assert learner.state.epochs_done == 1


def test_stop_on_nan_validates():
    with pytest.raises(ValueError, match=r"StopOnNaN: grads must be one of 'stop', 'skip', 'off', got 'ignore'"):
        StopOnNaN(grads="ignore")


@pytest.mark.parametrize("tensors", [
    [torch.full((4,), 1e30), torch.ones(3)],                  # finite, but the 2-norm overflows
    [torch.full((3,), 60000.0, dtype=torch.float16)],          # near float16's max
    [torch.ones(3), torch.tensor([1.0, math.nan])],
    [torch.tensor([-math.inf, 0.0])],
    [torch.zeros(0), torch.ones(2, 2)],
])
def test_all_finite_agrees_with_isfinite(tensors):
    from torchdeck.train._finite import all_finite
    assert all_finite(tensors) == all(bool(torch.isfinite(t).all()) for t in tensors)
    assert not all_finite(tensors, extra=torch.tensor(math.nan))


# -- TimeBudget -----------------------------------------------------------------------------------
def test_time_budget_stops_once_spent():
    ticks = itertools.count()  # the fake clock advances one second per reading
    learner = tiny_learner([TimeBudget(2.5, clock=lambda: float(next(ticks)))], n_train=40, batch_size=8)
    learner.fit(5)
    # read at fit_begin (0), then after each training step (1, 2, 3): 3 s >= 2.5 s after the
    # third step, whose index is 2 (a fit cancelled in step_end leaves state.step at that index)
    assert learner.history.steps == [0, 1, 2]
    assert learner.state.stop_reason == "TimeBudget: 3 s spent of 2.5 s; stopped after step 2 (epoch 1)"


@pytest.mark.parametrize("seconds", [0, -1, math.inf, "60", True])
def test_time_budget_validates(seconds):
    with pytest.raises(ValueError, match=r"TimeBudget: seconds must be a positive number"):
        TimeBudget(seconds)


# -- Throttle -------------------------------------------------------------------------------------
class Count(Callback):
    def __init__(self):
        self.events = []

    def _log(self, event, state):
        self.events.append((event, state.phase.name, state.batch_index))

    def step_begin(self, state):
        self._log("step_begin", state)

    def backward_end(self, state):
        self._log("backward_end", state)

    def step_end(self, state):
        self._log("step_end", state)

    def epoch_end(self, state):
        self._log("epoch_end", state)


def test_throttle_every_steps_delivers_whole_steps_and_every_epoch_event():
    inner = Count()
    learner = tiny_learner([Throttle(inner, every_steps=3)], n_train=40, n_valid=10, batch_size=8)
    learner.fit(1)  # 5 train batches, then 2 valid batches: steps 0..6 overall
    chosen = [("train", 0), ("train", 3), ("valid", 1)]  # overall steps 0, 3, 6
    expected = []
    for phase, n in (("train", 5), ("valid", 2)):
        for b in range(n):
            if (phase, b) in chosen:
                expected += [("step_begin", phase, b)] + ([("backward_end", phase, b)] if phase == "train" else []) \
                    + [("step_end", phase, b)]
        expected.append(("epoch_end", phase, n - 1))
    assert inner.events == expected


def test_throttle_every_seconds_with_a_fake_clock():
    now = [0.0]
    inner = Count()
    learner = tiny_learner([Throttle(inner, every_seconds=1.0, clock=lambda: now[0])], n_train=40, batch_size=8)

    class Tick(Callback):  # each step takes 0.4 s of fake time
        def step_end(self, state):
            now[0] += 0.4

    learner.add_callback(Tick())
    learner.fit(1)
    # delivered when >= 1 s since the last delivery: t = 0.0, 1.2 (third step), 2.4 (sixth step)
    starts = [(p, b) for e, p, b in inner.events if e == "step_begin"]
    assert starts == [("train", 0), ("train", 3), ("valid", 1)]


def test_throttled_metric_stream_gets_fewer_points():
    stream = MetricStream()
    learner = tiny_learner([Throttle(stream, every_steps=2)], n_train=48, batch_size=8)
    learner.fit(2)
    xs, _ = stream.snapshot()["loss"]
    # 6 train + 2 valid steps per epoch; every second step overall, train steps only push loss
    overall = [s for s in range(16) if s % 2 == 0]
    train_steps = [e * 6 + b for e in range(2) for b in range(6) if (e * 8 + b) in overall]
    assert xs == train_steps
    assert "valid_loss" in stream.snapshot()  # epoch events always reach it


@pytest.mark.parametrize("kwargs, message", [
    ({}, r"Throttle: give every_steps=, every_seconds= or both"),
    ({"every_steps": 0}, r"Throttle: every_steps must be a positive integer, got 0"),
    ({"every_seconds": -1.0}, r"Throttle: every_seconds must be a positive number, got -1.0"),
])
def test_throttle_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Throttle(Count(), **kwargs)


# -- SanityCheck ----------------------------------------------------------------------------------
def test_sanity_check_changes_nothing():
    learner = digits_learner(n_train=256, batch_size=64, dropout=0.2)
    learner.fit(1)
    before_w = weights(learner)
    before_grads = [p.grad.clone() for p in learner.model.parameters()]
    before_opt = learner.optimizer.state_dict()
    before_opt_state = [t.clone() for t in before_opt["rule_state"][0]]
    rng, gen = torch.get_rng_state(), learner.loaders["train"].generator.get_state()
    history = (list(learner.history.losses), list(learner.history.epochs), learner.state.step)
    losses = sanity_check(learner)
    assert_equal_tensors(weights(learner), before_w)
    assert_equal_tensors(learner.optimizer.state_dict()["rule_state"][0], before_opt_state)
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(learner.loaders["train"].generator.get_state(), gen)
    assert (learner.history.losses, learner.history.epochs, learner.state.step) == history
    assert_equal_tensors([p.grad for p in learner.model.parameters()], before_grads)
    # the valid loss it reports is the first valid batch's, computed here independently
    xv, yv = next(iter(learner.loaders["valid"]))
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(learner.model.eval()(xv), yv).item()
    assert losses["valid"] == pytest.approx(expected, rel=1e-6) and set(losses) == {"train", "valid"}


def test_a_fit_with_the_sanity_check_equals_one_without():
    plain = digits_learner(n_train=256, batch_size=64, dropout=0.2)
    torch.manual_seed(0)  # dropout draws from the global RNG: both fits start from the same state
    plain.fit(2)
    checked = digits_learner([SanityCheck()], n_train=256, batch_size=64, dropout=0.2)
    torch.manual_seed(0)
    checked.fit(2)
    assert_equal_tensors(weights(plain), weights(checked))
    assert plain.history.losses == checked.history.losses
    assert set(checked.callbacks[-1].losses) == {"train", "valid"}


def test_sanity_check_fails_fast_on_a_broken_validation_phase():
    learner = digits_learner([SanityCheck()], n_train=256, batch_size=64)
    x, y = learner.loaders["valid"].x, learner.loaders["valid"].y
    learner.loaders["valid"].x = x[:, :60]  # the wrong number of features
    w0 = weights(learner)
    with pytest.raises(RuntimeError, match=r"SanityCheck: the first 'valid' batch failed before training: "
                                           r"RuntimeError: mat1 and mat2 shapes cannot be multiplied"):
        learner.fit(1)
    assert learner.state.step == 0
    assert_equal_tensors(weights(learner), w0)


def test_throttle_keeps_the_wrapped_callbacks_after_declaration():
    from torchdeck.train._callback import order_callbacks

    class First(Callback):
        def step_end(self, state):
            pass

    class Second(Callback):
        after = (First,)

        def step_end(self, state):
            pass

    first = First()
    wrapped = Throttle(Second(), every_steps=2)
    ordered = order_callbacks([wrapped, first])
    assert ordered.index(first) < ordered.index(wrapped)
