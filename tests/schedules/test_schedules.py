"""Schedules against torch.optim.lr_scheduler and analytic formulas; the Scheduler callback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdeck import optim as O
from torchdeck import schedules as S

from ._helpers import torch_lrs


@pytest.mark.parametrize(("start", "end", "period"), [(1e-2, 1e-5, 100), (3e-3, 0.0, 7), (0.5, 0.1, 1), (1.0, 1.0, 10)])
def test_cos_anneal_matches_torch_cosine_annealing_lr(start, end, period):
    s = S.CosAnneal(start, end, period=period)
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=period, eta_min=end), start, period + 1)
    ours = [s(t) for t in range(period + 1)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=0)
    assert ours[0] == start and ours[-1] == pytest.approx(end, abs=1e-15)


def test_cos_anneal_stays_at_end_or_restarts():
    s = S.CosAnneal(1.0, 0.1, period=10)
    assert s(10) == pytest.approx(0.1) and s(25) == pytest.approx(0.1)
    r = S.CosAnneal(1.0, 0.1, period=10, restart=True)
    assert r(10) == 1.0 and r(13) == pytest.approx(s(3), rel=1e-15)
    assert r(5) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 5 / 10)) / 2, rel=1e-15)


@pytest.mark.parametrize(("start_factor", "end_factor", "steps"), [(0.1, 1.0, 50), (1.0, 0.25, 8), (0.5, 0.5, 3)])
def test_linear_matches_torch_linear_lr(start_factor, end_factor, steps):
    base = 3e-3
    s = S.Linear(base * start_factor, base * end_factor, steps=steps)
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor, end_factor, total_iters=steps),
                     base, steps + 5)
    np.testing.assert_allclose([s(t) for t in range(steps + 5)], ref, rtol=1e-10, atol=0)


def test_constant():
    c = S.Constant(0.25)
    assert c(0) == c(1000) == 0.25
    assert c.values(np.arange(5)).tolist() == [0.25] * 5


def test_sequence_is_the_piecewise_function():
    warm, cos = S.Linear(0.0, 3e-3, steps=100), S.CosAnneal(3e-3, 1e-5, period=900)
    seq = S.Sequence([warm, cos])
    for t in range(0, 1100, 7):
        expected = warm(t) if t < 100 else cos(t - 100)
        assert seq(t) == expected
    assert seq.length == 1000


def test_sequence_with_explicit_steps_cuts_segments():
    a, b, c = S.Constant(1.0), S.Linear(1.0, 0.0, steps=4), S.Constant(0.5)
    seq = S.Sequence([a, b, c], steps=[3, 2, 5])
    assert [seq(t) for t in range(12)] == [1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]


schedules = st.one_of(
    st.builds(S.Constant, st.floats(0, 10)),
    st.builds(S.Linear, st.floats(0, 1), st.floats(0, 1), steps=st.integers(1, 50)),
    st.builds(S.CosAnneal, st.floats(0, 1), st.floats(0, 1), period=st.integers(1, 50), restart=st.booleans()),
)


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(schedules, min_size=1, max_size=3), lengths=st.lists(st.integers(1, 20), min_size=3, max_size=3),
       single=schedules)
def test_values_equal_the_scalar_path_for_every_t(parts, lengths, single):
    ts = np.arange(120)
    seq = S.Sequence(parts, steps=lengths[:len(parts)])
    for s in (single, seq):
        vec = s.values(ts)
        assert vec.shape == ts.shape
        assert vec.tolist() == [s(int(t)) for t in ts]
        assert s.values(ts.tolist()).tolist() == vec.tolist()  # lists and arrays alike


def test_fit_to_fills_open_lengths():
    seq = S.Sequence([S.Linear(0.0, 1.0, steps=10), S.CosAnneal(1.0, 0.0)])
    assert seq.steps == (10, None) and seq.length is None
    fitted = seq.fit_to(100)
    assert fitted.steps == (10, 90) and fitted.length == 100
    assert fitted.schedules[1] == S.CosAnneal(1.0, 0.0, period=90)
    assert fitted(99) == pytest.approx(S.CosAnneal(1.0, 0.0, period=90)(89))
    assert fitted(100) == pytest.approx(0.0, abs=1e-15)
    assert S.CosAnneal(1.0).fit_to(30).period == 30
    assert S.Linear(0.0, 1.0).fit_to(30).steps == 30
    assert S.Constant(1.0).fit_to(30).steps == 30
    fixed = S.CosAnneal(1.0, period=5)
    assert fixed.fit_to(30) is fixed


def test_fit_to_a_run_shorter_than_the_fixed_segments_keeps_them():
    seq = S.Sequence([S.Linear(0.0, 1.0, steps=50), S.CosAnneal(1.0, 0.0)]).fit_to(20)
    assert [seq(t) for t in range(20)] == [S.Linear(0.0, 1.0, steps=50)(t) for t in range(20)]


def test_open_schedules_refuse_values_until_fitted():
    with pytest.raises(ValueError, match=r"cos_anneal: period is null; call fit_to"):
        S.CosAnneal(1.0)(3)
    with pytest.raises(ValueError, match=r"linear: steps is null; call fit_to"):
        S.Linear(0.0, 1.0).values([1, 2])


@pytest.mark.parametrize("s", [
    S.Constant(0.1), S.Linear(0.0, 3e-3, steps=50), S.CosAnneal(3e-3, 1e-5), S.CosAnneal(1.0, 0.5, period=9, restart=True),
    S.Sequence([S.Linear(3e-4, 3e-3, steps=50), S.CosAnneal(3e-3, 1e-5)]),
    S.Sequence([S.Constant(1.0), S.Sequence([S.Linear(1.0, 0.0, steps=3), S.Constant(0.0)])], steps=[4, None]),
])
def test_spec_round_trip(s):
    assert S.schedule_from_spec(s.to_spec()) == s
    yaml = pytest.importorskip("yaml")
    assert S.schedule_from_spec(yaml.safe_load(yaml.safe_dump(s.to_spec()))) == s


def test_bare_number_is_a_constant():
    assert S.schedule_from_spec(0.5) == S.Constant(0.5)


@pytest.mark.parametrize(("make", "pattern"), [
    (lambda: S.CosAnneal(1.0, period=0), r"^cos_anneal: period must be a positive integer or null \(the rest of the run\), got 0$"),
    (lambda: S.CosAnneal(1.0, period=-5), r"^cos_anneal: period must be a positive integer .*, got -5$"),
    (lambda: S.CosAnneal(1.0, period=2.5), r"^cos_anneal: period must be a positive integer .*, got 2\.5$"),
    (lambda: S.CosAnneal(-1.0), r"^cos_anneal: start must be >= 0\.0, got -1\.0$"),
    (lambda: S.CosAnneal(1.0, -0.1), r"^cos_anneal: end must be >= 0\.0, got -0\.1$"),
    (lambda: S.CosAnneal(1.0, restart="yes"), r"^cos_anneal: restart must be true or false, got 'yes'$"),
    (lambda: S.Linear(-1.0, 1.0, steps=3), r"^linear: start must be >= 0\.0, got -1\.0$"),
    (lambda: S.Linear(0.0, 1.0, steps=0), r"^linear: steps must be a positive integer .*, got 0$"),
    (lambda: S.Constant("high"), r"^constant: value must be a number, got 'high'$"),
    (lambda: S.Sequence([]), r"^sequence: schedules must not be empty$"),
    (lambda: S.Sequence([S.Constant(1.0), 3.0]), r"^sequence: schedules\[1\] must be a schedule, got 3\.0$"),
    (lambda: S.Sequence([S.Constant(1.0), S.Constant(2.0)], steps=[3]), r"^sequence: steps has 1 entries for 2 schedules$"),
    (lambda: S.Sequence([S.CosAnneal(1.0), S.Constant(2.0)]),
     r"^sequence: steps\[0\] must be a positive integer, got None$"),
    (lambda: S.Sequence([S.Constant(1.0), S.Constant(2.0)], steps=[0, 3]), r"^sequence: steps\[0\] must be a positive integer, got 0$"),
    (lambda: S.Constant(1.0).values([-1]), r"^schedule steps must be >= 0, got -1"),
])
def test_errors_name_the_argument_value_and_allowed(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize(("spec", "pattern"), [
    ({"cosine": {"start": 1.0}}, r"^schedule: unknown schedule 'cosine'; allowed: clamp, constant, cos_anneal, .*, warmup$"),
    ({"cos_anneal": {"start": 1.0, "T_max": 5}}, r"^schedule\.cos_anneal: unknown argument 'T_max'; allowed: start, end, period, restart$"),
    ({"cos_anneal": {"start": 1.0, "period": 0}}, r"^schedule\.cos_anneal: period must be a positive integer .*, got 0$"),
    ({"cos_anneal": {"end": 1.0}}, r"^schedule\.cos_anneal: .*start"),
    ({"sequence": {"schedules": [{"constant": {"value": 1.0}}, {"linear": {"start": -1, "end": 0}}], "steps": [2, None]}},
     r"^schedule\.sequence\.schedules\[1\]\.linear: start must be >= 0\.0, got -1$"),
    ({"sequence": {"schedules": {"constant": {"value": 1}}}}, r"^schedule\.sequence\.schedules: expected a list of schedules"),
    ("cos_anneal", r"^schedule: expected a number or a one-key mapping"),
    ({"linear": [0, 1]}, r"^schedule\.linear: expected a mapping of arguments, got \[0, 1\]$"),
])
def test_spec_errors_name_the_place(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        S.schedule_from_spec(spec)


# -- the Scheduler -----------------------------------------------------------------------------
def _tiny_learner(callbacks, n_train=40, batch_size=8, rule=None, epochs=2):
    from torchdeck.data import TensorLoader
    from torchdeck.train import Learner

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n_train + 16, 4, generator=gen), torch.randint(0, 3, (n_train + 16,), generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
    loaders = {"train": TensorLoader(x[:n_train], y[:n_train], batch_size, shuffle=True),
               "valid": TensorLoader(x[n_train:], y[n_train:], batch_size)}
    return Learner(model, loaders, torch.nn.functional.cross_entropy, rule or O.chain(O.adam(), O.scale_lr(1e-2)),
                   callbacks=callbacks, epochs=epochs)


def test_scheduler_as_callback_sets_lr_per_step():
    lr = S.Sequence([S.Linear(1e-4, 1e-2, steps=4), S.CosAnneal(1e-2, 1e-5)])
    learner = _tiny_learner([S.Scheduler({"lr": lr})], epochs=3)
    learner.fit()
    total = 3 * 5
    assert learner.history.steps == list(range(total))
    expected = lr.fit_to(total).values(np.arange(total)).tolist()
    assert learner.history.lrs == expected
    assert learner.history.lrs[0] == 1e-4 and learner.history.lrs[4] == 1e-2
    # A second fit continues from the global step: open lengths span the steps done plus planned.
    learner.fit(1)
    assert learner.history.lrs[total:] == lr.fit_to(total + 5).values(np.arange(total, total + 5)).tolist()


def test_scheduler_drives_other_hyperparameters():
    b1 = S.Linear(0.5, 0.9, steps=10)
    seen = []

    from torchdeck.train import Callback

    class RecordB1(Callback):
        after = (S.Scheduler,)

        def backward_end(self, state):
            seen.append(state.optimizer.param_groups[0]["b1"])

    learner = _tiny_learner([RecordB1(), S.Scheduler({"b1": b1})], epochs=2)
    learner.fit()
    assert seen == b1.values(np.arange(10)).tolist()


def test_scheduler_refuses_a_hyperparameter_the_optimizer_lacks():
    learner = _tiny_learner([S.Scheduler({"momentum": S.Constant(0.9)})])
    with pytest.raises(ValueError, match=r"Scheduler: param group 0 has no hyperparameter 'momentum'; allowed: .*\blr\b"):
        learner.fit()
    p = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match=r"Scheduler: param group 0 has no hyperparameter 'b1'; allowed: lr, momentum"):
        S.Scheduler({"b1": 0.9}, torch.optim.SGD([p], lr=0.1, momentum=0.5))


def test_scheduler_by_hand_with_a_torch_optimizer_and_resume():
    lr = S.CosAnneal(0.1, 0.001, period=20)
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = S.Scheduler({"lr": lr}, opt)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == [lr(t) for t in range(8)]
    assert sched.get_last_lr() == [lr(8)]
    saved = sched.state_dict()

    p2 = torch.zeros(1, requires_grad=True)
    opt2 = torch.optim.SGD([p2], lr=0.1)
    sched2 = S.Scheduler({"lr": lr}, opt2)
    assert opt2.param_groups[0]["lr"] == lr(0)
    sched2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == lr(8)
    for t in range(9, 25):
        sched2.step()
        assert opt2.param_groups[0]["lr"] == lr(t)
    # matches torch's own scheduler over the period
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.001), 0.1, 21)
    np.testing.assert_allclose([lr(t) for t in range(21)], ref, rtol=1e-10)


def test_scheduler_by_hand_fits_open_schedules_to_total_steps():
    p = torch.zeros(1, requires_grad=True)
    opt = O.Optimizer([p], O.chain(O.adam(), O.scale_lr(1.0)))
    sched = S.Scheduler({"lr": {"cos_anneal": {"start": 1.0, "end": 0.0}}}, opt, total_steps=10)
    for _ in range(5):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_scheduler_step_without_optimizer_is_an_error():
    with pytest.raises(RuntimeError, match=r"Scheduler\.step\(\) needs the optimizer"):
        S.Scheduler({"lr": 0.1}).step()


def test_open_segments_are_fitted_to_their_slot():
    s = S.Sequence([S.Linear(0.0, 1.0), S.CosAnneal(1.0, 0.0)], steps=[10, None]).fit_to(30)
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(20) == pytest.approx(0.5)
    # Slots equal to the segments' own lengths are not written twice in the spec.
    assert "steps" not in S.Sequence([S.Linear(0.0, 1.0, steps=10), S.Constant(1.0)]).to_spec()["sequence"]
