"""Task and data set pickers with a sample grid of real images and their labels."""

from __future__ import annotations

import ipywidgets as W

from torchdeck import data, tasks
from torchdeck.render import grid_image, to_png
from torchdeck.widgets._state import StudioState

__all__ = ["DataPanel"]


class DataPanel(W.VBox):
    """Pick the task and the data set; shows ``task.show_batch`` as a captioned grid."""

    def __init__(self, state: StudioState, *, samples: int = 16) -> None:
        self.state = state
        self.n_samples = samples
        spec = state.spec
        self.task_picker = W.Dropdown(options=tasks.available(), value=spec.task.name, description="Task")
        self.data_picker = W.Dropdown(options=data.available(), value=spec.data.name, description="Data")
        self.summary = W.HTML()
        self.samples = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.samples.add_class("td-samples")
        self.task_picker.observe(lambda ch: self._pick("task.name", ch["new"]), "value")
        self.data_picker.observe(lambda ch: self._pick("data.name", ch["new"]), "value")
        super().__init__([W.HTML("<b>Task and data</b>"), self.task_picker, self.data_picker, self.summary, self.samples])
        self._shown: tuple | None = None
        state.observe(lambda _: self.refresh(), "spec")
        self.refresh()

    def _pick(self, field: str, value: str) -> None:
        if not self.state.edit(**{field: value}):  # refused: show the choice the spec still holds
            self.task_picker.value, self.data_picker.value = self.state.spec.task.name, self.state.spec.data.name

    def refresh(self) -> None:
        spec = self.state.spec
        key = (spec.task.model_dump_json(), spec.data.model_dump_json())
        if key == self._shown:
            return
        self.task_picker.value, self.data_picker.value = spec.task.name, spec.data.name
        task = self.state.task()
        grid = task.show_batch(self.n_samples)
        self.samples.value = to_png(grid_image(grid.images, grid.captions, columns=8, scale=5))
        d = task.data
        self.summary.value = (f"{d.name}: {len(d)} images {d.images.shape[1]}×{d.images.shape[2]}, "
                              f"{len(d.classes)} classes; train {len(d.train_idx)} / valid {len(d.valid_idx)}")
        self._shown = key
