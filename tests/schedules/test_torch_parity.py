"""The torch-like schedules against torch.optim.lr_scheduler, step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchdeck.schedules._torchlike  # noqa: F401  (registers the names)
from torchdeck.schedules._spec import schedule_from_spec

from ._helpers import torch_lrs
from torchdeck.schedules._torchlike import (CosineWarmRestarts, Cyclic, ExpDecay, MultiStep, OneCycle, Polynomial,
                                            StepDecay)

LR = torch.optim.lr_scheduler
N = 10_000


# (ours, torch scheduler factory, torch's starting lr, steps, rtol). CyclicLR, OneCycleLR and
# CosineAnnealingWarmRestarts are closed forms in torch too and agree bit for bit (exp_range to
# ~4e-16). StepLR, MultiStepLR, ExponentialLR and PolynomialLR multiply the previous lr, so they
# drift by rounding: measured at most ~8e-15 relative over these runs, well inside 1e-12. Exact
# zeros (PolynomialLR at the end) match exactly, so no absolute floor is needed (atol=0).
CASES = {
    "step_decay": (StepDecay(0.1, step_size=30, gamma=0.9), lambda o: LR.StepLR(o, 30, gamma=0.9), 0.1, N, 1e-12),
    "step_decay_every_step": (StepDecay(1.0, 1, 0.999), lambda o: LR.StepLR(o, 1, gamma=0.999), 1.0, N, 1e-12),
    "multi_step": (MultiStep(0.5, (10, 100, 1000, 5000), 0.3),
                   lambda o: LR.MultiStepLR(o, [10, 100, 1000, 5000], gamma=0.3), 0.5, N, 1e-12),
    # 10_000 products of 0.9995: the recursive value drifts a few ulp per step.
    "exp_decay": (ExpDecay(0.1, 0.9995), lambda o: LR.ExponentialLR(o, 0.9995), 0.1, N, 1e-12),
    # PolynomialLR multiplies ratios ((1 - t/T) / (1 - (t-1)/T)) ** power; the rounding of each
    # ratio accumulates, most near the end where the value is smallest.
    "polynomial": (Polynomial(0.1, 8000, 2.0), lambda o: LR.PolynomialLR(o, 8000, 2.0), 0.1, N, 1e-12),
    "polynomial_linear": (Polynomial(3e-3, 500, 1.0), lambda o: LR.PolynomialLR(o, 500, 1.0), 3e-3, 600, 1e-12),
    "polynomial_sqrt": (Polynomial(1.0, 1000, 0.5), lambda o: LR.PolynomialLR(o, 1000, 0.5), 1.0, 1200, 1e-12),
    "cosine_warm_restarts": (CosineWarmRestarts(0.1, 1e-4, period=37),
                             lambda o: LR.CosineAnnealingWarmRestarts(o, 37, 1, eta_min=1e-4), 0.1, N, 1e-12),
    "cosine_warm_restarts_mult": (CosineWarmRestarts(0.1, 0.0, period=10, mult=2),
                                  lambda o: LR.CosineAnnealingWarmRestarts(o, 10, 2), 0.1, N, 1e-12),
    "cosine_warm_restarts_mult3": (CosineWarmRestarts(1.0, 0.5, period=1, mult=3),
                                   lambda o: LR.CosineAnnealingWarmRestarts(o, 1, 3, eta_min=0.5), 1.0, N, 1e-12),
    "cyclic": (Cyclic(1e-3, 1e-2, up=20), lambda o: LR.CyclicLR(o, 1e-3, 1e-2, 20, cycle_momentum=False),
               1e-3, N, 1e-12),
    "cyclic_uneven": (Cyclic(1e-3, 1e-2, up=7, down=13, mode="triangular2"),
                      lambda o: LR.CyclicLR(o, 1e-3, 1e-2, 7, 13, mode="triangular2", cycle_momentum=False),
                      1e-3, N, 1e-12),
    "cyclic_exp_range": (Cyclic(1e-4, 1e-1, up=50, down=30, mode="exp_range", gamma=0.9995),
                         lambda o: LR.CyclicLR(o, 1e-4, 1e-1, 50, 30, mode="exp_range", gamma=0.9995,
                                               cycle_momentum=False), 1e-4, N, 1e-12),
    "one_cycle": (OneCycle(0.1, N), lambda o: LR.OneCycleLR(o, 0.1, N, cycle_momentum=False), 0.1, N, 1e-12),
    "one_cycle_linear_three": (OneCycle(1.0, 997, pct_start=0.25, anneal="linear", div_factor=10.0,
                                        final_div_factor=100.0, three_phase=True),
                               lambda o: LR.OneCycleLR(o, 1.0, 997, pct_start=0.25, anneal_strategy="linear",
                                                       div_factor=10.0, final_div_factor=100.0, three_phase=True,
                                                       cycle_momentum=False), 1.0, 997, 1e-12),
    "one_cycle_short": (OneCycle(3e-3, 7, pct_start=0.3), lambda o: LR.OneCycleLR(o, 3e-3, 7, pct_start=0.3,
                                                                                  cycle_momentum=False),
                        3e-3, 7, 1e-12),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case):
    ours, make, start, steps, rtol = CASES[case]
    ref = torch_lrs(make, start, steps)
    np.testing.assert_allclose(ours.values(np.arange(steps)), ref, rtol=rtol, atol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_values_equal_the_scalar_path(case):
    s = CASES[case][0]
    ts = np.arange(0, 2000, 3)
    vec = s.values(ts)
    assert vec.shape == ts.shape
    assert vec.tolist() == [s(int(t)) for t in ts]
    assert s.values(ts.tolist()).tolist() == vec.tolist()


@pytest.mark.parametrize("case", list(CASES))
def test_spec_round_trip(case):
    s = CASES[case][0]
    assert schedule_from_spec(s.to_spec()) == s
    yaml = pytest.importorskip("yaml")
    assert schedule_from_spec(yaml.safe_load(yaml.safe_dump(s.to_spec()))) == s


def test_lengths_and_ends():
    assert OneCycle(0.1, 100).length == 100 and Polynomial(1.0, 50, 2.0).length == 50
    assert StepDecay(1.0, 3).length is None and Cyclic(0.0, 1.0, 4).length is None
    oc = OneCycle(0.1, 100)
    assert oc(99) == oc(100) == oc(10**6) == pytest.approx(0.1 / 25 / 1e4, rel=1e-15)
    assert Polynomial(1.0, 10, 2.0, end=0.25)(10) == 0.25 == Polynomial(1.0, 10, 2.0, end=0.25)(50)
    assert Polynomial(1.0, 10, 1.0, end=0.5)(5) == pytest.approx(0.75, rel=1e-15)
    assert MultiStep(1.0, [2, 4], 0.5).values(np.arange(6)).tolist() == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_warm_restarts_boundaries():
    s = CosineWarmRestarts(1.0, 0.0, period=2, mult=2)  # restarts at 0, 2, 6, 14
    v = s.values(np.arange(15))
    assert [t for t in range(15) if v[t] == 1.0] == [0, 2, 6, 14]
    with pytest.raises(ValueError, match=r"^cosine_warm_restarts: steps must be integers, got 2\.5$"):
        s.values([1, 2.5])


@pytest.mark.parametrize(("make", "pattern"), [
    (lambda: StepDecay(1.0, 0), r"^step_decay: step_size must be a positive integer, got 0$"),
    (lambda: StepDecay(-1.0, 3), r"^step_decay: start must be >= 0\.0, got -1\.0$"),
    (lambda: StepDecay(1.0, 3, gamma=0), r"^step_decay: gamma must be > 0, got 0$"),
    (lambda: MultiStep(1.0, [5, 3]), r"^multi_step: milestones must be a list of increasing positive integers, got \[5, 3\]$"),
    (lambda: MultiStep(1.0, [0, 3]), r"^multi_step: milestones must be .*, got \[0, 3\]$"),
    (lambda: MultiStep(1.0, 7), r"^multi_step: milestones must be .*, got 7$"),
    (lambda: ExpDecay(1.0, "0.9"), r"^exp_decay: gamma must be a number, got '0\.9'$"),
    (lambda: ExpDecay(1.0, -0.5), r"^exp_decay: gamma must be > 0, got -0\.5$"),
    (lambda: Polynomial(1.0, 0, 1.0), r"^polynomial: total_steps must be a positive integer, got 0$"),
    (lambda: Polynomial(1.0, 10, -1.0), r"^polynomial: power must be >= 0\.0, got -1\.0$"),
    (lambda: Polynomial(1.0, 10, 1.0, end=-0.1), r"^polynomial: end must be >= 0\.0, got -0\.1$"),
    (lambda: CosineWarmRestarts(1.0, 0.0, period=0), r"^cosine_warm_restarts: period must be a positive integer, got 0$"),
    (lambda: CosineWarmRestarts(1.0, 0.0, period=5, mult=1.5), r"^cosine_warm_restarts: mult must be a positive integer, got 1\.5$"),
    (lambda: CosineWarmRestarts(1.0, -1.0, period=5), r"^cosine_warm_restarts: end must be >= 0\.0, got -1\.0$"),
    (lambda: Cyclic(0.1, 1.0, 4, mode="x"), r"^cyclic: mode must be one of triangular, triangular2, exp_range, got 'x'$"),
    (lambda: Cyclic(0.1, 1.0, 0), r"^cyclic: up must be a positive integer, got 0$"),
    (lambda: Cyclic(0.1, 1.0, 4, down=-2), r"^cyclic: down must be a positive integer or null .*, got -2$"),
    (lambda: Cyclic(1.0, 0.1, 4), r"^cyclic: high must be >= low \(1\.0\), got 0\.1$"),
    (lambda: Cyclic(0.1, 1.0, 4, gamma=0.0), r"^cyclic: gamma must be > 0, got 0\.0$"),
    (lambda: OneCycle(0.1, 0), r"^one_cycle: total_steps must be a positive integer, got 0$"),
    (lambda: OneCycle(0.1, 100, pct_start=1.0), r"^one_cycle: pct_start must be in \(0, 1\), got 1\.0$"),
    (lambda: OneCycle(0.1, 100, pct_start=0), r"^one_cycle: pct_start must be in \(0, 1\), got 0$"),
    (lambda: OneCycle(0.1, 10, pct_start=0.1), r"^one_cycle: pct_start \* total_steps must be > 1 .*, got 0\.1 \* 10$"),
    (lambda: OneCycle(0.1, 100, pct_start=0.5, three_phase=True), r"^one_cycle: pct_start must be < 0\.5 with three_phase"),
    (lambda: OneCycle(0.1, 100, anneal="exp"), r"^one_cycle: anneal must be one of cos, linear, got 'exp'$"),
    (lambda: OneCycle(0.1, 100, div_factor=0), r"^one_cycle: div_factor must be > 0, got 0$"),
    (lambda: OneCycle(0.1, 100, final_div_factor=-1), r"^one_cycle: final_div_factor must be > 0, got -1$"),
    (lambda: OneCycle(0.1, 100, three_phase="no"), r"^one_cycle: three_phase must be true or false, got 'no'$"),
    (lambda: OneCycle(-0.1, 100), r"^one_cycle: max_lr must be >= 0\.0, got -0\.1$"),
])
def test_errors_name_schedule_argument_and_value(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_spec_errors_name_the_place():
    with pytest.raises(ValueError, match=r"^schedule\.cyclic: mode must be one of"):
        schedule_from_spec({"cyclic": {"low": 0.1, "high": 1.0, "up": 3, "mode": "sawtooth"}})


def test_constant_factor_matches_torch_constant_lr():
    from torchdeck import schedules as S

    ours = S.Sequence([S.Constant(0.1 * 0.25, steps=40), S.Constant(0.1)])
    theirs = torch_lrs(lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=0.25, total_iters=40), 0.1, 10_000)
    np.testing.assert_allclose(ours.values(np.arange(10_000)), theirs, rtol=1e-12)


def test_sequence_matches_torch_sequential_lr():
    from torchdeck import schedules as S

    warm, gamma = 100, 0.999
    ours = S.Sequence([S.Linear(0.1 * 0.1, 0.1, steps=warm), S.ExpDecay(0.1, gamma)])

    def make(o):
        return torch.optim.lr_scheduler.SequentialLR(o, [
            torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=warm),
            torch.optim.lr_scheduler.ExponentialLR(o, gamma=gamma)], milestones=[warm])

    # torch multiplies the previous lr each step, so rounding builds up: 1e-12 still holds here.
    np.testing.assert_allclose(ours.values(np.arange(10_000)), torch_lrs(make, 0.1, 10_000), rtol=1e-12)
