"""Jupyter widgets over the engine: the Studio and its panels (needs the `ui` extra)."""

from torchdeck.widgets._augment_panel import AugmentPanel
from torchdeck.widgets._chain_panel import ChainPanel
from torchdeck.widgets._data_panel import DataPanel
from torchdeck.widgets._monitor import TrainingMonitor
from torchdeck.widgets._playground import Playground
from torchdeck.widgets._schedule_panel import SchedulePanel
from torchdeck.widgets._spec_panel import SpecPanel
from torchdeck.widgets._state import StudioState
from torchdeck.widgets._studio import Studio

__all__ = ["Studio", "StudioState", "DataPanel", "ChainPanel", "SchedulePanel", "SpecPanel", "TrainingMonitor",
           "Playground", "AugmentPanel"]
