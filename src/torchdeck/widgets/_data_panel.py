"""Task and data pickers: every registered task, the data it declares it reads (built-in, or
a folder or CSV under the data root), a preview of the first samples and the class balance.

The panel edits the spec only (``task``, ``data`` and, when the task needs another kind,
``model``); a refused edit leaves the spec, and so every picker, as it was, and says why.
"""

from __future__ import annotations

import html
import os
from typing import Any, Callable

import ipywidgets as W
import numpy as np

from torchdeck import tasks
from torchdeck.render import grid_image, to_png
from torchdeck.tasks import Grid, Task, TextTable
from torchdeck.widgets._state import StudioState

__all__ = ["DataPanel", "DATA_ROOT_ENV", "BALANCES", "resolve_in_root"]

# Where "folder" paths are looked up unless DataPanel(data_root=...) says otherwise.
DATA_ROOT_ENV = "TORCHDECK_DATA_ROOT"
BUILTIN, FOLDER = "built-in", "folder or CSV"
_TILE = 64  # preview tiles are enlarged (nearest neighbour) to about this many pixels


def resolve_in_root(root: str, path: str) -> str:
    """The real path of ``path`` (relative to ``root``, or absolute) if it lies inside ``root``;
    a ValueError otherwise. Symbolic links are resolved first, so a link cannot lead out."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"data path: give a folder or CSV file under the data root {root!r}, got {path!r}")
    real_root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(real_root, path.strip()))
    if os.path.commonpath([real_root, full]) != real_root:
        raise ValueError(f"data path: {path!r} is outside the data root {real_root!r}; allowed: paths under it "
                         f"(set {DATA_ROOT_ENV} or DataPanel(data_root=...) to read elsewhere)")
    if not os.path.exists(full):
        raise ValueError(f"data path: {path!r} does not exist under the data root {real_root!r}")
    return full


# -- the balance of the targets, by the task's target block --------------------------------------
def _bars(rows: list[tuple[str, float, str]]) -> str:
    """``(label, share in [0, 1], text)`` rows as an HTML bar list (widths are the data)."""
    top = max((share for _, share, _ in rows), default=0.0) or 1.0
    items = "".join(
        f'<div class="td-bar"><span class="td-bar-label">{html.escape(label)}</span>'
        f'<span class="td-bar-fill" style="width:{round(120 * share / top)}px"></span>'
        f'<span class="td-bar-value">{html.escape(text)}</span></div>' for label, share, text in rows)
    return f'<div class="td-bars">{items}</div>'


def _counts(names: tuple[str, ...], counts: np.ndarray, unit: str) -> list[tuple[str, float, str]]:
    total = float(counts.sum()) or 1.0
    return [(n, c / total, f"{int(c)} {unit}") for n, c in zip(names, counts)]


def _label_balance(task: Task, targets: Any) -> tuple[str, list[tuple[str, float, str]]]:
    counts = np.bincount(np.asarray(targets, np.int64), minlength=len(task.classes))
    return "Class balance (train)", _counts(task.classes, counts, "samples")


def _labels_balance(task: Task, targets: Any) -> tuple[str, list[tuple[str, float, str]]]:
    counts = np.asarray(targets).sum(axis=0)
    return "Images with each class (train)", _counts(task.classes, counts, "images")


def _mask_balance(task: Task, targets: Any) -> tuple[str, list[tuple[str, float, str]]]:
    counts = np.bincount(np.asarray(targets, np.int64).ravel(), minlength=len(task.classes))
    total = float(counts.sum()) or 1.0
    rows = [(n, c / total, f"{100 * c / total:.1f} %") for n, c in zip(task.classes, counts)]
    return "Pixels per class (train)", rows


def _number_histogram(task: Task, targets: Any) -> tuple[str, list[tuple[str, float, str]]]:
    values = np.asarray(targets, np.float64)
    counts, edges = np.histogram(values[np.isfinite(values)], bins=8)
    return "Target histogram (train)", _counts(tuple(f"{a:.4g}–{b:.4g}" for a, b in zip(edges, edges[1:])),
                                               counts, "rows")


def _keypoint_spread(task: Task, targets: Any) -> tuple[str, list[tuple[str, float, str]]]:
    points = np.asarray(targets, np.float64)  # (N, K, 2)
    rows = []
    for k in range(points.shape[1]):
        x, y = points[:, k, 0], points[:, k, 1]
        rows.append((f"point {k}", 1.0, f"x {x.mean():.1f} ± {x.std():.1f}, y {y.mean():.1f} ± {y.std():.1f} px"))
    return "Keypoints (train, mean ± std)", rows


# target block -> fn(task, training targets) -> (title, bar rows); a task with another block shows none
BALANCES: dict[str, Callable[[Task, Any], tuple[str, list[tuple[str, float, str]]]]] = {
    "label": _label_balance,
    "labels": _labels_balance,
    "mask": _mask_balance,
    "number": _number_histogram,
    "keypoints": _keypoint_spread,
}


def _balance_html(task: Task) -> str:
    fn = BALANCES.get(task.blocks[1])
    if fn is None:
        return ""
    title, rows = fn(task, task.samples("train")[1])
    return f"<b>{html.escape(title)}</b>{_bars(rows)}"


def _summary(task: Task) -> str:
    d = task.data
    images = getattr(d, "images", None)
    what = (f"{len(d)} images {images.shape[1]}×{images.shape[2]}" if images is not None else f"{len(d)} rows")
    classes = getattr(task, "classes", ())
    kinds = f", {len(classes)} classes" if classes else ""
    return (f"{html.escape(str(getattr(d, 'name', '')))}: {what}{kinds}; "
            f"train {len(d.train_idx)} / valid {len(d.valid_idx)}")


class DataPanel(W.VBox):
    """Pick the task, then its data: a built-in set the task declares (``Task.builtin_data``)
    or a folder / CSV under the data root (``Task.data_from_path``). Shows ``task.show_batch``
    (a captioned grid, or a table of the first rows for tabular tasks) and the targets'
    balance. Errors appear under the pickers; the spec keeps the last good choice.

    Args:
        state: the Studio state whose spec this panel edits.
        samples: how many samples the preview shows.
        data_root: the folder paths are read under; default ``$TORCHDECK_DATA_ROOT``, else the
            working directory. Paths outside it are refused.
    """

    def __init__(self, state: StudioState, *, samples: int = 16, data_root: str | os.PathLike | None = None) -> None:
        self.state = state
        self.n_samples = samples
        self.data_root = os.path.realpath(os.fspath(data_root) if data_root is not None
                                          else os.environ.get(DATA_ROOT_ENV) or os.getcwd())
        spec = state.spec
        self.task_picker = W.Dropdown(options=tasks.available(), value=spec.task.name, description="Task")
        self.source = W.ToggleButtons(options=[BUILTIN, FOLDER], value=BUILTIN, description="Source")
        self.data_picker = W.Dropdown(options=[], description="Data")
        self.path = W.Text(placeholder=f"a folder or .csv under {self.data_root}", description="Path")
        self.load = W.Button(description="Load")
        self.path_row = W.HBox([self.path, self.load], layout=W.Layout(display="none"))
        self.message = W.HTML()
        self.message.add_class("td-error")
        self.summary = W.HTML()
        self.samples = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.samples.add_class("td-samples")
        self.table = W.HTML(layout=W.Layout(display="none"))
        self.table.add_class("td-table")
        self.balance = W.HTML()
        self.balance.add_class("td-balance")
        self._syncing = False
        self.task_picker.observe(lambda ch: self._pick_task(ch["new"]), "value")
        self.data_picker.observe(lambda ch: self._pick_builtin(ch["new"]), "value")
        self.source.observe(lambda ch: self._show_source(ch["new"]), "value")
        self.load.on_click(lambda _: self.load_path(self.path.value))
        super().__init__([W.HTML("<b>Task and data</b>"), self.task_picker, self.source, self.data_picker,
                          self.path_row, self.message, self.summary, self.samples, self.table, self.balance])
        self._shown: tuple | None = None
        state.observe(lambda _: self.refresh(), "spec")
        self.refresh()

    # -- what a task offers ------------------------------------------------------------------
    @staticmethod
    def choices(task_name: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """The built-in data the task declares: label -> (data set name, options)."""
        return {label: (name, dict(options)) for label, (name, options) in tasks.get(task_name).builtin_data.items()}

    def _label_of(self, task_name: str, data_name: str, options: dict[str, Any]) -> str | None:
        """The built-in choice the data is: the one with these options, else one of the same
        data set (a spec edited to fewer or smaller images is still that built-in set, not a
        folder); None for data read from a path."""
        choices = self.choices(task_name)
        for label, choice in choices.items():
            if choice == (data_name, options):
                return label
        return next((label for label, (name, _) in choices.items() if name == data_name), None)

    # -- edits ---------------------------------------------------------------------------------
    def _edit(self, changes: dict[str, Any]) -> bool:
        ok = self.state.edit(**changes)
        self.message.value = "" if ok else html.escape(self.state.error)
        if not ok:
            self._sync_pickers()  # refused: show the choice the spec still holds
        return ok

    def _model_changes(self, task_name: str) -> dict[str, Any]:
        """A backbone the new task can use: tables and images need different kinds."""
        cls = tasks.get(task_name)
        tabular = tasks.tabular_backbones()
        if (self.state.spec.model.backbone in tabular) == (cls.default_backbone in tabular):
            return {}
        return {"model.backbone": cls.default_backbone, "model.options": {}, "model.weights": None}

    def _pick_task(self, task_name: str) -> None:
        if self._syncing or task_name == self.state.spec.task.name:
            return
        choices = self.choices(task_name)
        changes: dict[str, Any] = {"task.name": task_name, "task.options": {}, **self._model_changes(task_name)}
        if self.state.spec.augment is not None and not tasks.takes_augment(task_name):
            # Image augmentation means nothing to a table; the spec would refuse the task with it.
            changes["augment"] = None
        if choices:  # its default data: the data of the last task may be nothing this one reads
            name, options = next(iter(choices.values()))
            changes.update({"data.name": name, "data.options": options})
        if self._edit(changes):
            self.source.value = BUILTIN

    def _pick_builtin(self, label: str | None) -> None:
        if self._syncing or label is None:
            return
        name, options = self.choices(self.state.spec.task.name)[label]
        spec = self.state.spec
        if (name, options) != (spec.data.name, spec.data.options):
            self._edit({"data.name": name, "data.options": options})

    def load_path(self, path: str) -> bool:
        """Read ``path`` (under the data root) as this task's data; False, with the reason
        shown, when it is outside the root, unreadable or not data this task reads."""
        task_cls = tasks.get(self.state.spec.task.name)
        try:
            name, options = task_cls.data_from_path(resolve_in_root(self.data_root, path))
        except ValueError as e:
            self.message.value = html.escape(str(e))
            return False
        return self._edit({"data.name": name, "data.options": options})

    def _show_source(self, source: str) -> None:
        self.data_picker.layout.display = "none" if source == FOLDER else None
        self.path_row.layout.display = None if source == FOLDER else "none"

    # -- drawing ---------------------------------------------------------------------------------
    def _sync_pickers(self) -> None:
        spec = self.state.spec
        self._syncing = True
        try:
            self.task_picker.value = spec.task.name
            labels = list(self.choices(spec.task.name))
            current = self._label_of(spec.task.name, spec.data.name, dict(spec.data.options))
            self.data_picker.options = labels
            self.data_picker.value = current
            if current is None and labels:  # data read from a path: the folder source shows it
                self.source.value = FOLDER
            path = spec.data.options.get("root") or spec.data.options.get("path") or spec.data.options.get(
                "images_dir")
            if current is None and isinstance(path, str):
                folder = os.path.dirname(path) if spec.data.name == "image_mask_folder" else path
                inside = os.path.commonpath([self.data_root, os.path.realpath(folder)]) == self.data_root
                self.path.value = os.path.relpath(folder, self.data_root) if inside else folder
        finally:
            self._syncing = False

    def refresh(self) -> None:
        spec = self.state.spec
        key = (spec.task.model_dump_json(), spec.data.model_dump_json())
        if key == self._shown:
            return
        self._sync_pickers()
        task = self.state.task()
        shown = task.show_batch(self.n_samples)
        RENDERERS[type(shown)](self, shown)
        self.summary.value = _summary(task)
        self.balance.value = _balance_html(task)
        self._shown = key

    def _show_grid(self, grid: Grid) -> None:
        scale = max(1, _TILE // max(grid.images.shape[1:3]))
        self.samples.value = to_png(grid_image(grid.images, grid.captions, columns=8, scale=scale))
        self.samples.layout.display, self.table.layout.display = None, "none"

    def _show_table(self, table: TextTable) -> None:
        self.table.value = table._repr_html_()
        self.samples.layout.display, self.table.layout.display = "none", None


# what show_batch returned -> how the panel shows it
RENDERERS: dict[type, Callable[[DataPanel, Any], None]] = {Grid: DataPanel._show_grid, TextTable: DataPanel._show_table}
