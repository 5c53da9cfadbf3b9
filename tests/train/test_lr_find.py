"""lr_find (sweep, divergence stop, hints, exact restore) and fit_one_cycle (torch's OneCycleLR)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from torchdeck import schedules as S
from torchdeck.train import Callback, LRFindResult, MixedPrecision, suggest_lrs

from ._digits import digits_learner, one_thread  # noqa: F401  (fixture)
from ._tiny import tiny_learner

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(learner):
    return {"weights": [p.detach().clone() for p in learner.model.parameters()],
            "grads": [None if p.grad is None else p.grad.clone() for p in learner.model.parameters()],
            "optimizer": copy.deepcopy(learner.optimizer.state_dict()),  # torch's holds live tensors
            "rng": torch.get_rng_state(), "shuffle": learner.loaders["train"].generator.get_state(),
            "history": (list(learner.history.losses), list(learner.history.lrs), list(learner.history.epochs)),
            "step": learner.state.step, "training": learner.model.training}


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("make_opt", [None, lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)],
                         ids=["torchdeck-adam", "torch-SGD"])
def test_lr_find_restores_the_learner_exactly(make_opt):
    learner = digits_learner(optimizer=make_opt, n_train=256, batch_size=32, dropout=0.2)
    learner.fit(1)  # momentum / Adam state, grads, history: all must come back as they were
    before = snapshot(learner)
    result = learner.lr_find(steps=20, end_lr=1.0)
    assert isinstance(result, LRFindResult) and len(result.lrs) >= 10
    assert_same(snapshot(learner), before)


def test_training_after_lr_find_is_unaffected():
    a = digits_learner(n_train=256, batch_size=32, dropout=0.2)
    b = digits_learner(n_train=256, batch_size=32, dropout=0.2)
    torch.manual_seed(1)
    a.fit(1)
    torch.manual_seed(1)
    b.fit(1)
    b.lr_find(steps=15)
    torch.manual_seed(2)  # a's and b's fits share the global RNG: give both the same start
    a.fit(1)
    torch.manual_seed(2)
    b.fit(1)
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(x, y)
    assert a.history.losses == b.history.losses


def test_the_sweep_is_geometric_and_the_losses_are_real():
    learner = digits_learner(n_train=512, batch_size=64, dropout=0.0)
    loader = learner.loaders["train"]
    # the first batch lr_find will see: the loader's next shuffle, computed on a copy
    gen = torch.Generator()
    gen.set_state(loader.generator.get_state())
    idx = torch.randperm(len(loader.x), generator=gen)[:64]
    with torch.no_grad():
        first = torch.nn.functional.cross_entropy(learner.model(loader.x[idx]), loader.y[idx]).item()
    result = learner.lr_find(start_lr=1e-6, end_lr=1e-2, steps=12)
    assert not result.diverged and len(result.lrs) == 12
    np.testing.assert_allclose(result.lrs, np.geomspace(1e-6, 1e-2, 12), rtol=1e-12)
    assert result.losses[0] == pytest.approx(first, rel=1e-6)
    assert result.smoothed[0] == pytest.approx(result.losses[0], rel=1e-12)  # bias-corrected
    beta = 0.98
    avg = [0.0]
    for loss in result.losses:
        avg.append(beta * avg[-1] + (1 - beta) * loss)
    expected = [a / (1 - beta ** (i + 1)) for i, a in enumerate(avg[1:])]
    np.testing.assert_allclose(result.smoothed, expected, rtol=1e-12)


def test_the_sweep_stops_when_the_loss_diverges():
    learner = digits_learner(optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1), n_train=512,
                             batch_size=32, dropout=0.0)
    result = learner.lr_find(start_lr=1e-4, end_lr=1e4, steps=200, beta=0.5)
    assert result.diverged and len(result.lrs) < 200
    last, before = result.smoothed[-1], result.smoothed[:-1]
    assert not np.isfinite(last) or last > 4 * min(before)
    assert all(s <= 4 * min(before[: i + 1]) for i, s in enumerate(before))  # no earlier point diverged
    assert set(result.hints) == {"steepest", "minimum/10"}
    assert all(result.lrs[0] / 10 <= v <= result.lrs[-2] for v in result.hints.values())
    assert "hints, not rules" in repr(result)


def test_hints_on_curves_with_known_answers():
    lrs = np.geomspace(1e-5, 1e-1, 401)  # log10 steps of 0.01: 1e-3 and 1e-2 are grid points
    x = np.log10(lrs)
    # -tanh falls fastest at its centre, x = -3
    assert suggest_lrs(lrs, -np.tanh(x + 3))["steepest"] == pytest.approx(1e-3, rel=1e-9)
    # a parabola with its minimum at x = -2: a tenth of that lr is 1e-3
    assert suggest_lrs(lrs, (x + 2) ** 2)["minimum/10"] == pytest.approx(1e-3, rel=1e-9)
    assert suggest_lrs(lrs[:2], [1.0, 0.5]) == {}  # too few points for a slope


def test_lr_find_runs_under_mixed_precision():
    seen = []

    class Dtype(Callback):  # not in_probes: it must not hear lr_find's steps
        def loss_begin(self, state):
            seen.append(state.pred.dtype)

    learner = digits_learner([MixedPrecision(), Dtype()], n_train=128, batch_size=32)
    learner.lr_find(steps=5)
    assert seen == []
    learner.add_callback(type("Spy", (Dtype,), {"in_probes": True})())
    learner.lr_find(steps=5)
    assert seen == [torch.bfloat16] * 5


@pytest.mark.parametrize("kwargs, message", [
    ({"start_lr": 0}, r"lr_find: start_lr must be a positive number, got 0"),
    ({"start_lr": 1.0, "end_lr": 0.1}, r"lr_find: end_lr must be greater than start_lr"),
    ({"steps": 1}, r"lr_find: steps must be an integer >= 2, got 1"),
    ({"beta": 1.0}, r"lr_find: beta \(smoothing\) must be in \[0, 1\), got 1.0"),
    ({"diverge": 1.0}, r"lr_find: diverge must be > 1"),
])
def test_lr_find_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_learner().lr_find(**kwargs)


# -- fit_one_cycle --------------------------------------------------------------------------------
def torch_one_cycle_lrs(total, lr_max, pct_start=0.25, div_factor=25.0, final_div_factor=1e4):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr_max)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr_max, total_steps=total, pct_start=pct_start,
                                                div_factor=div_factor, final_div_factor=final_div_factor,
                                                cycle_momentum=False)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_fit_one_cycle_follows_torch_one_cycle():
    learner = tiny_learner(n_train=40, batch_size=8)  # 5 steps per epoch
    learner.fit_one_cycle(4, lr_max=0.05)
    np.testing.assert_allclose(learner.history.lrs, torch_one_cycle_lrs(20, 0.05), rtol=1e-12)
    # a second call runs a new cycle from the current step
    learner.fit_one_cycle(2, lr_max=0.01, pct_start=0.3)
    np.testing.assert_allclose(learner.history.lrs[20:], torch_one_cycle_lrs(10, 0.01, pct_start=0.3), rtol=1e-12)


def test_fit_one_cycle_sets_an_existing_scheduler_aside_and_puts_it_back():
    sched = S.Scheduler({"lr": S.Constant(0.003)})
    learner = tiny_learner([sched], n_train=40, batch_size=8)
    learner.fit_one_cycle(2, lr_max=0.05)
    assert sched in learner.callbacks and sum(isinstance(c, S.Scheduler) for c in learner.callbacks) == 1
    learner.fit(1)
    assert learner.history.lrs[-5:] == [0.003] * 5


@pytest.mark.parametrize("args, kwargs, message", [
    ((0, 0.1), {}, r"fit_one_cycle: epochs must be a positive integer, got 0"),
    ((1, -0.1), {}, r"fit_one_cycle: one_cycle: max_lr must be >= 0.0, got -0.1"),
    ((1, 0.1), {"pct_start": 1.5}, r"fit_one_cycle: one_cycle: pct_start must be in \(0, 1\), got 1.5"),
])
def test_fit_one_cycle_validates(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_learner(n_train=40, batch_size=8).fit_one_cycle(*args, **kwargs)


def test_lr_find_and_loading_are_refused_while_a_run_is_in_progress(tmp_path):
    import threading

    release = threading.Event()

    class Hold(Callback):
        def step_begin(self, state):
            release.wait(10)

    learner = tiny_learner([Hold()])
    learner.save_checkpoint(tmp_path / "c")
    run = learner.fit_async(1)
    try:
        with pytest.raises(RuntimeError, match=r"lr_find: this learner has a run in progress"):
            learner.lr_find()
        with pytest.raises(RuntimeError, match=r"load_checkpoint: this learner has a run in progress"):
            learner.load_checkpoint(tmp_path / "c")
    finally:
        release.set()
        run.join(10)
    assert run.status == "finished"
