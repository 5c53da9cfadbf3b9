"""Schedules as pure functions of the step (ParameterSchedulers.jl), and the Scheduler."""

from torchdeck.schedules._base import SCHEDULES, Schedule, register_schedule
from torchdeck.schedules._core import Constant, CosAnneal, Linear, Sequence
from torchdeck.schedules._scheduler import Scheduler
from torchdeck.schedules._spec import schedule_from_spec

__all__ = ["SCHEDULES", "Schedule", "register_schedule", "Constant", "Linear", "CosAnneal", "Sequence",
           "Scheduler", "schedule_from_spec"]
