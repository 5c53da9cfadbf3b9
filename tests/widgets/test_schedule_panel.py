"""The schedule panel in the kernel: the tree editor edits the spec through its inputs, the plot
follows the spec exactly (checked against the closed forms written out here), and a real run
moves the step marker."""

from __future__ import annotations

import html
import time

import numpy as np
import pytest
import yaml

from torchdeck import schedules as S
from torchdeck.spec import Experiment
from torchdeck.widgets import Studio

LR = "lr"
SEG0, SEG1, SEG2 = (("schedules", 0),), (("schedules", 1),), (("schedules", 2),)


@pytest.fixture(scope="module")
def studio() -> Studio:
    s = Studio()  # one Studio for the module: building the digits task takes a second or more
    yield s
    run = s.monitor.run
    if run is not None and not run.done:
        run.stop()
        run.join(30)


@pytest.fixture
def studio_at_default(studio: Studio) -> Studio:
    studio.state.spec = Experiment()
    studio.state.error = ""
    studio.schedule_panel.tree.errors.clear()
    studio.schedule_panel.tree.show()
    return studio


@pytest.fixture
def panel(studio_at_default: Studio):
    return studio_at_default.schedule_panel


def _shown(w) -> str:
    return html.unescape(w.value)


def _trace(panel, name: str):
    return next(t for t in panel.figure.data if t.name == name)


def _planned(spec: Experiment, key: str, total: int) -> S.Schedule:
    return S.schedule_from_spec(spec.schedules[key]).fit_to(total)


def _triangle(t: np.ndarray, l0: float, l1: float, period: int) -> np.ndarray:
    # ParameterSchedulers' Triangle on 0-based steps: the minimum at t = 0, the maximum at period/2.
    return abs(l0 - l1) * (2 / np.pi) * np.abs(np.arcsin(np.sin(np.pi * t / period))) + min(l0, l1)


def test_editing_a_value_changes_the_spec_and_the_plotted_curve(studio_at_default):
    state, panel = studio_at_default.state, studio_at_default.schedule_panel
    lr = S.Sequence([S.Linear(0.0, 3e-3, steps=50), S.Triangle(1e-4, 3e-3, period=97)])
    assert state.edit(schedules={LR: lr.to_spec()}, **{"train.epochs": 200})
    total = state.total_steps()
    assert total > 2 * panel.max_points  # the curve is thinned

    box = panel.tree.row(LR, SEG1).fields["l1"]
    box.value = 2e-3  # as a person typing into the input
    assert state.spec.schedules[LR]["sequence"]["schedules"][1] == {"triangle": {"l0": 1e-4, "l1": 2e-3, "period": 97}}
    assert state.error == ""

    trace = _trace(panel, LR)
    xs, ys = np.asarray(trace.x), np.asarray(trace.y)
    assert len(xs) <= panel.max_points and xs[0] == 0 and xs[-1] == total - 1
    # The plotted points are the new spec's values at the plotted steps ...
    np.testing.assert_array_equal(ys, _planned(state.spec, LR, total).values(xs))
    # ... which are the closed forms: a ramp to 3e-3 over 50 steps, then the triangle wave.
    every = np.arange(total)
    expected = np.where(every < 50, 3e-3 * every / 50, _triangle(every - 50.0, 1e-4, 2e-3, 97))
    np.testing.assert_allclose(ys, expected[xs.astype(int)], rtol=1e-9, atol=1e-15)
    # Thinning keeps the extremes exactly: every trough of the wave and the top of the ramp.
    assert ys.max() == pytest.approx(expected.max(), rel=1e-12) and ys[0] == 0.0
    assert ys[xs >= 50].min() == pytest.approx(expected[50:].min(), rel=1e-12) == 1e-4
    assert xs[np.argmax(ys)] in set(np.flatnonzero(np.isclose(expected, expected.max(), rtol=1e-12)))
    # The code and YAML views follow the edit too.
    assert "S.Triangle(l0=0.0001, l1=0.002, period=97)" in panel.python.value


def test_changing_a_type_keeps_what_can_be_kept(studio_at_default):
    state, panel = studio_at_default.state, studio_at_default.schedule_panel
    total = state.total_steps()
    panel.tree.row(LR, SEG1).type_picker.value = "linear"
    seq = state.spec.schedules[LR]["sequence"]
    # cos_anneal(start=3e-3, end=1e-5, open) -> linear with the same start and end, still spanning
    # the rest of the run; the first segment and the lengths are untouched.
    assert seq == {"schedules": [{"linear": {"start": 3e-4, "end": 3e-3, "steps": 50}},
                                 {"linear": {"start": 3e-3, "end": 1e-5, "steps": None}}]}
    ys = np.asarray(_trace(panel, LR).y)
    t = np.asarray(_trace(panel, LR).x)
    rest = total - 50
    expected = np.where(t < 50, 3e-4 + (3e-3 - 3e-4) * t / 50, 3e-3 + (1e-5 - 3e-3) * np.minimum((t - 50) / rest, 1))
    np.testing.assert_allclose(ys, expected, rtol=1e-12)
    assert panel.tree.row(LR, SEG1).type_picker.value == "linear"

    # A leaf or a sequence turned wrapper wraps the old node; a wrapper turned wrapper keeps its child.
    before = state.spec.schedules[LR]
    panel.tree.row(LR).type_picker.value = "warmup"
    warm = state.spec.schedules[LR]["warmup"]
    assert warm["schedule"] == before and warm["start"] == 0.0 and 1 <= warm["steps"] < total
    panel.tree.row(LR).type_picker.value = "loop"
    assert state.spec.schedules[LR]["loop"]["schedule"] == before
    assert set(panel.tree.rows) == {(LR, ()), (LR, (("schedule", None),)), (LR, (("schedule", None), *SEG0)),
                                    (LR, (("schedule", None), *SEG1))}
    np.testing.assert_array_equal(np.asarray(_trace(panel, LR).y),
                                  _planned(state.spec, LR, total).values(np.asarray(_trace(panel, LR).x)))


def test_segments_are_added_and_removed_with_consistent_lengths(studio_at_default):
    state, panel = studio_at_default.state, studio_at_default.schedule_panel
    total = state.total_steps()
    default = state.spec.schedules[LR]

    def lengths() -> tuple:
        seq = S.schedule_from_spec(state.spec.schedules[LR])
        assert len(seq.steps) == len(seq.schedules)
        return seq.steps

    panel.tree.row(LR, SEG0).add_button.click()  # a copy of the 50-step warm-up after it
    assert lengths() == (50, 50, None)
    assert "steps" not in state.spec.schedules[LR]["sequence"]  # each length is written once, in its segment
    assert [panel.tree.row(LR, p).length.value for p in (SEG0, SEG1, SEG2)] == [50, 50, ""]
    t = np.asarray(_trace(panel, LR).x)
    np.testing.assert_array_equal(np.asarray(_trace(panel, LR).y), _planned(state.spec, LR, total).values(t))

    # After the open last segment: the two share what is left of the run.
    panel.tree.row(LR, SEG2).add_button.click()
    rest = total - 100
    assert lengths() == (50, 50, rest // 2, None)
    assert S.schedule_from_spec(state.spec.schedules[LR]).fit_to(total).steps[-1] == rest - rest // 2

    # Removing the open last segment gives the rest of the run back to the one before it.
    panel.tree.row(LR, (("schedules", 3),)).remove_button.click()
    assert lengths() == (50, 50, None)
    panel.tree.row(LR, SEG1).remove_button.click()
    assert state.spec.schedules[LR] == default

    # A segment's length goes into the field that holds it (linear.steps), not into a second list.
    panel.tree.row(LR, SEG0).length.value = 80
    assert state.spec.schedules[LR]["sequence"]["schedules"][0]["linear"]["steps"] == 80
    assert lengths() == (80, None)
    t = np.asarray(_trace(panel, LR).x)
    ys = np.asarray(_trace(panel, LR).y)
    assert ys[t == 80][0] == pytest.approx(3e-3) and ys[t == 79][0] < 3e-3  # the ramp now peaks at step 80

    # The only segment cannot be removed (its button is off, and the edit is refused).
    panel.tree.row(LR, SEG1).remove_button.click()
    assert lengths() == (None,) and panel.tree.row(LR, SEG0).remove_button.disabled
    assert state.spec.schedules[LR]["sequence"]["schedules"] == [{"linear": {"start": 3e-4, "end": 3e-3, "steps": None}}]
    assert not panel.tree.remove(LR, SEG0)
    assert "at least one segment" in _shown(panel.tree.row(LR, SEG0).error)


def test_a_bad_value_is_shown_in_place_and_the_spec_is_kept(studio_at_default):
    state, panel = studio_at_default.state, studio_at_default.schedule_panel
    before = state.spec
    row = panel.tree.row(LR, SEG0)
    row.fields["start"].value = -1.0
    message = "schedules.lr.sequence.schedules[0].linear: start must be >= 0.0, got -1.0"
    assert state.error == message and _shown(row.error) == message
    assert state.spec == before
    assert row.fields["start"].value == 3e-4  # the input shows what the spec still holds
    assert _trace(panel, LR).y[0] == pytest.approx(3e-4)

    last = panel.tree.row(LR, SEG1)
    assert "period" not in last.fields  # the segment's length is edited in its length input
    last.length.value = "ten"
    assert _shown(last.error) == ("schedules.lr.sequence: steps[1] must be a whole number "
                                  "or empty (the rest of the run), got 'ten'")
    assert row.error.value == ""  # only the last refusal is shown
    assert state.spec == before and last.length.value == ""

    row.length.value = 0
    assert _shown(row.error) == "schedules.lr.sequence: steps[0] must be a positive integer, got 0"
    assert state.spec == before and row.length.value == 50

    last.length.value = "400"  # a good edit clears the message; the length goes into cos_anneal.period
    assert state.spec.schedules[LR]["sequence"]["schedules"][1]["cos_anneal"]["period"] == 400
    assert last.error.value == "" and row.error.value == "" and state.error == ""


def test_a_hyperparameter_of_the_rule_is_added_and_removed(studio_at_default):
    state, panel = studio_at_default.state, studio_at_default.schedule_panel
    tree = panel.tree
    assert list(tree.hyper_picker.options) == [h for h in state.spec.rule().hyper() if h != LR]
    tree.hyper_picker.value = "b1"
    tree.add_hyper_button.click()
    b1 = state.spec.rule().hyper()["b1"]
    assert state.spec.schedules["b1"] == {"constant": {"value": b1, "steps": None}}
    trace = _trace(panel, "b1")
    assert trace.yaxis == "y2" and set(trace.y) == {b1} and len(trace.x) == state.total_steps()
    assert "b1" not in tree.hyper_picker.options and (("b1", ())) in tree.rows

    tree.row("b1").type_picker.value = "cos_anneal"
    assert state.spec.schedules["b1"] == {"cos_anneal": {"start": b1, "end": 0.0, "period": None, "restart": False}}
    # A learner built from the spec sets b1 from this schedule: its first step uses start.
    assert _trace(panel, "b1").y[0] == pytest.approx(b1) and _trace(panel, "b1").y[-1] < 1e-3

    tree.remove_hyper("b1")
    assert "b1" not in state.spec.schedules and "b1" in tree.hyper_picker.options
    assert [t.name for t in panel.figure.data] == [LR, "epochs", f"{LR} now"]


def test_the_python_and_yaml_views_rebuild_the_spec(studio_at_default):
    state, panel = studio_at_default.state, studio_at_default.schedule_panel
    panel.tree.row(LR).type_picker.value = "warmup"
    panel.tree.add_hyper("b1")
    panel.tree.row("b1").type_picker.value = "multi_step"
    panel.tree.set_length(LR, (("schedule", None), *SEG1), 700)
    code = html.unescape(panel.python.value.removeprefix("<pre>").removesuffix("</pre>"))
    scope: dict = {}
    exec(code, scope)
    assert {k: s.to_spec() for k, s in scope["schedules"].items()} == state.spec.schedules
    text = html.unescape(panel.yaml.value.removeprefix("<pre>").removesuffix("</pre>"))
    assert Experiment.parse_yaml(text).schedules == state.spec.schedules == yaml.safe_load(text)["schedules"]


def _wait(pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_the_marker_follows_a_real_run_to_its_last_step(studio_at_default):
    studio = studio_at_default
    panel, mon = studio.schedule_panel, studio.monitor
    mon.epochs.value = 1
    moves: list[int] = []
    panel.observe(lambda ch: moves.append(ch["new"]), "current_step")  # called on the trainer thread
    t0 = time.monotonic()
    run = mon.start()
    assert run is not None and run.join(120) and run.status == "finished", run.traceback
    elapsed = time.monotonic() - t0
    history = run.learner.history

    last = history.steps[-1]
    assert last == studio.state.steps_per_epoch() - 1  # 0-based: the step the schedules saw
    started = moves[moves.index(-1) + 1:] if -1 in moves else moves
    assert started and started == sorted(started) and started[-1] == last
    assert len(moves) <= elapsed / mon.redraw_interval + 4  # throttled with the monitor's redraws
    shape = panel.figure.layout.shapes[0]
    assert shape.visible and shape.x0 == shape.x1 == last
    lr_marker = _trace(panel, f"{LR} now")
    assert list(lr_marker.x) == [last]
    # The point sits on the curve, at the lr the optimiser really had at that step.
    assert lr_marker.y[0] == pytest.approx(history.lrs[-1], rel=1e-12)

    time.sleep(0.3)  # the run is over: the marker stays where it ended
    assert panel.current_step == last and panel.figure.layout.shapes[0].x0 == last
    panel.tree.set_field(LR, SEG0, "end", 2e-3)  # and stays on the redrawn curve
    assert list(_trace(panel, f"{LR} now").x) == [last]
    assert _trace(panel, f"{LR} now").y[0] == pytest.approx(_planned(studio.spec, LR, studio.state.total_steps())(last))


def test_the_marker_stays_at_the_last_step_of_a_stopped_run(studio_at_default):
    studio = studio_at_default
    panel, mon = studio.schedule_panel, studio.monitor
    mon.epochs.value = 500
    run = mon.start()
    _wait(lambda: run.learner.state.step >= 5)
    mon.stop()
    assert run.join(30) and run.status == "stopped"
    assert panel.current_step == run.learner.history.steps[-1] >= 4
    assert panel.figure.layout.shapes[0].x0 == panel.current_step


def test_schedules_per_param_group_are_plotted_and_edited_per_group():
    from torchdeck import Experiment
    from torchdeck.schedules import Linear
    from torchdeck.widgets import Studio

    spec = Experiment.from_dict({
        "optim": {"partition": {"*.bias": "adam", "*": "adamw"}},
        "schedules": {"lr": {"*.bias": 0.1, "*": {"linear": {"start": 0.0, "end": 1e-3, "steps": 10}}}}})
    studio = Studio(spec)
    panel = studio.schedule_panel
    assert studio.state.error == ""
    traces = {t.name: t for t in panel.figure.data}
    assert {"lr [*.bias]", "lr [*]"} <= set(traces)
    xs, ys = np.asarray(traces["lr [*]"].x), np.asarray(traces["lr [*]"].y)
    np.testing.assert_allclose(ys, Linear(0.0, 1e-3, steps=10).values(xs.astype(int)), rtol=0, atol=0)
    assert set(np.asarray(traces["lr [*.bias]"].y)) == {0.1}
    # Each group's schedule is its own tree, and its section says it is split per group.
    assert {key for key, path in panel.tree.rows if path == ()} == {("lr", "*.bias"), ("lr", "*")}
    assert panel.tree.hypers["lr"].per_group.value and not panel.tree.hypers["lr"].per_group.disabled
    assert panel.tree.row(("lr", "*")).fields["end"].value == 1e-3
    assert "'*.bias': S.Constant(value=0.1)" in panel.python.value.replace("&#x27;", "'")
