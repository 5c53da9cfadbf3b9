"""Per-param-group schedules in the tree editor, and the plot's axes, overlays, thinning and marker.

References are independent of the panel: closed forms written out here, torch's
CosineAnnealingLR, and the engine's Scheduler planning a real optimiser's param groups."""

from __future__ import annotations

import html

import numpy as np
import pytest
import torch

from torchdeck import optim as O
from torchdeck import schedules as S
from torchdeck.spec import Experiment
from torchdeck.widgets import SchedulePanel, StudioState

LR = "lr"
BACKBONE, HEAD = "backbone.*", "head.*"
SEG0, SEG1 = (("schedules", 0),), (("schedules", 1),)
# Two named param groups, as the digits model names its parameters (backbone.*, head.*).
GROUPS = {"partition": {BACKBONE: {"chain": [{"momentum": {}}, {"scale_lr": {"lr": 0.01}}]},
                        HEAD: {"chain": ["adam", {"scale_lr": {"lr": 3e-3}}]}}}


def _panel(spec: Experiment | None = None, **kwargs) -> tuple[StudioState, SchedulePanel]:
    state = StudioState(spec if spec is not None else Experiment.from_dict({"optim": GROUPS}))
    return state, SchedulePanel(state, **kwargs)


def _trace(panel: SchedulePanel, name: str) -> tuple[np.ndarray, np.ndarray]:
    trace = next(t for t in panel.figure.data if t.name == name)
    return np.asarray(trace.x), np.asarray(trace.y)


def _shown(w) -> str:
    return html.unescape(w.value)


def _roots(panel: SchedulePanel) -> set:
    return {key for key, path in panel.tree.rows if path == ()}


def _default_lr(t: np.ndarray, total: int, top: float = 3e-3) -> np.ndarray:
    """The default lr written out: a ramp 3e-4 -> top over 50 steps, then half a cosine top -> 1e-5
    over the rest of the run."""
    rest = total - 50
    cos = 1e-5 + (top - 1e-5) * (1 + np.cos(np.pi * np.minimum(t - 50, rest) / rest)) / 2
    return np.where(t < 50, 3e-4 + (top - 3e-4) * t / 50, cos)


def test_the_toggle_splits_one_schedule_into_one_tree_per_named_group():
    state, panel = _panel(Experiment())  # one unnamed param group: nothing to split into
    section = panel.tree.hypers[LR]
    assert section.per_group.disabled and not section.per_group.value
    assert not panel.tree.split_groups(LR)
    assert "the optimiser has no named param groups" in _shown(section.error) and LR in state.spec.schedules

    assert state.edit(optim=GROUPS)  # a partition names the groups: the toggle lists and offers them
    section = panel.tree.hypers[LR]
    assert not section.per_group.disabled and _shown(section.groups) == "groups: 'backbone.*', 'head.*'"
    shared = state.spec.schedules[LR]
    shared_rows = {path for key, path in panel.tree.rows if key == LR}

    section.per_group.value = True  # as a person ticking it
    assert state.error == ""
    assert state.spec.schedules[LR] == {BACKBONE: shared, HEAD: shared}  # each starts as a copy
    assert _roots(panel) == {(LR, BACKBONE), (LR, HEAD)}
    for group in (BACKBONE, HEAD):  # the same tree, node for node, under each group
        assert {path for key, path in panel.tree.rows if key == (LR, group)} == shared_rows
    assert panel.tree.hypers[LR].per_group.value and set(panel.tree.hypers[LR].keep_buttons) == {BACKBONE, HEAD}
    # The plot draws one curve per group, both still the shared schedule.
    total = state.total_steps()
    names = [t.name for t in panel.figure.data]
    assert names[:3] == [f"{LR} [{BACKBONE}]", f"{LR} [{HEAD}]", "epochs"]
    for group in (BACKBONE, HEAD):
        xs, ys = _trace(panel, f"{LR} [{group}]")
        np.testing.assert_allclose(ys, _default_lr(xs, total), rtol=1e-12)


def test_editing_one_groups_lr_changes_only_that_groups_curve():
    state, panel = _panel()
    assert panel.tree.split_groups(LR)
    total = state.total_steps()
    backbone_before = _trace(panel, f"{LR} [{BACKBONE}]")

    # The peak of the head's warm-up and the start of its cosine, typed into its inputs.
    panel.tree.row((LR, HEAD), SEG0).fields["end"].value = 1e-2
    panel.tree.row((LR, HEAD), SEG1).fields["start"].value = 1e-2
    assert state.error == ""
    assert state.spec.schedules[LR][HEAD]["sequence"]["schedules"][0]["linear"]["end"] == 1e-2
    assert state.spec.schedules[LR][BACKBONE]["sequence"]["schedules"][0]["linear"]["end"] == 3e-3

    xs, ys = _trace(panel, f"{LR} [{HEAD}]")
    np.testing.assert_array_equal(xs, np.arange(total))  # a short run: every step plotted
    np.testing.assert_allclose(ys, _default_lr(xs, total, top=1e-2), rtol=1e-12)
    for before, after in zip(backbone_before, _trace(panel, f"{LR} [{BACKBONE}]")):
        np.testing.assert_array_equal(np.asarray(before), after)  # the other group's curve is untouched

    # torch's CosineAnnealingLR from the head's peak agrees with the cosine part of the curve.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - 50, eta_min=1e-5)
    reference = []
    for _ in range(total - 50):
        reference.append(opt.param_groups[0]["lr"])
        opt.step()
        cosine.step()
    np.testing.assert_allclose(ys[50:], reference, rtol=1e-9)

    # The engine's Scheduler, planning a real optimiser split by the same partition, sets these
    # values on the named groups: the plot shows what training will do.
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(3, 3), "head": torch.nn.Linear(3, 1)})
    opt = O.Optimizer(model.named_parameters(), state.spec.rule())
    planned = S.plan(opt, state.spec.schedule_objects(), total)[LR]
    by_name = dict(zip((g["name"] for g in opt.param_groups), planned))
    np.testing.assert_allclose(by_name[HEAD], ys, rtol=1e-12)
    np.testing.assert_allclose(by_name[BACKBONE], backbone_before[1], rtol=1e-12)


def test_a_spec_with_per_group_schedules_loads_as_the_same_trees():
    state, panel = _panel()
    assert panel.tree.split_groups(LR)
    assert panel.tree.change_type((LR, HEAD), SEG1, "triangle")
    assert panel.tree.add_after((LR, BACKBONE), SEG0)
    assert state.error == ""

    loaded, again = _panel(Experiment.parse_yaml(state.spec.to_yaml()))
    assert loaded.spec == state.spec
    assert set(again.tree.rows) == set(panel.tree.rows)
    for (key, path), row in panel.tree.rows.items():
        other = again.tree.row(key, path)
        assert other.type_picker.value == row.type_picker.value
        assert {n: w.value for n, w in other.fields.items()} == {n: w.value for n, w in row.fields.items()}
        assert (other.length and other.length.value) == (row.length and row.length.value)
    assert again.tree.hypers[LR].per_group.value
    assert [t.name for t in again.figure.data] == [t.name for t in panel.figure.data]


def test_a_bad_value_in_a_groups_tree_is_shown_in_place_and_the_spec_is_kept():
    state, panel = _panel()
    assert panel.tree.split_groups(LR)
    before = state.spec
    row = panel.tree.row((LR, HEAD), SEG0)
    row.fields["start"].value = -1.0
    message = "schedules.lr['head.*'].sequence.schedules[0].linear: start must be >= 0.0, got -1.0"
    assert state.error == message and _shown(row.error) == message
    assert state.spec == before and row.fields["start"].value == 3e-4  # the input shows the spec again
    assert panel.tree.row((LR, BACKBONE), SEG0).error.value == ""

    length = panel.tree.row((LR, BACKBONE), SEG0).length
    length.value = 0
    assert _shown(panel.tree.row((LR, BACKBONE), SEG0).error) == \
        "schedules.lr['backbone.*'].sequence: steps[0] must be a positive integer, got 0"
    assert state.spec == before and length.value == 50 and row.error.value == ""


def test_merging_needs_equal_schedules_or_one_group_to_keep():
    state, panel = _panel()
    section = panel.tree.hypers[LR]
    shared = state.spec.schedules[LR]
    section.per_group.value = True
    section = panel.tree.hypers[LR]
    section.per_group.value = False  # groups still equal: back to one tree
    assert state.spec.schedules[LR] == shared and _roots(panel) == {LR}

    assert panel.tree.split_groups(LR)
    assert panel.tree.set_field((LR, HEAD), SEG0, "end", 1e-2)
    before = state.spec
    section = panel.tree.hypers[LR]
    section.per_group.value = False  # they differ: which one would be lost is not guessed
    assert state.spec == before and section.per_group.value
    assert _shown(section.error) == state.error == (
        "schedules.lr: cannot merge, the schedules of groups 'backbone.*' and 'head.*' differ; keep one with "
        "its 'use for all groups' button (merge_groups('lr', keep=...))")
    assert not panel.tree.merge_groups(LR, keep="tail.*")
    assert state.error == "schedules.lr: no param group 'tail.*' to keep; groups: 'backbone.*', 'head.*'"

    section.keep_buttons[HEAD].click()  # keep the head's: one shared schedule, the head's
    assert state.error == "" and _roots(panel) == {LR}
    assert state.spec.schedules[LR] == before.schedules[LR][HEAD]
    assert not panel.tree.hypers[LR].per_group.value and panel.tree.hypers[LR].error.value == ""


def test_schedules_listed_by_group_position_are_edited_in_place():
    state, panel = _panel(Experiment.from_dict({"optim": GROUPS, "schedules": {LR: [0.01, 0.003]}}))
    assert _roots(panel) == {(LR, 0), (LR, 1)}
    assert panel.tree.set_field((LR, 1), (), "value", 0.002)
    assert state.spec.schedules[LR] == [{"constant": {"value": 0.01, "steps": None}},
                                        {"constant": {"value": 0.002, "steps": None}}]
    assert set(_trace(panel, f"{LR} [1]")[1]) == {0.002} and set(_trace(panel, f"{LR} [0]")[1]) == {0.01}
    assert not panel.tree.merge_groups(LR)
    assert panel.tree.merge_groups(LR, keep=0) and state.spec.schedules[LR] == {"constant": {"value": 0.01,
                                                                                           "steps": None}}


def test_thinned_per_group_curves_keep_the_exact_extremes_of_every_step():
    # A short plot budget thins the 184-step run as a 100 000-step run is thinned at 2000 points;
    # the peaks (one step each, every 46 steps) fall between evenly spaced samples.
    state, panel = _panel(max_points=16)
    assert panel.tree.split_groups(LR)
    total = state.total_steps()
    assert panel.tree.change_type((LR, HEAD), (), "triangle")
    assert panel.tree.set_field((LR, HEAD), (), "period", 46)
    assert panel.tree.set_field((LR, HEAD), (), "l0", 1e-4)
    assert panel.tree.set_field((LR, HEAD), (), "l1", 3e-3)
    xs, ys = _trace(panel, f"{LR} [{HEAD}]")
    assert len(xs) <= 16 < total and xs[0] == 0 and xs[-1] == total - 1

    t = np.arange(total)  # ParameterSchedulers' Triangle, written out: l0 at t = 0, l1 at period / 2
    full = 2.9e-3 * (2 / np.pi) * np.abs(np.arcsin(np.sin(np.pi * t / 46))) + 1e-4
    np.testing.assert_allclose(ys, full[xs], rtol=1e-12)
    assert ys.min() == pytest.approx(full.min(), rel=1e-12) and ys.max() == pytest.approx(full.max(), rel=1e-12)
    # ... at the steps where they happen (the curve is not just rescaled to the right range).
    assert np.isin(np.flatnonzero(np.isclose(full, full.max(), rtol=1e-12, atol=0)), xs).any()
    assert np.isin(np.flatnonzero(np.isclose(full, full.min(), rtol=1e-12, atol=0)), xs).any()


def test_momentum_is_overlaid_on_a_second_axis_under_an_epoch_axis_with_the_run_marker():
    state, panel = _panel(Experiment.from_dict({"optim": {"chain": [{"momentum": {"rho": 0.9}},
                                                                     {"scale_lr": {"lr": 0.01}}]}}))
    assert panel.tree.add_hyper("rho")
    assert panel.tree.change_type("rho", (), "linear")
    total, per_epoch = state.total_steps(), state.steps_per_epoch()
    lr, rho = (next(t for t in panel.figure.data if t.name == n) for n in (LR, "rho"))
    assert lr.yaxis == "y" and rho.yaxis == "y2" and panel.figure.layout.yaxis2.overlaying == "y"
    assert panel.figure.layout.yaxis2.title.text == "rho" and panel.figure.layout.yaxis2.side == "right"
    # Epochs on top, on the steps' scale: epoch e sits above step e * steps_per_epoch.
    layout = panel.figure.layout
    assert layout.xaxis2.side == "top" and layout.xaxis2.overlaying == "x"
    assert tuple(layout.xaxis.range) == (0, total - 1)
    assert tuple(layout.xaxis2.range) == pytest.approx((0, (total - 1) / per_epoch))

    panel.current_step = 77  # as the trainer would set it
    rho_now = np.asarray(next(t for t in panel.figure.data if t.name == "rho now").y)
    lr_now = np.asarray(next(t for t in panel.figure.data if t.name == f"{LR} now").y)
    assert layout.shapes[0].visible and layout.shapes[0].x0 == 77
    assert rho_now[0] == pytest.approx(S.schedule_from_spec(state.spec.schedules["rho"]).fit_to(total)(77))
    assert lr_now[0] == pytest.approx(_default_lr(np.array([77]), total)[0], rel=1e-12)
