"""Schedules plotted over the planned run, edited as trees, with a run's current step marked.

Threading: ``current_step`` is set from the trainer thread (the Studio links it to the
monitor's, which changes at most once per monitor redraw); the marker then moves in one
``batch_update`` of the figure, under the figure's lock, as the monitor's charts do.
"""

from __future__ import annotations

import dataclasses
import html
import types
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import traitlets
import yaml
from plotly.colors import qualitative

from torchdeck.schedules import SCHEDULES, Schedule, curve
from torchdeck.widgets._figure import LiveFigure
from torchdeck.widgets._schedule_tree import ScheduleTree, key_name, walk
from torchdeck.widgets._state import StudioState

__all__ = ["SchedulePanel", "schedules_code", "schedules_yaml"]

_COLORS = qualitative.Plotly
_CODE_WIDTH = 92


# -- the schedules as code and as YAML ---------------------------------------------------------
def _node_code(node: dict[str, Any], indent: int | None) -> str:
    """``S.Linear(start=0.0003, end=0.003, steps=50)``; broken over lines (at ``indent``) when
    one line would be too long; ``indent=None``: always one line."""
    (name, kwargs), = node.items()
    cls = SCHEDULES.lookup(name)
    args = []
    for f in dataclasses.fields(cls):
        if f.name not in kwargs or (f.default is not dataclasses.MISSING and kwargs[f.name] == f.default
                                    and type(kwargs[f.name]) is type(f.default)):
            continue  # defaults are left out, as a person would write it
        args.append((f.name, kwargs[f.name], f.name in cls.nested))
    flat = f"S.{cls.__name__}(" + ", ".join(f"{n}={_value_code(v, nested, None)}" for n, v, nested in args) + ")"
    if indent is None or indent + len(flat) <= _CODE_WIDTH:
        return flat
    pad = " " * (indent + 4)
    lines = [f"{pad}{n}={_value_code(v, nested, indent + 4)}," for n, v, nested in args]
    return f"S.{cls.__name__}(\n" + "\n".join(lines) + "\n" + " " * indent + ")"


def _value_code(value: Any, nested: bool, indent: int | None) -> str:
    if not nested:
        return repr(value)
    if not isinstance(value, list):
        return _node_code(value, indent)
    flat = "[" + ", ".join(_node_code(v, None) for v in value) + "]"
    if indent is None or indent + len(flat) <= _CODE_WIDTH:
        return flat
    pad = " " * (indent + 4)
    return "[\n" + "\n".join(f"{pad}{_node_code(v, indent + 4)}," for v in value) + "\n" + " " * indent + "]"


def schedules_code(schedules: dict[str, Any]) -> str:
    """Python that builds the spec's schedules: ``schedules = {"lr": S.Sequence(...)}``."""
    lines = ["from torchdeck import schedules as S", "", "schedules = {"]
    for key, node in schedules.items():
        lines.append(f"    {key!r}: {_hyper_code(node)},")
    return "\n".join(lines + ["}"]) + "\n"


def _hyper_code(node: Any) -> str:
    """One hyperparameter's schedules: one, a list per param group, or ``{group: schedule}``."""
    if isinstance(node, list):
        return "[" + ", ".join(_node_code(v, None) for v in node) + "]"
    if len(node) == 1 and next(iter(node)) in SCHEDULES:
        return _node_code(node, 4)
    return "{" + ", ".join(f"{g!r}: {_node_code(v, None)}" for g, v in node.items()) + "}"


def schedules_yaml(schedules: dict[str, Any]) -> str:
    """The ``schedules:`` part of the spec's YAML."""
    # libyaml's dumper when present: the same text, three times faster (this runs on every edit).
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump({"schedules": schedules}, Dumper=dumper, sort_keys=False, allow_unicode=True)


# -- compatibility -------------------------------------------------------------------------------
@dataclasses.dataclass
class _FlatField:
    """A value input of the tree under the name the flat editor gave it (``lr: linear.start``)."""

    description: str
    widget: W.ValueWidget
    value = property(lambda self: self.widget.value, lambda self, v: setattr(self.widget, "value", v))


# -- the panel -----------------------------------------------------------------------------------
class SchedulePanel(W.VBox):
    """One curve per scheduled hyperparameter (per param group when it is split by group) over
    the run the spec plans (lr on the left axis, the others, such as momentum, on the right;
    steps below, epochs above), the tree editor below it, and the schedules as Python and
    YAML. Curves are thinned to ``max_points`` by bucket min/max (``schedules.curve``), so the
    peaks stay exact on long runs. During a run a dotted line and a point on each curve mark
    ``current_step``."""

    current_step = traitlets.Int(-1, help="the step the marker shows: the run's last training step; -1 hides it")

    def __init__(self, state: StudioState, *, max_points: int = 2000) -> None:
        self.state = state
        self.max_points = max_points
        self._fitted: dict[str, Schedule] = {}
        self._marker_step, self._markers_drawn = -1, False  # as the figure is made: hidden
        self._curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._plan()
        # Traces go in at construction: Voila renders widgets from their state after the
        # notebook ran, so trace additions sent before the page existed would be lost.
        self.figure = LiveFigure(data=self._traces(), layout=go.Layout(
            height=260, width=560, margin=dict(l=55, r=55, t=30, b=35), title=dict(text="Schedules", font_size=13),
            xaxis=dict(title="step"), yaxis=dict(exponentformat="e", title="lr"),
            yaxis2=dict(overlaying="y", side="right", showgrid=False, exponentformat="e"),
            # tickmode auto: an overlaying axis would otherwise put its ticks under the step ticks (0.87, 1.74 ...).
            xaxis2=dict(overlaying="x", side="top", title=dict(text="epoch", standoff=0), tickmode="auto"),
            showlegend=True, legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
            shapes=[dict(type="line", xref="x", yref="paper", x0=0, x1=0, y0=0, y1=1, visible=False,
                         line=dict(color="#555", width=1, dash="dot"))],
            annotations=[dict(xref="x", yref="paper", x=0, y=0, text="", showarrow=False, visible=False,
                              xanchor="left", yanchor="bottom", font=dict(size=10, color="#555"))]))
        self.figure.add_class("td-schedule-chart")
        self.summary = W.HTML()
        self.python = W.HTML()
        self.python.add_class("td-sched-python")
        self.yaml = W.HTML()
        self.yaml.add_class("td-sched-yaml")
        self.code = W.Tab([self.python, self.yaml], titles=("Python", "YAML"))
        self._shown: Any = None
        # The plot observes the spec before the tree does: after an edit the curve redraws first.
        state.observe(lambda _: self.refresh(), "spec")
        self.tree = ScheduleTree(state)
        super().__init__([W.HTML("<b>Schedules</b>"), self.summary, self.figure, self.tree, self.code])
        self.observe(lambda ch: self.show_step(ch["new"]), "current_step")
        self.refresh()

    # -- the curves ---------------------------------------------------------------------------
    def _plan(self) -> None:
        total = self.state.total_steps()
        self._fitted = {k: s.fit_to(total) for k, s in self.state.spec.schedule_curves().items()}
        self._curves = {k: curve(s, total, self.max_points) for k, s in self._fitted.items()}

    def _names(self) -> list[str]:
        return [*self._curves, "epochs", *(f"{k} now" for k in self._curves)]

    def _traces(self) -> list[go.Scatter]:
        def axis(key: str) -> str:
            return "y" if key.split(" [")[0] == "lr" else "y2"
        color = {k: _COLORS[i % len(_COLORS)] for i, k in enumerate(self._curves)}
        curves = [go.Scatter(x=xs, y=ys, mode="lines", name=k, yaxis=axis(k), line=dict(color=color[k]))
                  for k, (xs, ys) in self._curves.items()]
        # An invisible trace gives the epoch axis its scale: epoch e sits above step e * steps_per_epoch.
        epochs = go.Scatter(x=[0, self.state.spec.train.epochs], y=[None, None], xaxis="x2", showlegend=False,
                            hoverinfo="skip", name="epochs")
        markers = [go.Scatter(x=[], y=[], mode="markers", name=name, yaxis=axis(k), showlegend=False,
                              marker=dict(color=color[k], size=9, line=dict(color="white", width=1)))
                   for k, name in zip(self._curves, self._names()[len(self._curves) + 1:])]
        return [*curves, epochs, *markers]

    def _ranges(self) -> None:
        last = max(self.state.total_steps() - 1, 1)
        layout = self.figure.layout
        layout.xaxis.range = [0, last]
        layout.xaxis2.range = [0, last / self.state.steps_per_epoch()]
        others = sorted({k.split(" [")[0] for k in self._curves} - {"lr"})
        layout.yaxis2.title = ", ".join(others) if others else None

    def refresh(self, force: bool = False) -> None:
        """Redraw the curves and the code when the schedules or the run's length changed (the
        tree follows the spec by itself)."""
        spec = self.state.spec
        key = (repr(spec.schedules), spec.train.epochs, spec.train.batch_size, spec.data.model_dump_json())
        if key == self._shown and not force:
            return
        self._shown = key
        self._redraw()
        self.summary.value = (f"{self.state.total_steps()} steps ({spec.train.epochs} epochs × "
                              f"{self.state.steps_per_epoch()} steps)")
        self.python.value = f"<pre>{html.escape(schedules_code(spec.schedules))}</pre>"
        self.yaml.value = f"<pre>{html.escape(schedules_yaml(spec.schedules))}</pre>"

    def _redraw(self) -> None:
        with self.figure.lock:
            self._plan()
            fresh = [t.name for t in self.figure.data] != self._names()
            if fresh:  # another set of hyperparameters: new traces, drawn with their data
                self.figure.data = ()
                for trace in self._traces():
                    self.figure.add_trace(trace)
            with self.figure.batch_update():
                if not fresh:
                    # numpy arrays go to the browser as binary buffers: ~20x cheaper than lists.
                    for (xs, ys), trace in zip(self._curves.values(), self.figure.data):
                        trace.x, trace.y = xs, ys
                    self.figure.data[len(self._curves)].x = [0, self.state.spec.train.epochs]
                self._ranges()
                # Markers are set once per batch: plotly drops a second assignment of a property
                # within one batch when it equals the value from before the batch.
                self._place_marker(self.current_step)

    # -- the run's step -------------------------------------------------------------------------
    def show_step(self, step: int) -> None:
        """Move the marker to ``step`` (-1 hides it); any thread, one message."""
        with self.figure.lock, self.figure.batch_update():
            self._place_marker(step)

    def _place_marker(self, step: int) -> None:
        shown = step >= 0
        # Layout edits cost about a millisecond each in plotly: the line moves only with the step.
        if step != self._marker_step:
            x = max(step, 0)
            self.figure.layout.shapes[0].update(x0=x, x1=x, visible=shown)
            self.figure.layout.annotations[0].update(x=x, text=f" step {step}", visible=shown)
            self._marker_step = step
        if shown or self._markers_drawn:  # the points follow the curves, which may have changed
            markers = self.figure.data[len(self._fitted) + 1:]
            for (key, s), marker in zip(self._fitted.items(), markers):
                marker.x, marker.y = ([step], [s(step)]) if shown else ([], [])
        self._markers_drawn = shown

    # -- compatibility ----------------------------------------------------------------------------
    @property
    def editors(self) -> types.SimpleNamespace:
        """Every value input of the tree named as the flat editor before it named them
        (``lr: linear.start``), in tree order. For existing callers; new code uses ``tree.row``."""
        roots = self.tree._roots()
        out = []
        for key, root in roots.items():
            for path, node in walk(root):
                row = self.tree.rows.get((key, path))
                if row is not None:
                    out += [_FlatField(f"{key_name(key)}: {node.name}.{name}", w) for name, w in row.fields.items()]
        return types.SimpleNamespace(children=tuple(out))
