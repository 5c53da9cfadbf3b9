"""Every built-in task, on each built-in data set it declares, trained from the Studio as a
user would: pick the task and the data in the Data panel, one epoch, press Train. The charts,
the epoch table and the sample predictions are checked against the run's own records (the
Recorder's history); the panels that have nothing to do for a table (augmentation) must not
break when a tabular task is picked.
"""

from __future__ import annotations

import html
import math
import re

import pytest

from torchdeck import data as D
from torchdeck import tasks
from torchdeck.widgets import Studio
from torchdeck.widgets._data_panel import BUILTIN
from torchdeck.widgets._monitor_chart import UNIT_RANGE, metric_axis

# Every (task, built-in data label) the registry declares: a task added later is covered too.
CASES = [(name, label) for name in tasks.available() for label in tasks.get(name).builtin_data]

# Fewer, smaller images for the data sets whose defaults take seconds per step on 2 cores
# (shapes: 1000 images of 64x64; segmentation took 26 s an epoch). Set on the spec (in the page
# a user would paste it in the YAML panel); the data is still the built-in set the picker shows.
SMALL = {"shapes": {"n": 120, "size": 32}}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _head(table_html: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r"<th>(.*?)</th>", table_html)]


def _body_rows(table_html: str) -> list[list[str]]:
    body = table_html.split("<tbody>")[1]
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r)] for r in re.findall(r"<tr>(.*?)</tr>", body)]


def _trace(fig, name: str):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, f"no single trace named {name!r}: {[t.name for t in fig.data]}"
    return found[0]


def _pick(studio: Studio, task_name: str, label: str) -> None:
    """Task and data through the Data panel's pickers, as a click in the page would."""
    panel = studio.data_panel
    panel.task_picker.value = task_name
    panel.data_picker.value = label
    assert studio.state.error == "" and panel.message.value == ""
    data_name, options = tasks.get(task_name).builtin_data[label]
    assert (studio.spec.task.name, studio.spec.data.name, studio.spec.data.options) == (task_name, data_name, options)
    if data_name in SMALL:
        assert studio.state.edit(**{"data.options": {**options, **SMALL[data_name]}}), studio.state.error
    # The smaller set is still that built-in choice, not "a folder".
    assert (panel.source.value, panel.data_picker.value) == (BUILTIN, label)


@pytest.fixture
def studio():
    made: list[Studio] = []

    def make() -> Studio:
        made.append(Studio())
        return made[-1]
    yield make
    for s in made:
        run = s.monitor.run
        if run is not None and not run.done:
            run.stop()
            run.join(30)


@pytest.mark.parametrize(("task_name", "label"), CASES, ids=[f"{t}-{d}" for t, d in CASES])
def test_every_task_trains_from_the_studio(studio, task_name, label):
    s = studio()
    _pick(s, task_name, label)
    mon = s.monitor
    mon.epochs.value = 1
    assert s.state.edit(**{"train.batch_size": 256}), s.state.error  # digits: 6 steps, not 23
    assert s.spec.train.epochs == 1
    mon.train_button.click()
    run = mon.run
    assert run is not None, s.state.error
    assert run.join(120), "the run did not end"
    assert run.status == "finished", run.traceback
    assert "finished" in mon.status.value and mon.failure.value == ""
    assert s.state.error == ""

    history = mon.learner.history
    # The step-loss line is the Recorder's, step for step.
    losses = _trace(mon.chart, "train loss (step)")
    assert len(history.losses) == s.state.steps_per_epoch()
    assert list(losses.y) == pytest.approx(list(history.losses), rel=1e-6)
    assert list(losses.x) == list(range(len(history.losses)))  # step t: the schedules' t, from 0

    # The metric row: one trace per validation metric the run recorded, with its value.
    (row,) = history.epochs
    metric_keys = [k for k in row if k.startswith("valid_") and k != "valid_loss"]
    assert metric_keys, f"{task_name}: the run recorded no metric: {row}"
    metric_traces = [t for t in mon.chart.data if t.yaxis == "y2"]
    assert sorted(t.name for t in metric_traces) == sorted(k.replace("_", " ") for k in metric_keys)
    for key in metric_keys:
        trace = _trace(mon.chart, key.replace("_", " "))
        assert list(trace.y) == pytest.approx([row[key]])
        assert list(trace.x) == [len(history.losses)]
    # ... on an axis that shows every value: not clipped to 0..1 for errors in units (MSE, pixels).
    values = [row[k] for k in metric_keys]
    axis = mon.chart.layout.yaxis2
    if axis.autorange is not True:
        lo, hi = axis.range
        assert all(lo <= v <= hi for v in values), f"metric axis {axis.range} clips {values}"
    if any(not 0.0 <= v <= 1.0 for v in values):
        assert axis.autorange is True
    headline = metric_keys[0]
    assert f"{headline.replace('_', ' ')} <b>{row[headline]:.4f}</b>" == mon.headline.value

    # The epoch table: one row, the loss and metric columns, the recorded values.
    head = _head(mon.table.value)
    assert head == ["epoch", "train loss", "valid loss", *(k.replace("_", " ") for k in metric_keys), "time"]
    (cells,) = _body_rows(mon.table.value)
    assert cells[0] == "1"
    assert cells[1:-1] == [f"{row[k]:.4f}" for k in ("train_loss", "valid_loss", *metric_keys)]

    # Sample predictions: an image grid for images, an HTML table for tables.
    if tasks.get(task_name).blocks[0] == "image":
        assert bytes(mon.predictions.value).startswith(PNG_MAGIC)
        assert mon.predictions.layout.display is None
        assert mon.prediction_table.value == ""
    else:
        assert mon.predictions.layout.display == "none"
        assert mon.prediction_table.value.startswith("<table")
        assert "prediction" in _head(mon.prediction_table.value)


IMAGE_TASKS = [name for name in tasks.available() if tasks.get(name).blocks[0] == "image"]


@pytest.mark.parametrize("task_name", IMAGE_TASKS)
def test_every_image_task_trains_with_the_augmentation_built_in_the_panel(studio, task_name):
    s = studio()
    _pick(s, task_name, next(iter(tasks.get(task_name).builtin_data)))
    for step in ("flip_x", "rotate"):
        assert s.augment_panel.add_step(step), s.state.error
    mon = s.monitor
    mon.epochs.value = 1
    assert s.state.edit(**{"train.batch_size": 256}), s.state.error
    mon.train_button.click()
    assert mon.run is not None and mon.run.join(120)
    assert mon.run.status == "finished", mon.run.traceback
    # The run trained on the pipeline the panel shows, and streamed every step.
    assert mon.learner.task.augment.to_spec() == s.spec.augment
    assert [next(iter(t)) for t in s.spec.augment["pipeline"]["transforms"]] == ["flip_x", "rotate"]
    assert list(_trace(mon.chart, "train loss (step)").y) == pytest.approx(list(mon.learner.history.losses))


def test_picking_a_tabular_task_leaves_the_augmentation_out_and_the_panels_working(studio):
    s = studio()
    assert s.augment_panel.add_step("flip_x") and s.spec.augment is not None
    s.augment_panel.source_picker.value = "task"  # previewing the digits: a table has none
    s.data_panel.task_picker.value = "tabular-regression"
    # The task is taken; the image augmentation it cannot use is dropped rather than the pick refused.
    assert s.state.error == "" and s.data_panel.message.value == ""
    assert (s.spec.task.name, s.spec.data.name, s.spec.augment) == ("tabular-regression", "diabetes", None)
    assert s.augment_panel.rows.children == ()
    # A table has no images to preview: the panel falls back to the photo and still draws.
    assert s.augment_panel.source == s.augment_panel.source_picker.value == "photo"
    assert bytes(s.augment_panel.image.value).startswith(PNG_MAGIC)

    # The schedule plot spans the new run: steps from the diabetes rows, independently counted.
    train_rows = len(D.load("diabetes").train_idx)
    per_epoch = math.ceil(train_rows / s.spec.train.batch_size)
    total = s.spec.train.epochs * per_epoch
    assert s.schedule_panel.summary.value.startswith(f"{total} steps ({s.spec.train.epochs} epochs × {per_epoch} steps)")

    # And back to images: the augmentation can be added again.
    s.data_panel.task_picker.value = "image-classification"
    assert s.state.error == "" and s.spec.data.name == "digits"


class _RefusingTask(tasks.ImageClassification):
    """A task that declares the digits but refuses every data set, as a task whose checks fail would."""

    builtin_data = {"digits": ("digits", {})}

    def __init__(self, data, **options) -> None:
        raise ValueError(f"{self.name}: refuses every data set, got {getattr(data, 'name', data)!r}")


@pytest.fixture
def refusing_task():
    name = "zz-refusing-task"  # registered for this test only, then taken out of the registry
    tasks.register_task(name)(_RefusingTask)
    yield name
    del tasks.TASKS[name]


def test_a_refused_task_keeps_every_picker_and_panel_on_the_spec(studio, refusing_task):
    s = studio()
    s.data_panel.task_picker.value = "tabular-classification"
    s.data_panel.data_picker.value = "wine"
    before = s.spec
    s.data_panel.task_picker.value = refusing_task
    assert s.spec == before
    # It was tried on its own default data (the wine means nothing to it), and refused by name.
    assert s.state.error == f"task.options: {refusing_task}: refuses every data set, got 'digits'"
    assert html.unescape(s.data_panel.message.value) == s.state.error
    assert (s.data_panel.task_picker.value, s.data_panel.data_picker.value) == ("tabular-classification", "wine")
    # The monitor still trains the task the spec holds.
    assert [t.name for t in s.monitor.chart.data if t.yaxis == "y2"] == ["valid accuracy"]


def test_the_augment_panel_says_a_tabular_task_takes_no_augmentation(studio):
    s = studio()
    s.data_panel.task_picker.value = "tabular-classification"
    panel = s.augment_panel
    assert panel.add_button.disabled and panel.picker.disabled
    assert "takes no augmentation" in html.unescape(panel.message.value)
    s.data_panel.task_picker.value = "image-classification"
    assert not panel.add_button.disabled and panel.message.value == ""


@pytest.mark.parametrize(("values", "fixed"), [
    ((), True),                              # nothing drawn yet: the share axis
    (([0.0, 0.5, 1.0],), True),              # accuracy at both ends stays on 0..1
    (([0.7], [0.9, float("nan")]), True),    # a NaN (a diverged epoch) does not widen the axis
    (([5375.8],), False),                    # MSE of the diabetes target
    (([0.9], [3.9]), False),                 # a share beside a pixel error
    (([-0.2],), False),                      # R² can be negative
])
def test_the_metric_axis_fits_its_values(values, fixed):
    axis = metric_axis(values)
    if fixed:
        assert axis == {"autorange": False, "range": list(UNIT_RANGE)}
        assert UNIT_RANGE[0] <= 0.0 and UNIT_RANGE[1] > 1.0  # 1.0 drawn whole
    else:
        assert axis == {"autorange": True, "range": None}
