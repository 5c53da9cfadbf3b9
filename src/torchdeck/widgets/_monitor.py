"""The training monitor: Train / Pause / Stop, live charts (loss, metrics, lr and momentum),
an epoch table, sample predictions, and the error of a failed run.

A run trains on a background thread of this process (Processes = 1) or on N torchrun
processes (:class:`ProcessRun`), whose rank 0 relays its events into the same
:class:`~torchdeck.train.MetricStream`: the charts, table and progress don't care which.

Threading rules (ipywidgets #2358, #4020; voila #431): training runs on a background
thread; that thread only sets widget traits and changes FigureWidget data inside one
``batch_update`` per redraw, at most once per ``redraw_interval`` seconds (and once at the
run's end) — never ``clear_output``, never ``with output:``.
"""

from __future__ import annotations

import dataclasses
import html
import os
import tempfile
import threading
import time
from typing import Any, Callable

import ipywidgets as W
import numpy as np
import traitlets
from safetensors.torch import load_file

from torchdeck import distributed
from torchdeck.train import Learner, MetricStream, Run, get_metric, momentum_key
from torchdeck.widgets._monitor_chart import TraceSpec, build_chart, chart_traces, metric_axis
from torchdeck.widgets._monitor_gate import RedrawGate
from torchdeck.widgets._monitor_process import ProcessRun, check_processes
from torchdeck.widgets._monitor_views import PredictionView, epoch_table_html, failure_html, prediction_view
from torchdeck.widgets._state import StudioState

__all__ = ["TrainingMonitor", "Controls", "CONTROLS"]


@dataclasses.dataclass(frozen=True)
class Controls:
    """Which buttons a status enables, and what the pause button says."""

    train: bool
    pause: bool
    pause_label: str
    stop: bool


_READY = Controls(train=True, pause=False, pause_label="Pause", stop=False)
_RUNNING = Controls(train=False, pause=True, pause_label="Pause", stop=True)
# Status (the Run's, plus "idle" before any run) -> buttons.
CONTROLS: dict[str, Controls] = {
    "idle": _READY,
    "starting": _RUNNING,
    "running": _RUNNING,
    "paused": Controls(train=False, pause=True, pause_label="Resume", stop=True),
    "stopping": Controls(train=False, pause=False, pause_label="Pause", stop=False),
    "stopped": _READY,
    "finished": _READY,
    "failed": _READY,
}

_EMPTY = np.zeros(0)


def _values(ys: Any) -> Any:
    """A trace's y values as drawn (plotly keeps None for a trace never drawn)."""
    return _EMPTY if ys is None else ys


def _momentum_label(key: str | None) -> str:
    """The momentum trace's legend entry for the optimiser's momentum key (b1, momentum, ...)."""
    return "momentum" if key in (None, "momentum") else f"momentum ({key})"


def _fraction(progress: dict[str, Any]) -> float:
    """How far through the fit, by epochs (a validation pass counts as its epoch's end)."""
    epochs, batches = progress.get("epochs") or 0, progress.get("batches") or 0
    if epochs < 1:
        return 0.0
    within = progress["batch"] / batches if progress.get("phase") == "train" and batches else 1.0
    return min(1.0, max(0.0, (progress["epoch"] - 1 + within) / epochs))


AnyRun = Run | ProcessRun  # what Train starts: a thread here, or torchrun processes


class TrainingMonitor(W.VBox):
    """Starts runs of the state's spec and streams their numbers into charts.

    Works without a display too (the charts are plain widgets), which is how the tests and
    the overhead benchmark drive it.

    Args:
        state: the Studio's state; Train builds and runs its spec.
        redraw_interval: least seconds between two redraws while a run streams.
        capacity: points kept per chart trace (longer runs are decimated, keeping min/max).
        predictions: validation samples in the prediction grid drawn after an epoch; 0 for
            none. Only runs started here (Train / :meth:`start`) have them; a run on several
            processes has one grid, at its end, from the weights its rank 0 saved.
        clock: the time source for the redraw interval (tests pass a fake one).
    """

    current_step = traitlets.Int(-1, help="the last training step the run has taken (the schedules' t), set at "
                                          "each redraw; -1 before the run's first step")

    def __init__(self, state: StudioState, *, redraw_interval: float = 0.1, capacity: int = 2000,
                 predictions: int = 8, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(predictions, bool) or not isinstance(predictions, int) or predictions < 0:
            raise ValueError(f"TrainingMonitor: predictions must be a number of samples >= 0 (0: none), "
                             f"got {predictions!r}")
        self.state = state
        self.gate = RedrawGate(redraw_interval, clock)
        self.n_predictions = predictions
        self.stream = MetricStream(capacity)
        self.stream.subscribe(self._on_stream)
        self.learner: Learner | None = None
        self.run: AnyRun | None = None
        self._run_task: Any = None  # the task a run on several processes was launched with
        self.redraws = 0
        self._draw_lock = threading.RLock()
        self._control_lock = threading.Lock()
        self._status = "idle"
        # What the widgets show, to redraw only what changed since.
        self._generation = -1
        self._versions: dict[str, int] = {}
        self._rows: list[dict[str, float]] = []
        self._drawn_version = -1
        self._predict_from: Learner | None = None   # the learner of a run started here
        self._predicted_epoch = (-1, 0)            # (stream generation, epochs) of the last grid
        self._prediction: PredictionView | None = None

        self.epochs = W.BoundedIntText(value=state.spec.train.epochs, min=1, max=100_000, description="Epochs",
                                       layout=W.Layout(width="170px"))
        self.epochs.add_class("td-epochs")
        self.epochs.observe(lambda ch: self.state.edit(**{"train.epochs": ch["new"]}), "value")
        # Not bounded: a BoundedIntText would clamp a wrong value silently; Train refuses it, saying why.
        self.processes = W.IntText(value=1, description="Processes", layout=W.Layout(width="170px"),
                                   tooltip=f"1: train in this kernel; 2..{os.cpu_count() or 1}: "
                                           f"data parallel on that many torchrun processes")
        self.processes.add_class("td-processes")
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
        self.progress_bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="300px"))
        self.progress_bar.add_class("td-progress-bar")
        self.progress = W.HTML("")
        self.progress.add_class("td-progress")
        self.headline = W.HTML("")
        self.headline.add_class("td-accuracy")
        self.failure = W.HTML("")
        self.failure.add_class("td-failure")
        self.table = W.HTML("")
        self.table.add_class("td-epoch-table")
        self.predictions = W.Image(format="png", layout=W.Layout(max_width="100%", display="none"))
        self.predictions.add_class("td-predictions")
        self.prediction_table = W.HTML("")
        self.prediction_table.add_class("td-predictions-table")

        self._trace_specs: list[TraceSpec] = []
        self.chart = self._make_chart()
        self._traces: dict[str, Any] = {}
        self._index_traces()
        super().__init__([
            W.HTML("<b>Training</b>"),
            W.HBox([self.epochs, self.processes]),
            W.HBox([self.train_button, self.pause_button, self.stop_button]),
            self.status, W.HBox([self.progress_bar, self.progress]), self.headline, self.failure,
            self.chart,
            self.table,
            self.predictions, self.prediction_table,
        ])
        state.observe(self._spec_changed, "spec")

    @property
    def redraw_interval(self) -> float:
        """Least seconds between two redraws while a run streams."""
        return self.gate.interval

    # -- charts ----------------------------------------------------------------------------------
    def _make_chart(self, momentum: str | None = None) -> Any:
        # A task may give a metric as a function or an object (MSE, F1, keypoint error): the
        # stream's keys are the names the Metrics callback gives them, found the same way.
        metrics = [get_metric(m)[0] for m in self.state.task().metrics()]
        self._headline_metric = f"valid_{metrics[0]}" if metrics else "valid_loss"
        self._trace_specs = chart_traces(metrics, _momentum_label(momentum))
        return build_chart(self._trace_specs)

    def _index_traces(self) -> None:
        self._traces = {spec.key: trace for spec, trace in zip(self._trace_specs, self.chart.data)}
        self._metric_keys = [spec.key for spec in self._trace_specs if spec.row == "metric"]
        self._metric_axis = metric_axis(())  # as build_chart made it

    def _new_chart(self, momentum: str | None = None) -> None:
        """A fresh figure for the next run, in the old one's place.

        Why fresh: anywidget (0.11) gives a widget model 2 s from its creation to import its
        front end and be ready, and drops every later message to a model that missed it,
        silently. plotly's front end is a 4.9 MB bundle imported per figure; at page load,
        with the other figures loading too and the CPU busy, the chart sometimes missed the
        deadline and stayed empty for the whole run. A figure made when Train is pressed loads
        alone, on an idle page. (Found by instrumenting the kernel and the page; the schedule
        plot and the playground load at page load and draw from their first state either way.)
        """
        with self._draw_lock:
            old = self.chart
            self.chart = self._make_chart(momentum)
            self._index_traces()
            self._versions = {}  # the new figure has drawn nothing yet
            self.children = tuple(self.chart if c is old else c for c in self.children)
        old.close()

    def redraw(self) -> None:
        """Copy what changed in the stream into the widgets: one message per figure."""
        with self._draw_lock:
            self.gate.drawn()
            stream = self.stream
            self._drawn_version = stream.version
            relabel = None
            if stream.generation != self._generation:  # a new fit: start from empty traces and table
                self._generation, self._versions, self._rows = stream.generation, {}, []
                changed = {key: (-1, _EMPTY, _EMPTY) for key in self._traces}
                # A run on several processes has no local optimiser to name the momentum trace
                # when it starts: its name comes with the relayed fit_begin (which sets progress
                # and the key). Fits not started here keep the generic name.
                momentum = self._traces.get("momentum")
                label = _momentum_label(stream.momentum_key)
                relayed = isinstance(self.run, ProcessRun) and not self.run.done
                if relayed and momentum is not None and stream.progress and momentum.name != label:
                    relabel = (momentum, label)
            else:
                changed = {}
            changed.update(stream.arrays(self._versions))
            edits = [(self._traces[k], xs, ys) for k, (_, xs, ys) in changed.items() if k in self._traces]
            axis = self._metric_axis
            if any(k in changed for k in self._metric_keys):
                axis = metric_axis(changed[k][2] if k in changed else _values(self._traces[k].y)
                                   for k in self._metric_keys)
            if edits or axis != self._metric_axis:
                with self.chart.lock, self.chart.batch_update():
                    for trace, xs, ys in edits:
                        trace.x, trace.y = xs, ys
                    if relabel is not None:
                        relabel[0].name = relabel[1]
                    if axis != self._metric_axis:  # in the same message as the values it fits
                        self.chart.layout.yaxis2.update(axis)
                        self._metric_axis = axis
            self._versions.update({k: version for k, (version, _, _) in changed.items()})
            if "loss" in changed:
                steps = changed["loss"][1]  # x of each training step's loss: its step
                self.current_step = int(steps[-1]) if len(steps) else -1
            new_rows = stream.epoch_rows(len(self._rows))
            if new_rows or not self._rows:
                self._rows.extend(new_rows)
                self.table.value = epoch_table_html(self._rows)
                # The latest epoch that has it: a run stopped during training ends with a row
                # of training values only, and the headline keeps the last validation value.
                value = next((r[self._headline_metric] for r in reversed(self._rows)
                              if r.get(self._headline_metric) is not None), None)
                self.headline.value = (f"{self._headline_metric.replace('_', ' ')} <b>{value:.4f}</b>"
                                       if value is not None else "")
            self._show_progress(stream.progress)
            if self._prediction is not None:
                self._show_prediction(self._prediction)
                self._prediction = None
            self.redraws += 1

    def redraw_if_stale(self) -> None:
        """Redraw when the stream has moved (or a prediction waits) since the last redraw."""
        if self.gate.pending or self._prediction is not None or self.stream.version != self._drawn_version:
            self.redraw()

    def _show_progress(self, p: dict[str, Any]) -> None:
        if not p:
            self.progress.value, self.progress_bar.value = "", 0.0
            return
        self.progress.value = (f"epoch {p['epoch']}/{p['epochs']} · {p['phase']} batch "
                               f"{p['batch']}/{p['batches']} · step {p['step']}")
        self.progress_bar.value = _fraction(p)

    def _show_prediction(self, view: PredictionView) -> None:
        if view.png:
            self.predictions.value = view.png
        self.predictions.layout.display = None if view.png else "none"
        self.prediction_table.value = view.html

    def _predict(self) -> None:
        """Sample predictions of the epoch that just ended, kept for the next redraw.

        Called on the training thread between steps, so the model is not changing under it.
        """
        learner = self._predict_from
        epoch = (self.stream.generation, self.stream.epoch_count)
        if learner is None or learner.task is None or epoch == self._predicted_epoch:
            return  # not a run of ours, or no epoch has ended since the last grid
        self._predicted_epoch = epoch
        try:
            self._prediction = prediction_view(learner.show_results(self.n_predictions))
        except Exception as e:  # the grid is a view: a task that cannot show results must not end the run
            self._prediction = PredictionView(
                html=f"<i>no sample predictions: {html.escape(type(e).__name__)}: {html.escape(str(e))}</i>")

    def _on_stream(self, stream: MetricStream, event: str) -> None:
        # On the training thread: redraw by wall-clock time, not per step or epoch (a run of
        # short epochs would redraw at each), and always at the end so the final state shows.
        # Predictions come with the redraws of epoch ends and the end, so they cost at most
        # one grid per redraw.
        if event == "fit_begin":
            self._relayed_start()
        if event == "fit_end" or self.gate.due():
            if event in ("epoch", "fit_end"):
                self._predict()
            self.redraw()

    # -- control ---------------------------------------------------------------------------------
    def start(self, processes: Any = None) -> AnyRun | None:
        """Train the state's spec: in this kernel (``processes`` 1) or on that many torchrun
        processes (default: the Processes field). A refused value sets ``state.error`` and
        starts nothing; so does a run already in progress or a spec that cannot build."""
        if self.run is not None and not self.run.done:
            self.state.error = "a run is already in progress; stop it first"
            return None
        try:
            nproc = check_processes(self.processes.value if processes is None else processes)
        except ValueError as e:
            self.state.error = str(e)
            return None
        return self._start_here() if nproc == 1 else self._start_processes(nproc)

    def _start_here(self) -> Run | None:
        try:
            learner = self.state.spec.build(task=self.state.task())
        except Exception as e:  # a spec that validates can still fail to build; keep the Studio alive
            self.state.error = f"could not build the run: {e}"
            return None
        self._new_chart(momentum_key(learner.optimizer))
        learner.add_callback(self.stream)
        self.learner = learner
        self._predict_from = learner if self.n_predictions else None
        self._prediction = None
        self.failure.value = ""
        self._show_prediction(PredictionView())
        with self._control_lock:
            self._set_status("running")
            self.run = learner.fit_async()
        self.run.on_done(self._finished)
        return self.run

    def _start_processes(self, nproc: int) -> ProcessRun | None:
        """Launch the spec on ``nproc`` processes; rank 0's relay feeds ``self.stream``.

        Nothing is built here (the ranks build the spec): a spec that fails to build fails on
        the ranks and shows as a failed run. Status is "starting" until the relayed fit begins
        (torchrun and the ranks' imports take seconds)."""
        spec, task = self.state.spec, self.state.task()
        self._new_chart()
        self.learner, self._predict_from, self._prediction = None, None, None
        self.failure.value = ""
        self._show_prediction(PredictionView())
        self.stream.clear()  # the last run's table and progress go now, not when the ranks are up
        self.redraw()
        folder = tempfile.TemporaryDirectory(prefix="torchdeck-weights-") if self.n_predictions else None
        weights = os.path.join(folder.name, "model.safetensors") if folder is not None else None
        try:
            launched = distributed.launch(spec, nproc, stream=self.stream, save=weights, capture=True)
        except Exception as e:  # torchrun could not start (no such interpreter, no free port, ...)
            if folder is not None:
                folder.cleanup()
            self.state.error = f"could not start the run on {nproc} processes: {e}"
            return None
        run = ProcessRun(launched, spec, weights=weights, cleanup=folder.cleanup if folder is not None else None)
        self._run_task = task
        with self._control_lock:
            self.run = run.start()
            self._set_status("starting")
        run.on_done(self._finished)
        return run

    def _relayed_start(self) -> None:
        """The relayed fit has begun: a run on several processes is now running."""
        with self._control_lock:
            if self._status == "starting" and isinstance(self.run, ProcessRun) and not self.run.done:
                self._set_status("running")

    def toggle_pause(self) -> None:
        """Pause a running run, resume a paused one; anything else is left alone."""
        with self._control_lock:
            run = self.run
            if run is None or run.done or self._status not in ("starting", "running", "paused"):
                return
            # A run on several processes is "starting" for seconds (torchrun, the ranks'
            # imports): a pause then waits in its control file and holds the ranks at step 0.
            if self._status in ("starting", "running"):
                run.pause()
                self._set_status("paused")
            else:
                run.resume()
                self._set_status("running")
            paused = self._status == "paused"
        if paused:  # show what came since the last redraw: nothing else will until Resume
            self.redraw_if_stale()

    def stop(self) -> None:
        with self._control_lock:
            if self.run is not None and not self.run.done:
                self._set_status("stopping")
                self.run.stop()

    def _finished(self, run: AnyRun) -> None:
        self._predict_from = None
        if isinstance(run, ProcessRun) and run.status == "finished" and run.weights:
            self._predict_from_weights(run)
        self.redraw_if_stale()
        detail = ""
        if run.error is not None:
            detail = f": {html.escape(type(run.error).__name__)}: {html.escape(str(run.error))}"
            self.failure.value = failure_html(run.error, run.traceback)
        with self._control_lock:
            self._set_status(run.status, detail)

    def _predict_from_weights(self, run: ProcessRun) -> None:
        """The end's prediction grid of a run on several processes: the spec built here with
        the weights its rank 0 saved (on the watcher thread, after the ranks have exited)."""
        try:
            learner = run.spec.build(task=self._run_task)
            learner.model.load_state_dict(load_file(run.weights))
        except Exception as e:  # the grid is a view: a failure here must not fail a finished run
            self._prediction = PredictionView(
                html=f"<i>no sample predictions: {html.escape(type(e).__name__)}: {html.escape(str(e))}</i>")
            return
        self._predict_from = learner
        try:
            self._predict()
        finally:
            self._predict_from = None

    def _set_status(self, status: str, detail: str = "") -> None:
        """Show ``status`` and set the buttons it allows (call with the control lock held)."""
        controls = CONTROLS.get(status, _RUNNING)
        self._status = status
        self.status.value = f"status: <b>{html.escape(status)}</b>{detail}"
        self.train_button.disabled = not controls.train
        self.pause_button.disabled = not controls.pause
        self.pause_button.description = controls.pause_label
        self.stop_button.disabled = not controls.stop

    def _spec_changed(self, change: dict[str, Any]) -> None:
        self.epochs.value = change["new"].train.epochs
        # A running run keeps its charts; a new task's traces come at the next start.
        if (self.run is None or self.run.done) and change["old"].task != change["new"].task:
            self._new_chart()
