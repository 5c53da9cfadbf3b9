"""The Studio: every panel on one page, all editing one spec."""

from __future__ import annotations

import html
from importlib import resources

import ipywidgets as W
import traitlets

from torchdeck.spec import Experiment
from torchdeck.widgets._augment_panel import AugmentPanel
from torchdeck.widgets._chain_panel import ChainPanel
from torchdeck.widgets._data_panel import DataPanel
from torchdeck.widgets._monitor import TrainingMonitor
from torchdeck.widgets._playground import Playground
from torchdeck.widgets._schedule_panel import SchedulePanel
from torchdeck.widgets._spec_panel import SpecPanel
from torchdeck.widgets._state import StudioState

__all__ = ["Studio"]


def _panel(widget: W.Widget) -> W.Widget:
    widget.add_class("td-panel")
    return widget


class Studio(W.VBox):
    """``Studio()`` in a notebook or Voila. Nothing trains until Train is pressed, so the
    notebook that shows it finishes at once (Voila shows nothing before that)."""

    def __init__(self, spec: Experiment | None = None) -> None:
        self.state = StudioState(spec)
        self.data_panel = DataPanel(self.state)
        self.augment_panel = AugmentPanel(self.state)
        self.chain_panel = ChainPanel(self.state)
        self.schedule_panel = SchedulePanel(self.state)
        self.monitor = TrainingMonitor(self.state)
        # The schedule plot marks the run's step; it moves when the monitor redraws (<= 10/s).
        traitlets.dlink((self.monitor, "current_step"), (self.schedule_panel, "current_step"))
        self.playground = Playground(state=self.state)  # races the Studio's chain against others
        self.spec_panel = SpecPanel(self.state)
        self.error = W.HTML()
        self.error.add_class("td-error")
        self.state.observe(lambda ch: setattr(self.error, "value", html.escape(ch["new"])), "error")
        spec_box = W.Accordion([self.spec_panel], titles=("Spec (YAML) and script",), selected_index=None)
        css = resources.files("torchdeck.widgets").joinpath("studio.css").read_text()
        title = W.HTML("torchdeck Studio")
        title.add_class("td-title")
        super().__init__([
            W.HTML(f"<style>{css}</style>"), title, self.error,
            W.HBox([W.VBox([_panel(self.data_panel), _panel(self.augment_panel), _panel(self.chain_panel),
                            _panel(self.schedule_panel)],
                           layout=W.Layout(width="620px")),
                    W.VBox([_panel(self.monitor), _panel(self.playground)])],
                   layout=W.Layout(flex_flow="row wrap", align_items="flex-start")),
            spec_box,
        ])

    @property
    def spec(self) -> Experiment:
        return self.state.spec
