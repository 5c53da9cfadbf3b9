"""The optimiser playground: trajectories against torch.optim, the figure, edits, bad specs,
divergence, the animation and the link to the Studio's chain."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchdeck import optim as O
from torchdeck.widgets import Playground, StudioState
from torchdeck.widgets._playground import OBJECTIVES, parse_rule, trajectory, with_lr


def reference(make_opt, objective: str, start, steps: int, *, seed: int = 0, clip: float | None = None):
    """The path torch.optim takes on the same function, with autograd gradients (float64).

    Stops before the first point where the point or the function value is not finite; for
    noisy objectives the noise is drawn as the Objective's docstring says.
    """
    obj = OBJECTIVES[objective]
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make_opt([p])
    xi = obj.noise * torch.randn(steps, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    points = [p.detach().clone()]
    for t in range(steps):
        opt.zero_grad()
        loss = obj.value(p[0], p[1]) + (xi[t] * p).sum()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([p], clip)
        opt.step()
        with torch.no_grad():
            q = p.detach().clone()
            if not (torch.isfinite(q).all() and math.isfinite(obj.value(q[0].item(), q[1].item()))):
                return torch.stack(points).numpy(), t + 1
        points.append(q)
    return torch.stack(points).numpy(), None


# -- the test functions -------------------------------------------------------------------------
@pytest.mark.parametrize("name,x,y,expected", [
    ("rosenbrock", 1.0, 1.0, 0.0), ("rosenbrock", 0.0, 0.0, 1.0), ("rosenbrock", -1.0, 2.0, 104.0),
    ("beale", 3.0, 0.5, 0.0), ("beale", 0.0, 0.0, 1.5**2 + 2.25**2 + 2.625**2),
    ("saddle", 1.0, 2.0, -3.0), ("noisy_quadratic", 2.0, 1.0, 7.0),
])
def test_function_values_match_their_formulas(name, x, y, expected):
    obj = OBJECTIVES[name]
    assert obj.value(x, y) == pytest.approx(expected, abs=1e-12)
    assert obj.value(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)).item() == \
        pytest.approx(expected, abs=1e-12)


def test_hand_written_gradients_equal_autograd_for_every_registered_function():
    gen = torch.Generator().manual_seed(0)
    for name, obj in OBJECTIVES.items():
        for _ in range(20):
            lo = torch.tensor([obj.x_range[0], obj.y_range[0]], dtype=torch.float64)
            hi = torch.tensor([obj.x_range[1], obj.y_range[1]], dtype=torch.float64)
            p = (lo + (hi - lo) * torch.rand(2, generator=gen, dtype=torch.float64)).requires_grad_(True)
            g, = torch.autograd.grad(obj.value(p[0], p[1]), p)
            np.testing.assert_allclose(obj.gradient(p[0].item(), p[1].item()), g.numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=name)


# -- trajectories against torch.optim -------------------------------------------------------------
@pytest.mark.parametrize("text,lr,make_opt,objective", [
    ("sgd", 1e-3, lambda ps: torch.optim.SGD(ps, lr=1e-3), "rosenbrock"),
    ("momentum(0.9)", 1e-3, lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9), "rosenbrock"),
    ("adam", 0.1, lambda ps: torch.optim.Adam(ps, lr=0.1), "rosenbrock"),
    ("adam(b1=0.8)", 0.05, lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.8, 0.999)), "beale"),
    ("sgd", 0.01, lambda ps: torch.optim.SGD(ps, lr=0.01), "noisy_quadratic"),
    ("momentum(0.9)", 0.01, lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9), "saddle"),
])
def test_trajectories_equal_torch_optim(text, lr, make_opt, objective):
    obj = OBJECTIVES[objective]
    ours = trajectory(with_lr(parse_rule(text), lr), obj, obj.start, 200, seed=3)
    theirs, diverged = reference(make_opt, objective, obj.start, 200, seed=3)
    assert ours.diverged_at is None and diverged is None
    assert ours.xy.shape == (201, 2)
    np.testing.assert_allclose(ours.xy, theirs, rtol=1e-10, atol=1e-12)
    assert ours.final_value == pytest.approx(obj.value(*theirs[-1]), rel=1e-10, abs=1e-12)


def test_a_chain_with_clipping_equals_torch_clip_grad_norm_then_adam():
    # 120 steps: past ~100, this path grows a 1-ulp gradient difference (hand-written vs autograd)
    # by ~10x every 10 steps (1e-16 at step 100, 1e-10 at 148), the dynamics' own sensitivity.
    obj = OBJECTIVES["rosenbrock"]
    ours = trajectory(with_lr(parse_rule("clip_norm(1.0) → adam"), 0.05), obj, obj.start, 120)
    theirs, _ = reference(lambda ps: torch.optim.Adam(ps, lr=0.05), "rosenbrock", obj.start, 120, clip=1.0)
    np.testing.assert_allclose(ours.xy, theirs, rtol=1e-10, atol=1e-12)


def test_the_noise_seed_changes_the_path_and_is_reproducible():
    obj = OBJECTIVES["noisy_quadratic"]
    rule = with_lr(parse_rule("sgd"), 0.01)
    a, b, c = (trajectory(rule, obj, obj.start, 50, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.xy, b.xy)
    assert not np.allclose(a.xy, c.xy)


def test_divergence_stops_at_the_last_finite_point():
    obj = OBJECTIVES["rosenbrock"]
    ours = trajectory(with_lr(parse_rule("sgd"), 0.05), obj, obj.start, 200)
    theirs, diverged = reference(lambda ps: torch.optim.SGD(ps, lr=0.05), "rosenbrock", obj.start, 200)
    assert diverged is not None and ours.diverged_at == diverged
    assert np.isfinite(ours.xy).all() and len(ours.xy) == diverged
    np.testing.assert_allclose(ours.xy, theirs, rtol=1e-10, atol=1e-12)


# -- the chain text -------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", [
    O.adam(), O.momentum(rho=0.8, dampening=0.1), O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(3e-3)),
    O.chain(O.accumulate(3), O.rmsprop(centered=True, momentum=0.5), O.scale_lr(0.01)), O.adamw(decay=0.1),
    O.chain(O.weight_decay(1e-4), O.lion(b1=0.95), O.scale_lr(1e-4)),
])
def test_the_short_text_reads_back_what_str_and_to_code_print(rule):
    assert parse_rule(str(rule)) == rule
    assert parse_rule(rule.to_code()) == rule
    assert parse_rule(repr(rule.to_spec()).replace("'", "")) == rule  # the spec as a flow mapping


def test_an_unnamed_value_is_the_primary_or_first_field_and_lr_goes_where_schedules_put_it():
    assert parse_rule("clip_norm(0.5) -> momentum(0.8)") == O.chain(O.clip_norm(0.5), O.momentum(rho=0.8))
    assert with_lr(parse_rule("adam"), 0.1) == O.adam(lr=0.1)
    assert with_lr(parse_rule("adam, scale_lr(1.0)"), 0.1) == O.chain(O.adam(), O.scale_lr(0.1))
    assert with_lr(parse_rule("clip_norm(1.0)"), 0.1) == O.chain(O.clip_norm(1.0), O.scale_lr(0.1))


@pytest.mark.parametrize("text,message", [
    ("adamm", "chain: unknown rule 'adamm'; allowed:"),
    ("momentum(rho=1.5)", "chain.momentum: rho must be in [0.0, 1.0), got 1.5"),
    ("adam(b1=x)", "adam: b1: 'x' is not a number or true/false"),
    ("momentum(0.9, 0.1)", "momentum: only the first argument may be unnamed, got '0.1'"),
    ("momentum(0.9, rho=0.5)", "momentum: rho is given twice"),
    ("adam(", "chain: cannot read 'adam('"),
    ("", "chain: empty"),
])
def test_bad_chain_text_raises_a_value_error_that_says_what_is_wrong(text, message):
    with pytest.raises(ValueError) as e:
        parse_rule(text)
    assert str(e.value).startswith(message)


# -- the widget -----------------------------------------------------------------------------------
CHAINS = [("sgd", 1e-3), ("adam", 0.1), ("momentum(0.9)", 1e-3)]


@pytest.fixture
def playground() -> Playground:
    return Playground(CHAINS, steps=120, frame_interval=0.0)


def _xy(trace) -> np.ndarray:
    return np.column_stack([np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)]).reshape(-1, 2)


def test_the_figure_holds_the_contour_and_one_line_per_chain_from_construction(playground):
    fig = playground.figure
    assert [t.type for t in fig.data] == ["contour"] + ["scatter"] * 4
    obj = OBJECTIVES["rosenbrock"]
    xs, ys = np.asarray(fig.data[0].x), np.asarray(fig.data[0].y)
    gx, gy = np.meshgrid(xs, ys)
    f = obj.value(gx, gy)
    np.testing.assert_allclose(fig.data[0].z, np.log10(f - f.min() + 1e-3), rtol=1e-12)  # log levels
    for (text, lr), trace in zip(CHAINS, fig.data[1:]):
        make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=lr), "adam": lambda ps: torch.optim.Adam(ps, lr=lr),
                "momentum(0.9)": lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9)}[text]
        theirs, _ = reference(make, "rosenbrock", obj.start, 120)
        np.testing.assert_allclose(_xy(trace), theirs, rtol=1e-10, atol=1e-12)
        assert trace.showlegend and trace.name.startswith(f"{CHAINS.index((text, lr)) + 1}: {text}")
    off = fig.data[4]
    assert len(off.x) == 0 and off.showlegend is False  # the fourth slot is off


def test_an_edit_redraws_only_with_the_new_path(playground):
    before = [_xy(t) for t in playground.figure.data[1:]]
    playground.racers[1].lr.value = 0.02
    obj = OBJECTIVES["rosenbrock"]
    theirs, _ = reference(lambda ps: torch.optim.Adam(ps, lr=0.02), "rosenbrock", obj.start, 120)
    np.testing.assert_allclose(_xy(playground.figure.data[2]), theirs, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(_xy(playground.figure.data[1]), before[0])
    assert "lr 0.02" in playground.figure.data[2].name
    assert playground.redraw_ms > 0 and "redrawn in" in playground.info.value

    playground.racers[3].text.value = "nesterov"
    playground.racers[3].lr.value = 1e-3
    theirs, _ = reference(lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True), "rosenbrock",
                          obj.start, 120)
    np.testing.assert_allclose(_xy(playground.figure.data[4]), theirs, rtol=1e-10, atol=1e-12)

    playground.steps.value = 30
    assert [len(t.x) for t in playground.figure.data[1:]] == [31] * 4
    assert playground.frame.max == 30


def test_a_bad_chain_shows_its_error_in_place_and_the_others_keep_running(playground):
    kept = _xy(playground.figure.data[1])
    playground.racers[1].text.value = "adam(b1=1.5)"  # no exception reaches the kernel
    assert "adam: b1 must be in [0.0, 1.0), got 1.5" in playground.racers[1].status.value
    assert "td-racer-error" in playground.racers[1].status.value
    assert len(playground.figure.data[2].x) == 0 and playground.figure.data[2].showlegend is False
    np.testing.assert_array_equal(_xy(playground.figure.data[1]), kept)
    playground.racers[2].lr.value = -1.0
    assert "lr must be in [0.0, inf), got -1.0" in playground.racers[2].status.value
    # A rule that cannot run on one plain tensor stops its own slot only.
    playground.racers[0].text.value = "{partition: {'*': sgd}}"
    assert playground.racers[0].status.value.count("td-racer-error") == 1 and playground.results()[0] is None
    playground.racers[1].text.value = "adam"
    assert playground.results()[1] is not None and playground.errors()[1] == ""


def test_a_diverging_chain_stops_at_its_last_finite_point_and_says_so(playground):
    playground.racers[0].lr.value = 0.05
    obj = OBJECTIVES["rosenbrock"]
    theirs, diverged = reference(lambda ps: torch.optim.SGD(ps, lr=0.05), "rosenbrock", obj.start, 120)
    trace = playground.figure.data[1]
    assert diverged is not None and trace.name.endswith(f"diverged at step {diverged}")
    assert np.isfinite(_xy(trace)).all()
    np.testing.assert_allclose(_xy(trace), theirs, rtol=1e-10, atol=1e-12)
    assert f"diverged at step {diverged}" in playground.racers[0].status.value
    assert len(playground.figure.data[2].x) == 121  # the others run to the end


def test_another_function_redraws_the_contour_from_its_start(playground):
    playground.objective.value = "saddle"
    obj = OBJECTIVES["saddle"]
    assert (playground.x0.value, playground.y0.value) == obj.start
    fig = playground.figure
    gx, gy = np.meshgrid(np.asarray(fig.data[0].x), np.asarray(fig.data[0].y))
    np.testing.assert_allclose(fig.data[0].z, gx**2 - gy**2, atol=1e-12)  # linear levels
    assert list(fig.layout.xaxis.range) == list(obj.x_range)
    assert tuple(_xy(fig.data[1])[0]) == obj.start
    playground.x0.value = 0.5
    assert tuple(_xy(fig.data[1])[0]) == (0.5, obj.start[1])


def test_play_reveals_the_paths_step_by_step(playground):
    playground.frame.value = 10
    assert [len(t.x) for t in playground.figure.data[1:4]] == [11, 11, 11]
    shown = []
    playground.frame.observe(lambda ch: shown.append(ch["new"]), "value")
    playground.play().join(30)
    assert not playground.playing and playground.play_button.description == "Play"
    assert shown == sorted(shown) and shown[-1] == 120 and len(shown) > 2
    assert [len(t.x) for t in playground.figure.data[1:4]] == [121, 121, 121]


def test_the_studio_chain_races_in_the_first_slot_until_edited():
    state = StudioState()
    pg = Playground(state=state, steps=50)
    rule = state.spec.rule()
    assert pg.racers[0].text.value == str(rule) and pg.racers[0].lr.value == rule.hyper()["lr"]
    assert str(rule) in pg.racers[2].text.options
    assert state.edit(optim=O.chain(O.momentum(rho=0.8), O.scale_lr(2e-3)).to_spec())
    assert pg.racers[0].text.value == "momentum(rho=0.8) → scale_lr(2e-3)" and pg.racers[0].lr.value == 2e-3
    obj = OBJECTIVES["rosenbrock"]
    theirs, _ = reference(lambda ps: torch.optim.SGD(ps, lr=2e-3, momentum=0.8), "rosenbrock", obj.start, 50)
    np.testing.assert_allclose(_xy(pg.figure.data[1]), theirs, rtol=1e-10, atol=1e-12)
    pg.racers[0].text.value = "adam"  # edited: no longer follows
    assert state.edit(optim=O.chain(O.adam(), O.scale_lr(1e-3)).to_spec())
    assert pg.racers[0].text.value == "adam"


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match=r"chains: at most 4 racers, got 5"):
        Playground([("sgd", 0.1)] * 5)
    with pytest.raises(ValueError, match=r"unknown objective 'himmelblau'; allowed: beale, noisy_quadratic"):
        Playground(objective="himmelblau")
    with pytest.raises(ValueError, match=r"steps: must be an int in \[1, 5000\], got 0"):
        Playground(steps=0)


def test_the_seed_redraws_a_noisy_race_with_the_references_noise(playground):
    playground.objective.value = "noisy_quadratic"
    playground.seed.value = 7
    obj = OBJECTIVES["noisy_quadratic"]
    theirs, _ = reference(lambda ps: torch.optim.Adam(ps, lr=0.1), "noisy_quadratic", obj.start, 120, seed=7)
    np.testing.assert_allclose(_xy(playground.figure.data[2]), theirs, rtol=1e-10, atol=1e-12)
