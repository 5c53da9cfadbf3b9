"""fine_tune: a frozen-backbone phase, then discriminative one-cycle learning rates.

References: the backbone's tensors before the frozen phase (bit equality), and fastai's
``combined_cos`` one-cycle formula written out here in numpy, per param group.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import torchdeck as td
from torchdeck import optim as O
from torchdeck.train import Callback, Learner
from torchdeck.train._finetune import fine_tune, layer_groups


class LrLog(Callback):
    """Each training step's lr per param group, read when the step has run."""

    reads = ("optimizer", "phase")

    def __init__(self) -> None:
        self.rows: list[list[float]] = []

    def step_end(self, state) -> None:
        if state.phase.training:
            self.rows.append([g["lr"] for g in state.optimizer.param_groups])


class HeadMoved(Callback):
    """Snapshots of the backbone and head after every training step of the first fit."""

    reads = ("model", "phase")

    def __init__(self) -> None:
        self.snapshots: list[tuple[dict, dict]] = []

    def step_end(self, state) -> None:
        if state.phase.training:
            m = state.model
            self.snapshots.append(({k: v.detach().clone() for k, v in m.backbone.named_parameters()},
                                   {k: v.detach().clone() for k, v in m.head.named_parameters()}))


def fastai_one_cycle(peak: float, total: int, pct: float, div: float, final_div: float) -> np.ndarray:
    """fastai's combined_cos(pct, peak/div, peak, peak/div/final_div) at steps 0..total-1."""
    start, end = peak / div, peak / div / final_div
    up = min(max(1, round(pct * total)), total)
    out = []
    for t in range(total):
        if t < up:
            a, b, p = start, peak, t / up
        else:
            a, b, p = peak, end, (t - up) / max(1, total - up)
        out.append(a + (b - a) * (1 - math.cos(math.pi * p)) / 2)
    return np.array(out)


@pytest.fixture(scope="module")
def shapes_task():
    data = td.data.load("shapes", n=48, size=16, seed=0)
    return td.tasks.get("multilabel-classification")(data)


def _learner(task, backbone, callbacks=(), **options):
    return Learner.from_task(task, backbone=backbone, backbone_options=options, batch_size=16, seed=0,
                             rule=O.chain(O.adam(), O.scale_lr(1e-3)), callbacks=callbacks)


@pytest.mark.parametrize("backbone,options", [("small_cnn", {"width": 8}), ("resnet18", {})])
def test_frozen_phase_keeps_backbone_bit_identical_and_moves_the_head(shapes_task, backbone, options):
    torch.manual_seed(0)
    probe = HeadMoved()
    learner = _learner(shapes_task, backbone, [probe], **options)
    before_bb = {k: v.detach().clone() for k, v in learner.model.backbone.named_parameters()}
    before_head = {k: v.detach().clone() for k, v in learner.model.head.named_parameters()}
    steps = len(learner.loaders["train"])
    fine_tune(learner, 1, freeze_epochs=1, base_lr=1e-2)
    frozen = probe.snapshots[:steps]
    assert len(frozen) == steps
    for bb, head in frozen:
        assert all(torch.equal(bb[k], before_bb[k]) for k in before_bb)
        assert any(not torch.equal(head[k], before_head[k]) for k in before_head)
    # thawed afterwards: the backbone learns in the second phase, and gradients flow again
    after = dict(learner.model.backbone.named_parameters())
    assert any(not torch.equal(after[k].detach(), before_bb[k]) for k in before_bb)
    assert all(p.requires_grad for p in learner.model.parameters())


def test_adam_state_of_the_head_survives_the_unfreeze(shapes_task):
    learner = _learner(shapes_task, "small_cnn", width=8)
    seen = {}

    class Peek(Callback):
        reads = ("optimizer", "epoch")

        def fit_end(self, state):
            seen.setdefault("opt", state.optimizer)

    learner.add_callback(Peek())
    fine_tune(learner, 1, freeze_epochs=1)
    assert seen["opt"] is learner.optimizer  # one optimiser across both phases, not rebuilt at the unfreeze


@pytest.mark.parametrize("backbone,options,n_groups", [("small_cnn", {"width": 8}, 2), ("resnet18", {}, 3)])
def test_each_group_follows_its_own_one_cycle(shapes_task, backbone, options, n_groups):
    log = LrLog()
    learner = _learner(shapes_task, backbone, [log], **options)
    per_epoch = len(learner.loaders["train"])
    base_lr, lr_mult, epochs = 4e-3, 100.0, 2
    plan = fine_tune(learner, epochs, base_lr=base_lr, lr_mult=lr_mult, freeze_epochs=1,
                     backbone_groups=n_groups - 1)
    assert len(learner.optimizer.param_groups) == n_groups == len(plan.groups)
    rows = np.array(log.rows)
    assert rows.shape == (per_epoch * (1 + epochs), n_groups)
    # phase 1: the head's cycle, fastai's pct_start 0.99 and div 25
    head = fastai_one_cycle(base_lr, per_epoch, 0.99, 25.0, 1e5)
    np.testing.assert_allclose(rows[:per_epoch, -1], head, rtol=1e-12)
    # phase 2: peaks geometric from base_lr/2/lr_mult (first backbone group) to base_lr/2 (head)
    peaks = np.geomspace(base_lr / 2 / lr_mult, base_lr / 2, n_groups)
    np.testing.assert_allclose(plan.unfrozen_peaks, peaks, rtol=1e-12)
    for g in range(n_groups):
        expected = fastai_one_cycle(peaks[g], per_epoch * epochs, 0.3, 5.0, 1e5)
        np.testing.assert_allclose(rows[per_epoch:, g], expected, rtol=1e-12)


def test_groups_cover_every_parameter_once_in_order():
    data = td.data.load("shapes", n=8, size=16)
    model = td.tasks.get("multilabel-classification")(data).build_model("resnet18")
    groups = layer_groups(model, 2)
    names = [n for n, _ in model.named_parameters()]
    flat = [n for ns in groups.values() for n in ns]
    assert flat == names  # backbone first (earliest stages first), the head last
    assert list(groups)[-1] == "head.*"
    # a partition of the model by these patterns assigns the same names
    opt = O.Optimizer(model.named_parameters(), O.partition({p: O.sgd() for p in groups}))
    by_group = [g["param_names"] for g in opt.param_groups]
    assert by_group == list(groups.values())


def test_lr_without_unfreeze_div_reaches_base_lr_at_the_head(shapes_task):
    log = LrLog()
    learner = _learner(shapes_task, "small_cnn", [log], width=8)
    plan = fine_tune(learner, 1, base_lr=1e-3, freeze_epochs=0, unfreeze_div=1.0, lr_mult=10.0, backbone_groups=1)
    assert plan.unfrozen_peaks == pytest.approx((1e-4, 1e-3))
    assert max(r[-1] for r in log.rows) == pytest.approx(1e-3, rel=0.05)


@pytest.mark.parametrize("field,value", [("epochs", 0), ("freeze_epochs", -1), ("base_lr", 0.0), ("lr_mult", 0.5),
                                         ("pct_start", 1.0), ("backbone_groups", 0), ("div", float("nan")),
                                         ("epochs", True)])
def test_bad_arguments_name_the_argument(shapes_task, field, value):
    learner = _learner(shapes_task, "small_cnn", width=8)
    kwargs = {"epochs": 1, field: value}
    epochs = kwargs.pop("epochs")
    with pytest.raises(ValueError, match=rf"fine_tune: {field} must be .*got {value!r}"):
        fine_tune(learner, epochs, **kwargs)


def test_a_model_without_a_head_is_refused():
    from tests.train._tiny import tiny_learner
    with pytest.raises(ValueError, match=r"\.backbone and \.head"):
        fine_tune(tiny_learner(), 1)
