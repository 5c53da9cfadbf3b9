"""Schedules plotted over the planned run, redrawn as their numbers are edited."""

from __future__ import annotations

import copy
from typing import Any, Iterator

import ipywidgets as W
import plotly.graph_objects as go

from torchdeck.schedules import curve
from torchdeck.widgets._state import StudioState

__all__ = ["SchedulePanel"]

def _numbers(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, value) for every number in a schedule spec, e.g. (('sequence', 'schedules', 0, 'linear', 'start'), 3e-4)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, path + (i,))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def _label(path: tuple) -> str:
    """('sequence', 'schedules', 1, 'cos_anneal', 'start') -> 'cos_anneal.start';
    ('sequence', 'steps', 0) -> 'steps[0]'."""
    if isinstance(path[-1], int):
        return f"{path[-2]}[{path[-1]}]"
    names = [p for p in path if isinstance(p, str) and p not in ("sequence", "schedules")]
    return ".".join(names[-2:])


class SchedulePanel(W.VBox):
    """One curve per scheduled hyperparameter over the run the spec plans (the learning rate on
    the left axis, others such as momentum on the right; steps below, epochs above). Curves
    are min/max-thinned to 2000 points, so peaks stay exact on long runs. Every number of
    every schedule is editable."""

    def __init__(self, state: StudioState) -> None:
        self.state = state
        # Traces go in at construction: Voila renders widgets from their state after the
        # notebook ran, so trace additions sent before the page existed would be lost.
        self.figure = go.FigureWidget(data=self._scatters(), layout=go.Layout(
            height=240, width=460, margin=dict(l=50, r=10, t=30, b=35), title=dict(text="Schedules", font_size=13),
            xaxis=dict(title="step", range=self._step_range()), yaxis=dict(exponentformat="e", title="lr"),
            yaxis2=dict(overlaying="y", side="right", showgrid=False),
            xaxis2=dict(overlaying="x", side="top", title=dict(text="epoch", standoff=0), range=self._epoch_range()),
            showlegend=True,
            legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom")))
        self.figure.add_class("td-schedule-chart")
        self.editors = W.VBox()
        self.summary = W.HTML()
        super().__init__([W.HTML("<b>Schedules</b>"), self.summary, self.figure, self.editors])
        self._shown: Any = None
        state.observe(lambda _: self.refresh(), "spec")
        self.refresh()

    def _curves(self) -> list[tuple[str, list, list]]:
        total = self.state.total_steps()
        return [(name, *(a.tolist() for a in curve(s, total)))
                for name, s in self.state.spec.schedule_objects().items()]

    def _step_range(self) -> list[float]:
        return [0, max(self.state.total_steps() - 1, 1)]

    def _epoch_range(self) -> list[float]:
        return [0, self._step_range()[1] / self.state.steps_per_epoch()]

    def _scatters(self) -> list[go.Scatter]:
        curves = [go.Scatter(x=xs, y=ys, mode="lines", name=name, yaxis="y" if name == "lr" else "y2")
                  for name, xs, ys in self._curves()]
        # An invisible trace gives the epoch axis its scale: epoch e sits above step e * steps_per_epoch.
        epochs = self.state.spec.train.epochs
        return [*curves, go.Scatter(x=[0, epochs], y=[None, None], xaxis="x2", showlegend=False, hoverinfo="skip",
                                    name="epochs")]

    def set_number(self, name: str, path: tuple, value: Any) -> None:
        schedules = copy.deepcopy(self.state.spec.schedules)
        node = schedules[name]
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        if not self.state.edit(schedules=schedules):
            self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        spec = self.state.spec
        key = (repr(spec.schedules), spec.train.epochs, spec.train.batch_size, spec.data.model_dump_json())
        if key == self._shown and not force:
            return
        self._shown = key
        total = self.state.total_steps()
        scatters = self._scatters()
        if [t.name for t in self.figure.data] != [t.name for t in scatters]:
            self.figure.data = ()
            for trace in scatters:
                self.figure.add_trace(trace)
        with self.figure.batch_update():
            for trace, new in zip(self.figure.data, scatters):
                trace.x, trace.y = new.x, new.y
            self.figure.layout.xaxis.range = self._step_range()
            self.figure.layout.xaxis2.range = self._epoch_range()
        self.summary.value = f"{total} steps ({spec.train.epochs} epochs × {self.state.steps_per_epoch()} steps)"
        self.editors.children = [self._editor(name, path, value) for name, tree in spec.schedules.items()
                                 for path, value in _numbers(tree)]

    def _editor(self, name: str, path: tuple, value: Any) -> W.Widget:
        cls = W.IntText if isinstance(value, int) else W.FloatText
        box = cls(value=value, description=f"{name}: {_label(path)}", continuous_update=False,
                  style={"description_width": "130px"}, layout=W.Layout(width="260px"))
        box.observe(lambda ch: self.set_number(name, path, ch["new"]), "value")
        return box
