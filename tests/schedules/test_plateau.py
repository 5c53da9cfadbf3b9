"""ReduceOnPlateau against torch.optim.lr_scheduler.ReduceLROnPlateau; resume; arguments; as a callback."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from torchdeck import optim as O
from torchdeck.data import TensorLoader
from torchdeck.schedules._plateau import ReduceOnPlateau
from torchdeck.train import Learner, TrainingPhase, TrainState, ValidationPhase

EPOCHS = 2000
LRS = (0.1, 1.0)  # two param groups, different starting lrs


def _losses(seed: int = 0, n: int = EPOCHS) -> np.ndarray:
    """A decreasing, noisy loss with plateaus: flat stretches, then drops, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    stairs = np.exp(-(t // 150) / 4.0)                   # plateaus of 150 epochs
    slope = 0.3 * np.exp(-t / 400.0)                     # a slow decline under them
    noise = 0.01 * rng.standard_normal(n) * (rng.random(n) < 0.7)
    return stairs + slope + noise


def _metric(mode: str) -> np.ndarray:
    loss = _losses()
    return loss if mode == "min" else 2.0 - loss         # an accuracy-like rising metric


def _optimizer() -> torch.optim.SGD:
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(2, requires_grad=True)
    return torch.optim.SGD([{"params": [a], "lr": LRS[0]}, {"params": [b], "lr": LRS[1]}])


def _lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in opt.param_groups]


CONFIGS = [
    dict(mode="min"),
    dict(mode="min", threshold_mode="abs", threshold=1e-3, patience=5, factor=0.5),
    dict(mode="max", patience=3, factor=0.5),
    dict(mode="max", threshold_mode="abs", threshold=2e-3, patience=4, factor=0.7),
    dict(mode="min", patience=2, cooldown=5, factor=0.5),
    dict(mode="max", patience=0, cooldown=2, factor=0.8, threshold=0.0),
    dict(mode="min", patience=3, factor=0.5, min_value=1e-3),
    dict(mode="min", patience=3, factor=0.5, min_value=[1e-4, 1e-2]),
    dict(mode="min", patience=6, factor=0.0, min_value=[1e-3, 1e-5]),
    dict(mode="min", patience=1, factor=0.9, eps=1e-3),
]


def _torch_kwargs(cfg: dict) -> dict:
    kw = dict(cfg)
    if "min_value" in kw:
        kw["min_lr"] = kw.pop("min_value")
    return kw


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_matches_torch_reduce_lr_on_plateau(cfg):
    metric = _metric(cfg["mode"])
    ours_opt, ref_opt = _optimizer(), _optimizer()
    ours = ReduceOnPlateau(optimizer=ours_opt, **cfg)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **_torch_kwargs(cfg))
    got, want = [], []
    for m in metric:
        ours.step(float(m))
        ref.step(float(m))
        got.append(_lrs(ours_opt))
        want.append(_lrs(ref_opt))
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter, ours.last_epoch) == \
               (ref.best, ref.num_bad_epochs, ref.cooldown_counter, ref.last_epoch)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    reductions = len({tuple(r) for r in want}) - 1
    assert reductions >= (1 if cfg.get("factor") == 0.0 else 3), "the sequence should trigger reductions"
    assert ours.get_last_lr() == ref.get_last_lr()


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[4], CONFIGS[7]], ids=["default", "cooldown", "min_value_list"])
def test_resume_from_state_dict_equals_uninterrupted(cfg):
    metric = _metric(cfg["mode"])
    full_opt = _optimizer()
    full = ReduceOnPlateau(optimizer=full_opt, **cfg)
    full_lrs = []
    for m in metric:
        full.step(m)
        full_lrs.append(_lrs(full_opt))

    k = int(np.random.default_rng(1).integers(1, EPOCHS - 1))
    first_opt = _optimizer()
    first = ReduceOnPlateau(optimizer=first_opt, **cfg)
    for m in metric[:k]:
        first.step(m)
    saved = copy.deepcopy({"rop": first.state_dict(), "opt": first_opt.state_dict()})
    assert set(saved["rop"]) == {"best", "num_bad_epochs", "cooldown_counter", "last_epoch"}

    second_opt = _optimizer()
    second_opt.load_state_dict(saved["opt"])
    second = ReduceOnPlateau(optimizer=second_opt, **cfg)
    second.load_state_dict(saved["rop"])
    resumed = []
    for m in metric[k:]:
        second.step(m)
        resumed.append(_lrs(second_opt))
    assert resumed == full_lrs[k:]
    assert second.state_dict() == full.state_dict()


def test_load_state_dict_missing_keys_is_a_clear_error():
    with pytest.raises(ValueError, match="reduce_on_plateau.*cooldown_counter"):
        ReduceOnPlateau().load_state_dict({"best": 1.0, "num_bad_epochs": 0, "last_epoch": 3})


@pytest.mark.parametrize(("kwargs", "arg"), [
    (dict(factor=1.0), "factor"), (dict(factor=1.5), "factor"), (dict(factor=-0.1), "factor"),
    (dict(factor="0.1"), "factor"), (dict(factor=float("nan")), "factor"),
    (dict(patience=-1), "patience"), (dict(patience=2.5), "patience"), (dict(patience=True), "patience"),
    (dict(cooldown=-1), "cooldown"), (dict(mode="minimum"), "mode"), (dict(threshold_mode="relative"), "threshold_mode"),
    (dict(threshold=-1e-4), "threshold"), (dict(eps=-1.0), "eps"),
    (dict(min_value=-1.0), "min_value"), (dict(min_value=[0.0, -1.0]), "min_value"),
    (dict(monitor=""), "monitor"), (dict(hyper=""), "hyper"),
])
def test_bad_arguments_raise_naming_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=f"reduce_on_plateau: {arg}") as e:
        ReduceOnPlateau(**kwargs)
    value = next(iter(kwargs.values()))
    shown = repr(value[-1] if isinstance(value, list) else value)
    assert f"got {shown}" in str(e.value) and "must be" in str(e.value)  # the value and what is allowed


def test_optimizer_mismatches_are_clear_errors():
    with pytest.raises(ValueError, match="reduce_on_plateau: min_value has 3 values.*2 param groups"):
        ReduceOnPlateau(min_value=[0.0, 0.0, 0.0], optimizer=_optimizer())
    with pytest.raises(ValueError, match="no hyperparameter 'b1'.*allowed: lr"):
        ReduceOnPlateau(hyper="b1", optimizer=_optimizer())
    with pytest.raises(RuntimeError, match="needs the optimizer"):
        ReduceOnPlateau().step(1.0)


def test_other_hyper_is_scaled():
    a = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([a], lr=0.1, momentum=0.9)
    rop = ReduceOnPlateau(hyper="momentum", patience=0, factor=0.5, optimizer=opt)
    for m in (1.0, 1.0, 1.0):
        rop.step(m)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.9 * 0.25) and opt.param_groups[0]["lr"] == 0.1


def _state(opt, phase, metrics):
    return TrainState(model=torch.nn.Identity(), optimizer=opt, loss_fn=None, phase=phase, metrics=metrics)


def test_callback_steps_on_validation_epoch_end_only():
    opt, ref_opt = _optimizer(), _optimizer()
    rop = ReduceOnPlateau(monitor="valid_accuracy", mode="max", patience=1, factor=0.5)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, mode="max", patience=1, factor=0.5)
    assert rop.reads == ("metrics", "phase", "optimizer") and rop.writes == ()
    for acc in _metric("max")[:300]:
        rop.epoch_end(_state(opt, TrainingPhase(), {"train_loss": 0.0}))  # ignored
        rop.epoch_end(_state(opt, ValidationPhase(), {"valid_accuracy": float(acc), "valid_loss": 1.0}))
        ref.step(float(acc))
        assert _lrs(opt) == _lrs(ref_opt)
    assert rop.last_epoch == 300 and _lrs(opt)[0] < LRS[0]


def test_callback_missing_monitor_names_it_and_the_metrics():
    rop = ReduceOnPlateau(monitor="valid_f1")
    with pytest.raises(ValueError, match=r"'valid_f1'.*available: valid_accuracy, valid_loss"):
        rop.epoch_end(_state(_optimizer(), ValidationPhase(), {"valid_loss": 1.0, "valid_accuracy": 0.5}))


def test_in_a_learner_follows_the_validation_loss():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    loaders = {"train": TensorLoader(x[:20], y[:20], 8, shuffle=True), "valid": TensorLoader(x[20:], y[20:], 8)}
    rop = ReduceOnPlateau(patience=0, factor=0.5, threshold=0.5)  # nearly every epoch is "bad"
    learner = Learner(model, loaders, torch.nn.functional.cross_entropy, O.chain(O.adam(), O.scale_lr(1e-2)),
                      callbacks=[rop], metrics=("accuracy",), epochs=6)
    learner.fit()
    ref_opt = _optimizer()
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, patience=0, factor=0.5, threshold=0.5)
    for row in learner.history.epochs:
        ref.step(row["valid_loss"])
    assert rop.last_epoch == 6
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * ref_opt.param_groups[0]["lr"] / LRS[0],
                                                                    rel=1e-12)
    assert learner.optimizer.param_groups[0]["lr"] < 1e-2
