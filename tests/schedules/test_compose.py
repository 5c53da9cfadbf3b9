"""Composite schedules against the hand-composed functions, spec round trips and resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdeck import schedules as S


def cos(start: float, end: float, period: int, t: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * min(t, period) / period)) / 2


def test_loop_shifted_interpolator_follow_their_definitions():
    inner = S.CosAnneal(1.0, 0.1, period=10)
    ts = np.arange(95)
    np.testing.assert_allclose(S.Loop(inner, 10).values(ts), [cos(1.0, 0.1, 10, t % 10) for t in ts], rtol=1e-12)
    np.testing.assert_allclose(S.Shifted(inner, 3).values(ts), [cos(1.0, 0.1, 10, t + 3) for t in ts], rtol=1e-12)
    # Per-epoch linear ramp over 4 epochs of 25 steps each.
    per_epoch = S.Interpolator(S.Linear(0.0, 1.0, steps=4), rate=25)
    np.testing.assert_allclose(per_epoch.values(ts), [min(t / 25 / 4, 1.0) for t in ts], rtol=1e-12)


def test_arithmetic_and_clamp_are_pointwise():
    a, b = S.Linear(0.0, 1.0, steps=50), S.CosAnneal(1.0, 0.0, period=50)
    ts = np.arange(80)
    np.testing.assert_allclose((0.5 * a + b).values(ts), 0.5 * a.values(ts) + b.values(ts), rtol=1e-12)
    np.testing.assert_allclose((a * b).values(ts), a.values(ts) * b.values(ts), rtol=1e-12)
    np.testing.assert_allclose((a + 1e-3).values(ts), a.values(ts) + 1e-3, rtol=1e-12)
    np.testing.assert_allclose(S.Clamp(b, lo=0.2, hi=0.8).values(ts), np.clip(b.values(ts), 0.2, 0.8), rtol=0)


def test_warmup_ramps_to_the_schedules_first_value_then_runs_it():
    s = S.Warmup(S.CosAnneal(2.0, 0.0, period=20), steps=5, start=0.5)
    expect = [0.5 + (2.0 - 0.5) * t / 5 if t < 5 else cos(2.0, 0.0, 20, t - 5) for t in range(40)]
    np.testing.assert_allclose(s.values(np.arange(40)), expect, rtol=1e-12)
    assert s.length == 25
    assert S.Warmup(S.CosAnneal(1.0), steps=10).fit_to(110).schedule.period == 100


def test_nested_composites_round_trip_through_yaml():
    s = S.Warmup(S.Loop(S.Sequence([S.Linear(0.0, 1.0, steps=5), S.Exp(1.0, 0.9)]), period=30), steps=4) * 0.5
    text = yaml.safe_dump(s.to_spec())
    back = S.schedule_from_spec(yaml.safe_load(text))
    assert back == s
    np.testing.assert_array_equal(back.values(np.arange(200)), s.values(np.arange(200)))


@settings(max_examples=30, deadline=None)
@given(stop=st.integers(0, 400), period=st.integers(1, 60))
def test_resume_from_a_state_dict_equals_the_uninterrupted_run(stop, period):
    lr = S.Warmup(S.Loop(S.CosAnneal(1e-2, 1e-4, period=period), period), steps=7)
    param = torch.zeros(1, requires_grad=True)

    def run(n, state=None):
        opt = torch.optim.SGD([param], lr=1.0)
        sched = S.Scheduler({"lr": lr}, opt, total_steps=500)
        if state is not None:
            sched.load_state_dict(state)
        seen = []
        for _ in range(n):
            seen.append(opt.param_groups[0]["lr"])
            sched.step()
        return seen, sched.state_dict()

    whole, _ = run(500)
    first, state = run(stop)
    rest, _ = run(500 - stop, state)
    assert first + rest == whole


@pytest.mark.parametrize(("make", "pattern"), [
    (lambda: S.Loop(S.Constant(1.0), 0), r"^loop: period must be a positive integer, got 0$"),
    (lambda: S.Shifted(S.Constant(1.0), -2), r"^shifted: offset must be an integer >= 0, got -2$"),
    (lambda: S.Interpolator(S.Constant(1.0), 0), r"^interpolator: rate must be > 0 \(steps per epoch\), got 0$"),
    (lambda: S.Clamp(S.Constant(1.0), lo=2.0, hi=1.0), r"^clamp: lo must be <= hi, got lo=2\.0, hi=1\.0$"),
    (lambda: S.Warmup(S.Constant(1.0), steps=0), r"^warmup: steps must be a positive integer, got 0$"),
    (lambda: S.Loop(1.0, 5), r"^loop: schedule must be a schedule, got 1\.0$"),
    (lambda: S.Constant(1.0) + (-1.0), r"^constant: value must be >= 0\.0, got -1\.0$"),
])
def test_bad_arguments_name_the_composite_and_the_argument(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def _two_groups() -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]},
                            {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.5}], lr=0.1, momentum=0.9)


def test_plan_equals_what_the_scheduler_sets_per_group_and_on_resume():
    schedules = {"lr": [S.Warmup(S.CosAnneal(1e-2, 1e-4), steps=10), S.OneCycle(0.1, total_steps=120)],
                 "momentum": S.Cyclic(0.85, 0.95, up=15)}
    opt = _two_groups()
    planned = S.plan(opt, schedules, 120)
    assert planned["lr"].shape == (2, 120) and planned["momentum"].shape == (2, 120)
    assert opt.param_groups[1]["lr"] == 0.5  # planning changed nothing
    sched = S.Scheduler(schedules, opt, total_steps=120)
    seen = {"lr": [], "momentum": []}
    for _ in range(120):
        for name in seen:
            seen[name].append([g[name] for g in opt.param_groups])
        sched.step()
    for name in seen:
        np.testing.assert_array_equal(np.array(seen[name]).T, planned[name])
    resumed = S.plan(opt, schedules, 50, start=70)
    np.testing.assert_array_equal(resumed["lr"], planned["lr"][:, 70:])


def test_per_group_schedules_must_match_the_groups():
    with pytest.raises(ValueError, match=r"^Scheduler: schedules\.lr has 3 schedules for 2 param groups"):
        S.Scheduler({"lr": [S.Constant(0.1)] * 3}, _two_groups())
    with pytest.raises(ValueError, match=r"^plan: steps must be a positive integer, got 0$"):
        S.plan(_two_groups(), {"lr": S.Constant(0.1)}, 0)


def _named_groups() -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "name": "backbone"},
                            {"params": [torch.zeros(1, requires_grad=True)], "name": "head"}], lr=0.1)


def test_schedules_by_group_name_follow_the_group_whatever_its_position():
    backbone, head = S.Linear(0.0, 1e-3, steps=20), S.CosAnneal(1e-2, 0.0, period=20)
    opt = _named_groups()
    # Given in the other order than the groups: the names decide.
    sched = S.Scheduler({"lr": {"head": head, "backbone": {"linear": {"start": 0.0, "end": 1e-3, "steps": 20}}}}, opt)
    got = []
    for _ in range(20):
        got.append([g["lr"] for g in opt.param_groups])
        sched.step()
    ts = np.arange(20)
    np.testing.assert_array_equal(np.array(got).T, np.stack([backbone.values(ts), head.values(ts)]))
    planned = S.plan(_named_groups(), {"lr": {"backbone": backbone, "head": head}}, 20)
    np.testing.assert_array_equal(planned["lr"], np.array(got).T)
    # A one-key mapping naming a schedule type is a schedule, not a group.
    assert isinstance(S.Scheduler({"lr": {"constant": {"value": 0.1}}}).schedules["lr"], list)


def test_schedules_by_group_name_refuse_unknown_and_missing_groups():
    with pytest.raises(ValueError, match=r"^Scheduler: schedules\.lr: no param group named 'neck'; groups: 'backbone', 'head'$"):
        S.Scheduler({"lr": {"neck": 0.1, "head": 0.2}}, _named_groups())
    with pytest.raises(ValueError, match=r"^Scheduler: schedules\.lr: no schedule for param group 'head'"):
        S.Scheduler({"lr": {"backbone": 0.1}}, _named_groups())
    with pytest.raises(ValueError, match=r"no param group named 'body'; groups: none \(name groups with optim\.partition\)"):
        S.Scheduler({"lr": {"head": 0.1, "body": 0.2}}, _two_groups())


@settings(max_examples=25, deadline=None)
@given(total=st.integers(1, 50_000), period=st.integers(1, 5_000), max_points=st.integers(4, 3_000))
def test_curve_is_bounded_lies_on_the_schedule_and_keeps_its_extremes(total, period, max_points):
    s = S.Triangle(0.1, 1.0, period)
    xs, ys = S.curve(s, total, max_points)
    full = s.values(np.arange(total))
    assert len(xs) <= max(max_points, 2) and xs[0] == 0 and xs[-1] == total - 1
    assert np.all(np.diff(xs) > 0)
    np.testing.assert_array_equal(ys, full[xs])
    assert ys.min() == full.min() and ys.max() == full.max()


def test_torch_lr_is_a_real_lr_scheduler_that_matches_torch_and_resumes():
    def lrs(make, n, state=None):
        opt = torch.optim.SGD([torch.zeros(1, dtype=torch.float64, requires_grad=True)], lr=0.1)
        sched = make(opt)
        if state is not None:  # torch's resume: the optimiser's state (its lr) and the scheduler's
            opt.load_state_dict(state[0])
            sched.load_state_dict(state[1])
        seen = []
        for _ in range(n):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return seen, (opt.state_dict(), sched.state_dict())

    ours = lambda opt: S.TorchLR(opt, S.CosAnneal(0.1, 1e-3, period=500))  # noqa: E731
    theirs = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=500, eta_min=1e-3)  # noqa: E731
    assert isinstance(ours(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)),
                      torch.optim.lr_scheduler.LRScheduler)
    np.testing.assert_allclose(lrs(ours, 500)[0], lrs(theirs, 500)[0], rtol=1e-10)
    whole, _ = lrs(ours, 400)
    first, state = lrs(ours, 150)
    assert first + lrs(ours, 250, state)[0] == whole
    with pytest.raises(ValueError, match=r"^TorchLR: cos_anneal: period is null.*total_steps"):
        S.TorchLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), S.CosAnneal(0.1))


def test_per_epoch_scheduling_changes_values_only_at_epoch_boundaries():
    from torchdeck.train import Learner

    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    loaders = {"train": [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)], "valid": [(x, y)]}
    lr = S.StepDecay(0.1, step_size=2, gamma=0.5)
    model = torch.nn.Linear(3, 2)
    learner = Learner(model, loaders, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=1.0),
                      callbacks=[S.Scheduler({"lr": lr}, per="epoch")])
    learner.fit(5)
    expect = [lr(epoch) for epoch in range(5) for _ in range(4)]
    assert learner.history.lrs == pytest.approx(expect, rel=1e-12)
    with pytest.raises(ValueError, match=r"^Scheduler: per must be 'step' or 'epoch', got 'batch'$"):
        S.Scheduler({"lr": lr}, per="batch")
