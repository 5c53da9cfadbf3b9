"""The training monitor: Train / Pause / Stop and live loss and metric charts.

Threading rules (ipywidgets #2358, #4020; voila #431): training runs on a background
thread; that thread only sets widget traits and changes FigureWidget data inside one
``batch_update`` per redraw, at most every ``redraw_interval`` seconds — never
``clear_output``, never ``with output:``.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
import traitlets

from torchdeck.train import Learner, MetricStream, Run
from torchdeck.widgets._figure import LiveFigure
from torchdeck.widgets._state import StudioState

__all__ = ["TrainingMonitor"]


Series = tuple[str, str, str, int]  # stream key, legend label, mode, row (1: loss, 2: metrics)


def _scatter(key: str, label: str, mode: str, row: int) -> go.Scatter:
    axes = {} if row == 1 else {"xaxis": "x2", "yaxis": "y2"}
    return go.Scatter(x=[], y=[], name=label, mode=mode, legendgroup=str(row), **axes)


def _chart(series: list[Series]) -> LiveFigure:
    """Loss (log scale) above, metrics below, one shared step axis.

    One figure, so every redraw is one message.
    """
    # Traces go in at construction: Voila renders widgets from their state after the
    # notebook ran, so trace additions sent before the page existed would be lost.
    fig = LiveFigure(data=[_scatter(*s) for s in series], layout=go.Layout(
        height=520, width=520, margin=dict(l=55, r=10, t=30, b=40),
        xaxis=dict(anchor="y", matches="x2", showticklabels=False),
        yaxis=dict(domain=[0.56, 1.0], type="log", exponentformat="e", title="loss"),
        xaxis2=dict(anchor="y2", title="step"),
        yaxis2=dict(domain=[0.0, 0.44], range=[0, 1.02], title="metric"),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom")))
    fig.add_class("td-train-chart")
    return fig


class TrainingMonitor(W.VBox):
    """Starts runs of the state's spec and streams their numbers into charts.

    Works without a display too (the charts are plain widgets), which is how the tests and
    the overhead benchmark drive it.
    """

    current_step = traitlets.Int(-1, help="the last training step the run has taken (the schedules' t), set at "
                                          "each redraw; -1 before the run's first step")

    def __init__(self, state: StudioState, *, redraw_interval: float = 0.1, capacity: int = 2000) -> None:
        self.state = state
        self.redraw_interval = redraw_interval
        self.stream = MetricStream(capacity)
        self.stream.subscribe(self._on_stream)
        self.learner: Learner | None = None
        self.run: Run | None = None
        self.redraws = 0
        self._last_draw = 0.0
        self._draw_lock = threading.Lock()

        self.epochs = W.BoundedIntText(value=state.spec.train.epochs, min=1, max=100_000, description="Epochs",
                                       layout=W.Layout(width="170px"))
        self.epochs.add_class("td-epochs")
        self.epochs.observe(lambda ch: self.state.edit(**{"train.epochs": ch["new"]}), "value")
        self.train_button = W.Button(description="Train", button_style="primary")
        self.pause_button = W.Button(description="Pause", disabled=True)
        self.stop_button = W.Button(description="Stop", button_style="danger", disabled=True)
        for b, css in ((self.train_button, "td-train"), (self.pause_button, "td-pause"), (self.stop_button, "td-stop")):
            b.add_class(css)
        self.train_button.on_click(lambda _: self.start())
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.stop_button.on_click(lambda _: self.stop())
        self.status = W.HTML("status: <b>idle</b>")
        self.status.add_class("td-status")
        self.progress = W.HTML("")
        self.progress.add_class("td-progress")
        self.headline = W.HTML("")
        self.headline.add_class("td-accuracy")

        self.chart = _chart(self._series())
        self._traces: dict[str, Any] = {}
        self._index_traces()
        super().__init__([
            W.HTML("<b>Training</b>"),
            W.HBox([self.epochs, self.train_button, self.pause_button, self.stop_button]),
            self.status, self.progress, self.headline,
            self.chart,
        ])
        state.observe(self._spec_changed, "spec")

    # -- charts ----------------------------------------------------------------------------------
    def _series(self) -> list[Series]:
        metrics = list(self.state.task().metrics())
        self._headline_metric = f"valid_{metrics[0]}" if metrics else "valid_loss"
        loss = [("loss", "train loss (step)", "lines", 1), ("train_loss", "train loss (epoch)", "lines+markers", 1),
                ("valid_loss", "valid loss (epoch)", "lines+markers", 1)]
        return loss + [(f"valid_{m}", f"valid {m}", "lines+markers", 2) for m in metrics]

    def _index_traces(self) -> None:
        self._traces = {key: trace for (key, *_), trace in zip(self._series(), self.chart.data)}

    def _new_chart(self) -> None:
        """A fresh figure for the next run, in the old one's place.

        Why fresh: anywidget (0.11) gives a widget model 2 s from its creation to import its
        front end and be ready, and drops every later message to a model that missed it,
        silently. plotly's front end is a 4.9 MB bundle imported per figure; at page load,
        with the other figures loading too and the CPU busy, the chart sometimes missed the
        deadline and stayed empty for the whole run. A figure made when Train is pressed loads
        alone, on an idle page. (Found by instrumenting the kernel and the page; the schedule
        plot and the playground load at page load and draw from their first state either way.)
        """
        old = self.chart
        self.chart = _chart(self._series())
        self._index_traces()
        self.children = tuple(self.chart if c is old else c for c in self.children)
        old.close()

    def redraw(self) -> None:
        """Copy the stream into the charts: one message per figure."""
        with self._draw_lock:
            snap = self.stream.snapshot()
            with self.chart.lock, self.chart.batch_update():
                for key, trace in self._traces.items():
                    xs, ys = snap.get(key, ([], []))
                    trace.x, trace.y = xs, ys
            steps = snap.get("loss", ([], []))[0]  # x of each training step's loss: its step
            self.current_step = int(steps[-1]) if steps else -1
            p = self.stream.progress
            if p:
                self.progress.value = (f"epoch {p['epoch']}/{p['epochs']} · {p['phase']} batch "
                                       f"{p['batch']}/{p['batches']} · step {p['step']}")
            value = self.stream.latest(self._headline_metric)
            if value is not None:
                self.headline.value = f"{self._headline_metric.replace('_', ' ')} <b>{value:.4f}</b>"
            self.redraws += 1
            self._last_draw = time.monotonic()

    def _on_stream(self, stream: MetricStream, event: str) -> None:
        # Called on the training thread: redraw by wall-clock time, not by step count, and
        # always at epoch ends so no epoch value waits for the next step.
        if event != "step" or time.monotonic() - self._last_draw >= self.redraw_interval:
            self.redraw()

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> Run | None:
        if self.run is not None and not self.run.done:
            self.state.error = "a run is already in progress; stop it first"
            return None
        try:
            learner = self.state.spec.build(task=self.state.task())
        except Exception as e:  # a spec that validates can still fail to build; keep the Studio alive
            self.state.error = f"could not build the run: {e}"
            return None
        self._new_chart()
        learner.add_callback(self.stream)
        self.learner = learner
        self._set_status("running")
        self.train_button.disabled, self.pause_button.disabled, self.stop_button.disabled = True, False, False
        self.pause_button.description = "Pause"
        self.run = learner.fit_async()
        self.run.on_done(self._finished)
        return self.run

    def toggle_pause(self) -> None:
        if self.run is None or self.run.done:
            return
        if self.pause_button.description == "Pause":
            self.run.pause()
            self.pause_button.description = "Resume"
            self._set_status("paused")
        else:
            self.run.resume()
            self.pause_button.description = "Pause"
            self._set_status("running")

    def stop(self) -> None:
        if self.run is not None and not self.run.done:
            self._set_status("stopping")
            self.run.stop()

    def _finished(self, run: Run) -> None:
        self.redraw()
        detail = f": {html.escape(type(run.error).__name__)}: {html.escape(str(run.error))}" if run.error else ""
        self._set_status(run.status, detail)
        self.train_button.disabled, self.pause_button.disabled, self.stop_button.disabled = False, True, True
        self.pause_button.description = "Pause"

    def _set_status(self, status: str, detail: str = "") -> None:
        self.status.value = f"status: <b>{status}</b>{detail}"

    def _spec_changed(self, change: dict[str, Any]) -> None:
        self.epochs.value = change["new"].train.epochs
        # A running run keeps its charts; a new task's traces come at the next start.
        if (self.run is None or self.run.done) and change["old"].task != change["new"].task:
            self._new_chart()
