"""The optimiser playground: up to four chains race on a 2-D test function.

Every racer runs through the real rule API — ``rule.init`` and ``rule.update_`` on one
2-element float64 parameter — so what is drawn is what the rule does in training. The
trajectories are drawn over the function's contour and revealed step by step.

Speed: a redraw after an edit must land within ~150 ms, in the kernel and in the browser.
- The gradient comes from a hand-written formula on Python floats (tests check it against
  autograd of ``value``): autograd on a 2-element tensor costs several times the rule's update.
- Only the racer that was edited is recomputed, and only its trace is sent.
- Paths are lines without markers: plotly.js restyles every marker point on each update,
  which tripled the browser's share (about 160 ms -> 50 ms per edit, measured in Chromium).
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
import threading
import time
from typing import Any, Callable, Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
import yaml

from torchdeck import optim
from torchdeck._registry import Registry
from torchdeck.spec import _Loader as SpecLoader  # the spec files' YAML rules (1e-3 is a float), not a copy
from torchdeck.widgets._chain_panel import addable_rules
from torchdeck.widgets._figure import LiveFigure
from torchdeck.widgets._state import StudioState

__all__ = ["Playground", "Objective", "OBJECTIVES", "register_objective", "Trajectory", "trajectory",
           "parse_rule", "with_lr", "MAX_RACERS"]

MAX_RACERS = 4
# One colour per racer slot, so a slot's status line and its line in the plot match.
COLOURS = ("#d62728", "#1f77b4", "#ff7f0e", "#9467bd")


# -- test functions -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Objective:
    """A 2-D test function.

    ``value(x, y)`` is written with ``+ - *`` only, so it takes floats or torch tensors
    (broadcasting: the contour grid, autograd references). ``grad(x, y)`` is its gradient on
    floats; ``None`` falls back to autograd (slower). With ``noise > 0`` the racers see the
    stochastic objective ``value(p) + xi_t . p`` at step ``t``, where ``xi`` is
    ``noise * torch.randn(steps, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)``
    (the same draws for every racer: a fair race).
    """

    name: str
    value: Callable[[Any, Any], Any]
    grad: Callable[[float, float], tuple[float, float]] | None
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    start: tuple[float, float]
    minimum: tuple[float, float] | None = None
    log_levels: bool = False  # contour of log10(f - min f): for valleys whose floor spans decades
    noise: float = 0.0
    help: str = ""

    def gradient(self, x: float, y: float) -> tuple[float, float]:
        if self.grad is not None:
            return self.grad(x, y)
        p = torch.tensor((x, y), dtype=torch.float64, requires_grad=True)
        g, = torch.autograd.grad(self.value(p[0], p[1]), p)
        return g[0].item(), g[1].item()

    def noise_draws(self, steps: int, seed: int) -> list[list[float]] | None:
        """The gradient noise ``xi`` (steps x 2), or ``None`` for an exact gradient."""
        if self.noise == 0.0:
            return None
        gen = torch.Generator().manual_seed(seed)
        return (self.noise * torch.randn(steps, 2, generator=gen, dtype=torch.float64)).tolist()

    def grid(self, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``xs`` (n), ``ys`` (n) and the contour's ``z`` (n x n, row = y)."""
        xs = torch.linspace(*self.x_range, n, dtype=torch.float64)
        ys = torch.linspace(*self.y_range, n, dtype=torch.float64)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        z = self.value(gx, gy)
        if self.log_levels:
            # Offset so the floor maps to ~-3, not -inf; levels then space evenly by decades.
            z = torch.log10(z - z.min() + 1e-3)
        return xs.numpy(), ys.numpy(), z.numpy()


OBJECTIVES = Registry("objective")


def _title(obj: Objective) -> str:
    return f"{obj.name}: {html.escape(obj.help)}"


def _z_label(obj: Objective) -> str:
    return "log10 f" if obj.log_levels else "f"


def _hover(obj: Objective) -> str:
    return f"x=%{{x:.2f}} y=%{{y:.2f}}<br>{_z_label(obj)}=%{{z:.3g}}<extra></extra>"


def register_objective(objective: Objective) -> Objective:
    return OBJECTIVES.register(objective.name)(objective)


def _rosenbrock(x: Any, y: Any) -> Any:
    return (1 - x) * (1 - x) + 100 * (y - x * x) * (y - x * x)


def _rosenbrock_grad(x: float, y: float) -> tuple[float, float]:
    r = y - x * x
    return -2 * (1 - x) - 400 * x * r, 200 * r


def _beale(x: Any, y: Any) -> Any:
    a, b, c = 1.5 - x + x * y, 2.25 - x + x * y * y, 2.625 - x + x * y * y * y
    return a * a + b * b + c * c


def _beale_grad(x: float, y: float) -> tuple[float, float]:
    y2, y3 = y * y, y * y * y
    a, b, c = 1.5 - x + x * y, 2.25 - x + x * y2, 2.625 - x + x * y3
    return (2 * a * (y - 1) + 2 * b * (y2 - 1) + 2 * c * (y3 - 1),
            2 * a * x + 4 * b * x * y + 6 * c * x * y2)


register_objective(Objective(
    "rosenbrock", _rosenbrock, _rosenbrock_grad, (-2.0, 2.0), (-1.0, 3.0), (-1.5, 2.5), minimum=(1.0, 1.0),
    log_levels=True, help="(1-x)² + 100(y-x²)²: a curved, flat-bottomed valley"))
register_objective(Objective(
    "beale", _beale, _beale_grad, (-4.5, 4.5), (-4.5, 4.5), (1.0, 1.5), minimum=(3.0, 0.5), log_levels=True,
    help="sharp ridges and flat plateaus; minimum at (3, 0.5)"))
register_objective(Objective(
    "saddle", lambda x, y: x * x - y * y, lambda x, y: (2 * x, -2 * y), (-2.0, 2.0), (-2.0, 2.0), (-1.8, 1e-3),
    help="x² - y²: a saddle at the origin, unbounded along y"))
register_objective(Objective(
    "noisy_quadratic", lambda x, y: 0.5 * x * x + 5 * y * y, lambda x, y: (x, 10 * y), (-3.0, 3.0), (-3.0, 3.0),
    (-2.5, 2.5), minimum=(0.0, 0.0), noise=2.0,
    help="x²/2 + 5y² with Gaussian gradient noise (σ = 2, seeded)"))


# -- racing ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Where a rule went: ``xy`` (k x 2) holds the start and every finite point after it."""

    xy: np.ndarray
    diverged_at: int | None  # the first step whose point (or f there) was NaN/inf; None if none was
    final_value: float  # the objective (noise-free) at the last point drawn


def trajectory(rule: optim.Rule, objective: Objective, start: Sequence[float], steps: int, *,
               seed: int = 0) -> Trajectory:
    """Run ``rule`` for ``steps`` steps from ``start`` on ``objective`` (float64).

    Stops before the first point that is NaN/inf or where the objective is (overflow); the
    trajectory ends at the last finite point. A step the rule skips (``None`` updates, e.g.
    ``accumulate``) leaves the point where it was.
    """
    x, y = float(start[0]), float(start[1])
    p = torch.tensor((x, y), dtype=torch.float64)
    params = [p]
    state = rule.init(params)
    noise = objective.noise_draws(steps, seed)
    points = [(x, y)]
    value = float(objective.value(x, y))
    diverged = None
    with torch.no_grad():
        for t in range(steps):
            gx, gy = objective.gradient(x, y)
            if noise is not None:
                gx, gy = gx + noise[t][0], gy + noise[t][1]
            updates, state = rule.update_([torch.tensor((gx, gy), dtype=torch.float64)], state, params)
            if updates is not None:
                p.sub_(updates[0])
            x, y = p.tolist()
            # Python floats overflow to inf quietly: a point far enough out to make f infinite
            # has diverged as surely as a NaN point, and the next gradient would be inf anyway.
            new_value = float(objective.value(x, y)) if math.isfinite(x) and math.isfinite(y) else math.nan
            if not math.isfinite(new_value):
                diverged = t + 1
                break
            points.append((x, y))
            value = new_value
    return Trajectory(np.array(points, dtype=np.float64), diverged, value)


# -- short chain text ---------------------------------------------------------------------------
# One rule: ``name`` or ``name(args)``; rules joined by "→", "->", "," or "+".
_ITEM = re.compile(r"\s*([A-Za-z_]\w*)\s*(?:\(([^()]*)\))?\s*(?:→|->|,|\+|$)")
_LITERALS = {"true": True, "false": False}


def _literal(where: str, text: str) -> Any:
    text = text.strip()
    if text.lower() in _LITERALS:
        return _LITERALS[text.lower()]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise ValueError(f"{where}: {text!r} is not a number or true/false")


def _rule_spec(name: str, args: str | None) -> dict[str, Any]:
    """``("momentum", "0.9, dampening=0.1")`` -> ``{"momentum": {"rho": 0.9, "dampening": 0.1}}``."""
    kwargs: dict[str, Any] = {}
    for i, arg in enumerate(a for a in (args or "").split(",") if a.strip()):
        key, eq, value = arg.partition("=")
        if eq:
            if key.strip() in kwargs:
                raise ValueError(f"{name}: {key.strip()} is given twice")
            kwargs[key.strip()] = _literal(f"{name}: {key.strip()}", value)
            continue
        if i > 0:
            raise ValueError(f"{name}: only the first argument may be unnamed, got {arg.strip()!r}; "
                             "write the others as key=value")
        target = _first_field(name)
        kwargs[target] = _literal(f"{name}: {target}", key)
    return {name: kwargs}


def _first_field(name: str) -> str:
    """The field an unnamed value sets: the rule's primary (clip_norm(1.0)), else its first
    (momentum(0.9) is rho)."""
    cls = optim.RULES.lookup(name)
    if getattr(cls, "primary", None):
        return cls.primary
    try:
        fields = list(cls().hyper())
    except TypeError:  # no defaults to read the field order from
        raise ValueError(f"{name}: write its values as key=value") from None
    if not fields:
        raise ValueError(f"{name}: takes no hyperparameters")
    return fields[0]


def parse_rule(text: str) -> optim.Rule:
    """A rule from the short text people write, or a spec mapping.

    ``"adam"``, ``"momentum(0.9)"``, ``"clip_norm(1.0) → adam → scale_lr(3e-3)"`` (what
    ``str(rule)`` prints), ``"O.chain(O.clip_norm(1.0), O.adam())"`` (what ``to_code`` prints),
    or ``"{chain: [{adam: {b1: 0.8}}]}"``. No eval: names come from the rule registry.
    """
    text = text.strip()
    if not text:
        raise ValueError("chain: empty; write e.g. 'adam' or 'clip_norm(1.0) → adam'")
    if text.startswith("{"):
        try:
            spec = yaml.load(text, Loader=SpecLoader)
        except yaml.YAMLError as e:
            raise ValueError(f"chain: not a valid spec mapping: {' '.join(str(e).split())}") from None
        return optim.rule_from_spec(spec, where="chain")
    text = re.sub(r"\bO\.", "", text)
    wrapped = re.fullmatch(r"chain\s*\((.*)\)", text, re.S)
    if wrapped:
        text = wrapped.group(1)
    specs, pos = [], 0
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"chain: cannot read {text[pos:]!r}; write rules as name or name(value, key=value) "
                             "joined by → (e.g. 'clip_norm(1.0) → adam')")
        specs.append(_rule_spec(m.group(1), m.group(2)))
        pos = m.end()
    return optim.rule_from_spec(specs[0] if len(specs) == 1 else {"chain": specs}, where="chain")


def with_lr(rule: optim.Rule, lr: float) -> optim.Rule:
    """``rule`` with its learning rate set to ``lr``: the ``lr`` it exposes (for a chain, the
    last rule's that has one, as schedules see it), else a ``scale_lr(lr)`` appended."""
    if "lr" in rule.hyper():
        return rule.replace(lr=lr)
    return optim.chain(rule, optim.scale_lr(lr))


# -- the widget -----------------------------------------------------------------------------------
@dataclasses.dataclass
class _Racer:
    """One slot: its inputs, and the result for the inputs last computed."""

    text: W.Combobox
    lr: W.FloatText
    status: W.HTML
    key: Any = None
    result: Trajectory | None = None
    error: str = ""


# Picked to make a race on Rosenbrock from its start in 300 steps: all move, none diverges.
_DEFAULT_RACERS = (("sgd", 1e-3), ("momentum(0.9)", 1e-3), ("adam", 0.1), ("lion", 0.03))


class Playground(W.VBox):
    """Race up to four optimiser chains on a 2-D test function.

    Args:
        chains: up to four ``(text, lr)`` pairs; text as :func:`parse_rule` reads it, lr as
            :func:`with_lr` applies it. An empty text leaves the slot off.
        objective: a name in ``OBJECTIVES`` (rosenbrock, beale, saddle, noisy_quadratic).
        steps: steps per racer (1 to 5000).
        seed: the noise draws of noisy objectives.
        state: a Studio's state: the Studio's chain is then offered in every slot's list, and
            the first slot follows it until edited.
        frame_interval: seconds between frames of the Play animation.
    """

    def __init__(self, chains: Sequence[tuple[str, float]] | None = None, *, objective: str = "rosenbrock",
                 steps: int = 300, seed: int = 0, state: StudioState | None = None,
                 frame_interval: float = 0.05) -> None:
        chains = list(_DEFAULT_RACERS if chains is None else chains)
        if len(chains) > MAX_RACERS:
            raise ValueError(f"chains: at most {MAX_RACERS} racers, got {len(chains)}")
        obj = OBJECTIVES.lookup(objective)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 5000:
            raise ValueError(f"steps: must be an int in [1, 5000], got {steps!r}")
        self.frame_interval = frame_interval
        self.redraw_ms = 0.0  # kernel time of the last redraw after an edit: compute + figure update
        self._lock = threading.RLock()  # the animation thread and edits draw in turn
        # Inputs the widget is moving itself (by id): their changes are not edits. Per input, so
        # the animation thread moving the slider never swallows a user's edit of another input.
        self._muted: set[int] = set()
        self._animation: threading.Thread | None = None
        self._stop = threading.Event()
        self._studio_text = ""

        self.objective = W.Dropdown(options=OBJECTIVES.names(), value=objective, description="Function",
                                    layout=W.Layout(width="230px"))
        self.objective.add_class("td-play-function")
        self.steps = W.BoundedIntText(value=steps, min=1, max=5000, description="Steps", continuous_update=False,
                                      layout=W.Layout(width="150px"))
        self.seed = W.IntText(value=seed, description="Seed", continuous_update=False, layout=W.Layout(width="130px"),
                              tooltip="the noise draws of noisy functions")
        self.x0 = W.FloatText(value=obj.start[0], description="x₀", continuous_update=False,
                              layout=W.Layout(width="120px"), style={"description_width": "24px"})
        self.y0 = W.FloatText(value=obj.start[1], description="y₀", continuous_update=False,
                              layout=W.Layout(width="120px"), style={"description_width": "24px"})
        # A text label: the icon font of ipywidgets' Play widget comes from a CDN (blank offline).
        self.play_button = W.Button(description="Play", tooltip="reveal the paths step by step",
                                    layout=W.Layout(width="70px"))
        self.play_button.add_class("td-play")
        self.play_button.on_click(lambda _: self.pause() if self.playing else self.play())
        self.frame = W.IntSlider(value=steps, min=0, max=steps, description="Step", layout=W.Layout(width="330px"))
        self.frame.add_class("td-play-step")
        self.info = W.HTML("")
        self.info.add_class("td-play-info")

        self.racers: list[_Racer] = []
        for i in range(MAX_RACERS):
            text, lr = chains[i] if i < len(chains) else ("", 1e-3)
            box = W.Combobox(value=text, options=addable_rules(), placeholder="off (e.g. adam, momentum(0.9))",
                             ensure_option=False, continuous_update=False, description=f"{i + 1}",
                             layout=W.Layout(width="300px"), style={"description_width": "14px"})
            box.add_class("td-racer-chain")
            rate = W.FloatText(value=lr, description="lr", continuous_update=False, layout=W.Layout(width="120px"),
                               style={"description_width": "18px"})
            rate.add_class("td-racer-lr")
            status = W.HTML("")
            status.add_class("td-racer-status")
            self.racers.append(_Racer(box, rate, status))
        if state is not None:
            self._studio_chain_changed(state)

        for r in self.racers:
            self._compute(r)
        # Traces and layout go in at construction: Voila renders widgets from their state after
        # the notebook ran, so anything sent before the page existed would be lost.
        self.figure = LiveFigure(data=[self._contour(obj), *self._lines()], layout=self._layout(obj))
        self.figure.add_class("td-playground-chart")
        self._show_status()

        for r in self.racers:
            self._on(r.text, lambda _, r=r: self._edited([r]))
            self._on(r.lr, lambda _, r=r: self._edited([r]))
        self._on(self.objective, lambda ch: self._objective_changed(ch["new"]))
        for w in (self.steps, self.seed):
            self._on(w, lambda _: self._edited(self.racers))
        for w in (self.x0, self.y0):
            self._on(w, lambda _: self._edited(self.racers, marks=True))
        self._on(self.frame, lambda ch: self._reveal(ch["new"]))
        if state is not None:
            state.observe(lambda _: self._studio_chain_changed(state), "spec")

        rows = [W.HBox([r.text, r.lr, r.status]) for r in self.racers]
        super().__init__([
            W.HTML("<b>Optimiser playground</b> <i>(each chain on one 2-D parameter, float64)</i>"),
            W.HBox([self.objective, self.steps, self.seed], layout=W.Layout(flex_flow="row wrap")),
            W.HBox([W.HTML("start", layout=W.Layout(width="40px")), self.x0, self.y0]),
            *rows,
            self.figure,
            W.HBox([self.play_button, self.frame]),
            self.info,
        ])

    def _on(self, widget: W.Widget, handler: Callable[[dict], None]) -> None:
        widget.observe(lambda ch: None if id(widget) in self._muted else handler(ch), "value")

    def _quietly(self, widget: W.Widget, **traits: Any) -> None:
        with self._lock:
            self._muted.add(id(widget))
            try:
                for k, v in traits.items():
                    setattr(widget, k, v)
            finally:
                self._muted.discard(id(widget))

    # -- reading --------------------------------------------------------------------------------
    def objective_now(self) -> Objective:
        return OBJECTIVES[self.objective.value]

    def results(self) -> list[Trajectory | None]:
        """Each slot's trajectory (``None``: off or in error)."""
        return [r.result for r in self.racers]

    def errors(self) -> list[str]:
        return [r.error for r in self.racers]

    # -- computing ------------------------------------------------------------------------------
    def _compute(self, racer: _Racer) -> None:
        """(Re)run one racer if its inputs changed. A bad chain is an error on its slot only."""
        text = racer.text.value.strip()
        start = (float(self.x0.value), float(self.y0.value))
        try:
            rule = with_lr(parse_rule(text), racer.lr.value) if text else None
        except ValueError as e:
            racer.key, racer.result, racer.error = None, None, str(e)
            return
        noisy = self.objective_now().noise != 0.0
        key = (rule, self.objective.value, start, self.steps.value, self.seed.value if noisy else None)
        if key == racer.key:
            return
        racer.key, racer.result, racer.error = key, None, ""
        if rule is None:
            return
        try:
            racer.result = trajectory(rule, self.objective_now(), start, self.steps.value, seed=self.seed.value)
        except Exception as e:  # noqa: BLE001 - a rule that cannot run on one plain tensor stops its slot only
            racer.key, racer.error = None, f"{type(e).__name__}: {e}"

    # -- drawing --------------------------------------------------------------------------------
    # The figure is made once, whole (Voila); after that, edits set only the properties that
    # changed, as plain values: building plotly objects (go.Scatter, go.Layout) per edit cost
    # more than running a racer.
    def _layout(self, obj: Objective) -> go.Layout:
        return go.Layout(
            width=520, height=600, margin=dict(l=45, r=10, t=30, b=30),
            title=dict(text=_title(obj), font_size=12),
            xaxis=dict(range=list(obj.x_range), title="x", constrain="domain"),
            yaxis=dict(range=list(obj.y_range), title="y", scaleanchor="x", constrain="domain"),
            legend=dict(orientation="h", y=-0.12, x=0, font_size=11),
            annotations=self._marks(obj))

    def _marks(self, obj: Objective) -> list[dict]:
        """The minimum (a star) and the start point, as annotations (not traces: the figure
        holds the contour and one trace per racer, nothing else)."""
        notes = [dict(x=obj.minimum[0], y=obj.minimum[1], text="★", showarrow=False, font=dict(size=16))] \
            if obj.minimum else []
        notes.append(dict(x=self.x0.value, y=self.y0.value, text="start", showarrow=True, arrowhead=0, ax=0, ay=-22,
                          font=dict(size=11)))
        return notes

    @staticmethod
    def _contour(obj: Objective) -> go.Contour:
        xs, ys, z = obj.grid()
        return go.Contour(x=xs, y=ys, z=z, ncontours=28, colorscale="Blues", reversescale=True, opacity=0.7,
                          showscale=False, name=_z_label(obj), line=dict(width=0.5), hovertemplate=_hover(obj))

    def _label(self, i: int, racer: _Racer) -> str:
        text = f"{i + 1}: {racer.text.value.strip()} · lr {optim.format_number(float(racer.lr.value))}"
        res = racer.result
        if res is None:
            return text
        if res.diverged_at is not None:
            return f"{text} — diverged at step {res.diverged_at}"
        return f"{text} — f={res.final_value:.3g}"

    def _path(self, racer: _Racer, upto: int) -> np.ndarray:
        return racer.result.xy[:upto + 1] if racer.result is not None else np.zeros((0, 2))

    def _lines(self) -> list[go.Scatter]:
        return [go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines", name=self._label(i, r),
                           line=dict(color=COLOURS[i], width=2), showlegend=r.result is not None)
                for i, r in enumerate(self.racers) for xy in (self._path(r, self.frame.value),)]

    def _draw(self, racers: Sequence[_Racer], *, contour: bool, marks: bool) -> None:
        """What changed, in one message (``batch_update``)."""
        obj = self.objective_now()
        upto = self.frame.value
        with self.figure.lock, self.figure.batch_update():
            if contour:
                xs, ys, z = obj.grid()
                c = self.figure.data[0]
                c.x, c.y, c.z, c.name, c.hovertemplate = xs, ys, z, _z_label(obj), _hover(obj)
                self.figure.layout.title.text = _title(obj)
                self.figure.layout.xaxis.range, self.figure.layout.yaxis.range = obj.x_range, obj.y_range
            if marks:
                self.figure.layout.annotations = self._marks(obj)
            for r in racers:
                i = self.racers.index(r)
                trace, xy = self.figure.data[i + 1], self._path(r, upto)
                trace.x, trace.y = xy[:, 0], xy[:, 1]
                trace.name, trace.showlegend = self._label(i, r), r.result is not None

    def _reveal(self, upto: int) -> None:
        """Show each path up to step ``upto`` (the Step slider, the Play animation)."""
        with self._lock, self.figure.lock, self.figure.batch_update():
            for trace, r in zip(self.figure.data[1:], self.racers):
                xy = self._path(r, upto)
                trace.x, trace.y = xy[:, 0], xy[:, 1]

    def _show_status(self) -> None:
        for i, r in enumerate(self.racers):
            if r.error:
                r.status.value = f"<span class='td-racer-error' style='color:#b00020'>{html.escape(r.error)}</span>"
            elif r.result is None:
                r.status.value = ""
            elif r.result.diverged_at is not None:
                r.status.value = (f"<span style='color:{COLOURS[i]}'>diverged at step {r.result.diverged_at}; "
                                  "drawn to its last finite point</span>")
            else:
                x, y = r.result.xy[-1]
                r.status.value = (f"<span style='color:{COLOURS[i]}'>f={r.result.final_value:.3g} at "
                                  f"({x:.3g}, {y:.3g})</span>")

    def _edited(self, racers: Sequence[_Racer], *, contour: bool = False, marks: bool = False) -> None:
        t0 = time.perf_counter()
        self._stop.set()  # an edit ends a running animation
        with self._lock:
            for r in racers:
                self._compute(r)
            # An edit shows the whole race at once (Play replays it): paths cut short by the
            # slider are redrawn whole too.
            if self.frame.value != self.steps.value or self.frame.max != self.steps.value:
                racers = self.racers
                self._quietly(self.frame, max=self.steps.value, value=self.steps.value)
            self._draw(racers, contour=contour, marks=marks)
            self._show_status()
        self.redraw_ms = (time.perf_counter() - t0) * 1e3
        self.info.value = f"redrawn in {self.redraw_ms:.0f} ms"

    def _objective_changed(self, name: str) -> None:
        obj = OBJECTIVES[name]
        # A new function starts from its own start point: both set before one recompute.
        self._quietly(self.x0, value=obj.start[0])
        self._quietly(self.y0, value=obj.start[1])
        self._edited(self.racers, contour=True, marks=True)

    # -- the Studio's chain ---------------------------------------------------------------------
    def _studio_chain_changed(self, state: StudioState) -> None:
        rule = state.spec.rule()
        text = str(rule)
        if text == self._studio_text:
            return
        old, self._studio_text = self._studio_text, text
        options = [text, *addable_rules()]
        first = self.racers[0]
        follows = old == "" or first.text.value == old
        for r in self.racers:
            self._quietly(r.text, options=options)
        if not follows:
            return
        self._quietly(first.text, value=text)
        if "lr" in rule.hyper():
            self._quietly(first.lr, value=rule.hyper()["lr"])
        if old:  # not at construction: the figure exists
            self._edited([first])

    # -- animation ------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._animation is not None and self._animation.is_alive()

    def play(self) -> threading.Thread:
        """Reveal the paths step by step on a background thread (about 60 frames)."""
        if self.playing:
            return self._animation  # type: ignore[return-value]
        self._stop.clear()
        start = 0 if self.frame.value >= self.frame.max else self.frame.value
        self.play_button.description = "Pause"
        self._animation = threading.Thread(target=self._animate, args=(start,), daemon=True,
                                           name="torchdeck-playground")
        self._animation.start()
        return self._animation

    def pause(self) -> None:
        self._stop.set()

    def _animate(self, k: int) -> None:
        # This thread only moves the slider and redraws through _reveal: one batch_update per frame.
        last = self.frame.max
        stride = max(1, math.ceil(last / 60))
        try:
            while True:
                with self._lock:
                    if self._stop.is_set():
                        break
                    self._quietly(self.frame, value=k)
                    self._reveal(k)
                if k >= last or self._stop.wait(self.frame_interval):
                    break
                k = min(k + stride, last)
        finally:
            self.play_button.description = "Play"
