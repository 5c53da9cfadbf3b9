"""The Studio's state: the spec being edited, and the last rejected edit.

Panels never build engine objects from their own fields: they propose a change to the
spec, the spec validates it, and every panel redraws from the spec it then holds.
"""

from __future__ import annotations

import json
import math
from typing import Any

import traitlets

from torchdeck import tasks
from torchdeck.spec import Experiment, SpecError
from torchdeck.tasks import Task

__all__ = ["StudioState"]


class StudioState(traitlets.HasTraits):
    spec = traitlets.Instance(Experiment, help="the run being edited; every panel observes it")
    error = traitlets.Unicode("", help="why the last edit was refused (one line), or empty")

    def __init__(self, spec: Experiment | None = None) -> None:
        super().__init__(spec=spec if spec is not None else Experiment())
        self._task_key: str | None = None
        self._task: Task | None = None

    def edit(self, **dotted: Any) -> bool:
        """Apply ``{"train.epochs": 3, ...}``; on a bad value keep the spec and set ``error``."""
        try:
            spec = self.spec.with_changes(**dotted)
        except (SpecError, ValueError) as e:
            self.error = str(e)
            return False
        return self.replace(spec)

    def replace(self, spec: Experiment) -> bool:
        """Take ``spec`` whole (a pasted YAML: fields it leaves out go back to their defaults);
        when its task or data fails to build, keep the spec and set ``error``."""
        try:
            self._task_for(spec)  # data and task options are checked by building them, before the spec changes
        except (SpecError, ValueError) as e:
            self.error = str(e)
            return False
        self.error = ""
        self.spec = spec
        return True

    def takes_augment(self) -> bool:
        """Whether the spec's task accepts a training augmentation (tabular tasks do not)."""
        return tasks.takes_augment(self.spec.task.name)

    def forget_task(self) -> None:
        """Build the task afresh at its next use: the files behind an unchanged spec changed
        (an upload replaced under the same name)."""
        self._task_key = None

    def task(self) -> Task:
        """The spec's task with its data, built once per task/data choice."""
        return self._task_for(self.spec)

    def _task_for(self, spec: Experiment) -> Task:
        # The augment pipeline is part of the task (it checks the pipeline when built), so an
        # augment edit rebuilds it too: ~20 ms for the built-in data, once per edit.
        key = json.dumps([spec.task.model_dump(), spec.data.model_dump(), spec.augment], sort_keys=True)
        if key != self._task_key:
            self._task = spec.build_task()
            self._task_key = key
        assert self._task is not None
        return self._task

    def steps_per_epoch(self) -> int:
        loader_size = len(self.task().data.train_idx)
        return max(1, math.ceil(loader_size / self.spec.train.batch_size))

    def total_steps(self) -> int:
        return self.spec.train.epochs * self.steps_per_epoch()
