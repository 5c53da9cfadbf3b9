"""Task and data pickers: every registered task with a short description, the data it
declares it reads (built-in, a folder or CSV under the data root, or an upload unpacked under
it), a preview of the first samples and the class balance.

The panel edits the spec only (``task``, ``data`` and, when the task needs another kind,
``model``); a refused edit leaves the spec, and so every picker, as it was, and says why.
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
from typing import Any, Callable

import ipywidgets as W
import numpy as np

from torchdeck import tasks
from torchdeck.render import grid_image, to_png
from torchdeck.tasks import Grid, Task, TextTable
from torchdeck.widgets._data_upload import (ACCEPT, MAX_BYTES, MAX_FILES, UPLOADS, Staged, commit, csv_header,
                                            discard, stage)
from torchdeck.widgets._state import StudioState

__all__ = ["DataPanel", "DATA_ROOT_ENV", "BALANCES", "resolve_in_root", "task_description"]

# Where "folder" paths are looked up unless DataPanel(data_root=...) says otherwise.
DATA_ROOT_ENV = "TORCHDECK_DATA_ROOT"
BUILTIN, FOLDER, UPLOAD = "built-in", "folder or CSV", "upload"
# Tasks whose input block is this read one CSV and need its target column named.
TABLE = "table"
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


# -- what the task and the data are ----------------------------------------------------------------
_ROLE = re.compile(r":\w+:`~?(?:[\w.]*\.)?([^`.]+)`")  # :class:`~torchdeck.data.Table` -> Table
_LITERAL = re.compile(r"``([^`]+)``")


def task_description(task_cls: type[Task]) -> str:
    """One paragraph on a task: its ``description`` attribute when it has one, else the first
    paragraph of its own docstring (not an inherited one: the base class's says nothing of it)."""
    text = getattr(task_cls, "description", None) or (task_cls.__dict__.get("__doc__") or "").strip()
    return " ".join(text.split("\n\n")[0].split())


def _description_html(task_cls: type[Task]) -> str:
    text = html.escape(task_description(task_cls) or "(no description)")
    text = _ROLE.sub(r"<code>\1</code>", _LITERAL.sub(r"<code>\1</code>", text))
    return f"<b>{html.escape(task_cls.name)}</b>: {text}"


def _summary(task: Task, origin: str) -> str:
    d = task.data
    images = getattr(d, "images", None)
    what = (f"{len(d)} images {images.shape[1]}×{images.shape[2]}" if images is not None else f"{len(d)} rows")
    classes = tuple(getattr(task, "classes", ()))
    shown = ", ".join(classes[:8]) + (", …" if len(classes) > 8 else "")
    kinds = f", {len(classes)} classes ({shown})" if classes else ""
    return (f"{html.escape(str(getattr(d, 'name', '')))}: {html.escape(what + kinds)}; "
            f"train {len(d.train_idx)} / valid {len(d.valid_idx)}; {html.escape(origin)}")


def _data_path(options: dict[str, Any]) -> str | None:
    """The folder or file a data set read from a path reads (its first path option)."""
    path = options.get("root") or options.get("path") or options.get("images_dir")
    return path if isinstance(path, str) else None


@dataclasses.dataclass
class _PendingTable:
    """A CSV waiting for its target column: at ``path`` already, or staged (an upload)."""

    task: str
    path: str
    staged: Staged | None


class DataPanel(W.VBox):
    """Pick the task (its description shows underneath), then its data: a built-in set the task
    declares (``Task.builtin_data``), a folder / CSV under the data root
    (``Task.data_from_path``), or an uploaded ``.zip`` / ``.csv``, unpacked under
    ``<data root>/uploads/<name>/`` and then read exactly as that folder / CSV would be. Tabular
    tasks read a CSV with a target column picked from its header. Shows ``task.show_batch``
    (a captioned grid, or a table of the first rows for tabular tasks) and the targets'
    balance. Errors appear under the pickers; the spec keeps the last good choice.

    Args:
        state: the Studio state whose spec this panel edits.
        samples: how many samples the preview shows.
        data_root: the folder paths are read under; default ``$TORCHDECK_DATA_ROOT``, else the
            working directory. Paths outside it are refused.
        max_upload_bytes / max_upload_files: what one upload may unpack to.
    """

    def __init__(self, state: StudioState, *, samples: int = 16, data_root: str | os.PathLike | None = None,
                 max_upload_bytes: int = MAX_BYTES, max_upload_files: int = MAX_FILES) -> None:
        self.state = state
        self.n_samples = samples
        self.data_root = os.path.realpath(os.fspath(data_root) if data_root is not None
                                          else os.environ.get(DATA_ROOT_ENV) or os.getcwd())
        for field, value in (("max_upload_bytes", max_upload_bytes), ("max_upload_files", max_upload_files)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DataPanel: {field} must be a positive integer, got {value!r}")
        self.max_upload_bytes, self.max_upload_files = max_upload_bytes, max_upload_files
        spec = state.spec
        self.task_picker = W.Dropdown(options=tasks.available(), value=spec.task.name, description="Task")
        self.description = W.HTML()
        self.description.add_class("td-description")
        self.source = W.ToggleButtons(options=[BUILTIN, FOLDER, UPLOAD], value=BUILTIN, description="Source")
        self.data_picker = W.Dropdown(options=[], description="Data")
        self.path = W.Text(placeholder=f"a folder or .csv under {self.data_root}", description="Path")
        self.load = W.Button(description="Load")
        self.path_row = W.HBox([self.path, self.load], layout=W.Layout(display="none"))
        self.upload = W.FileUpload(accept=ACCEPT, multiple=False, description="Upload .zip / .csv")
        self.upload_help = W.HTML(
            f"A .zip of a folder per class (image classification), images/ + masks/ (segmentation) or images "
            f"and one .csv (image CSV, multi-label); a .csv for tabular tasks. Unpacked under "
            f"{html.escape(os.path.join(self.data_root, UPLOADS))}/&lt;name&gt;/; at most "
            f"{max_upload_files} files, {max_upload_bytes / 2 ** 20:.4g} MB unpacked.")
        self.upload_help.add_class("td-help")
        self.upload_row = W.VBox([self.upload, self.upload_help], layout=W.Layout(display="none"))
        self.target = W.Dropdown(options=[], description="Target")
        self.use_table_button = W.Button(description="Use this table")
        self.target_row = W.HBox([self.target, self.use_table_button], layout=W.Layout(display="none"))
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
        self._pending: _PendingTable | None = None
        self.task_picker.observe(lambda ch: self._pick_task(ch["new"]), "value")
        self.data_picker.observe(lambda ch: self._pick_builtin(ch["new"]), "value")
        self.source.observe(lambda ch: self._show_source(ch["new"]), "value")
        self.load.on_click(lambda _: self.load_path(self.path.value))
        self.upload.observe(self._uploaded, "value")
        self.use_table_button.on_click(lambda _: self.use_table())
        super().__init__([W.HTML("<b>Task and data</b>"), self.task_picker, self.description, self.source,
                          self.data_picker, self.path_row, self.upload_row, self.target_row, self.message,
                          self.summary, self.samples, self.table, self.balance])
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

    @staticmethod
    def _reads_table(task_name: str) -> bool:
        return tasks.get(task_name).blocks[0] == TABLE

    # -- edits ---------------------------------------------------------------------------------
    def _edit(self, changes: dict[str, Any]) -> bool:
        ok = self.state.edit(**changes)
        self.message.value = "" if ok else html.escape(self.state.error)
        if not ok:
            self._sync_pickers()  # refused: show the choice the spec still holds
        return ok

    def _error(self, text: str) -> bool:
        self.message.value = html.escape(text)
        return False

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
        shown, when it is outside the root, unreadable or not data this task reads. For a
        tabular task, a CSV file offers its columns as the target first (True), and
        :meth:`use_table` applies it."""
        task_name = self.state.spec.task.name
        task_cls = tasks.get(task_name)
        try:
            full = resolve_in_root(self.data_root, path)
            if self._reads_table(task_name):
                return self._offer_table(full, None)
            name, options = task_cls.data_from_path(full)
        except ValueError as e:
            return self._error(str(e))
        return self._edit({"data.name": name, "data.options": options})

    # -- uploads ---------------------------------------------------------------------------------
    def load_upload(self, filename: str, content: bytes) -> bool:
        """Write an uploaded ``.zip`` (unpacked) or ``.csv`` under ``<data root>/uploads/<name>/``
        and read it as this task's data, as :meth:`load_path` would read that folder or CSV.
        False, with the reason shown, when the upload or its data is refused: the spec and any
        earlier upload of that name then stay as they were. For a tabular task the CSV waits
        for its target column (True; :meth:`use_table` applies it)."""
        task_name = self.state.spec.task.name
        task_cls = tasks.get(task_name)
        where = f"upload {filename!r}"
        self._drop_pending()
        if not self._reads_table(task_name) and str(filename).lower().endswith(".csv"):
            return self._error(f"{where}: {task_name} reads images; upload a .zip holding them (with the .csv listing "
                               "them, if the task reads one), not a lone .csv")
        try:
            staged = stage(self.data_root, filename, content, max_bytes=self.max_upload_bytes,
                           max_files=self.max_upload_files)
        except ValueError as e:
            return self._error(str(e))
        if self._reads_table(task_name):
            if not staged.entry:
                discard(staged)
                return self._error(f"{where}: {task_name} reads one .csv file (or a .zip with one .csv at its top); "
                                   "this upload has none")
            return self._offer_table(staged.data_path(staged.temp), staged)
        try:  # the layout, checked before anything is moved into place
            task_cls.data_from_path(staged.data_path(staged.temp))
        except ValueError as e:
            discard(staged)
            return self._error(f"{where}: {str(e).replace(staged.temp, staged.final)}")
        ok = commit(staged, lambda path: self._apply_read(task_cls, path))
        if not ok:
            discard(staged)
        return ok

    def _uploaded(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[0]
        self.load_upload(upload["name"], bytes(upload["content"]))
        # Empty the widget: it would keep the whole file in the kernel (and in the page) otherwise.
        self.upload.value = ()

    def _apply_read(self, task_cls: type[Task], path: str) -> bool:
        try:
            data = task_cls.data_from_path(path)
        except ValueError as e:
            return self._error(str(e))
        return self._apply(data)

    def _apply(self, data: tuple[str, dict[str, Any]]) -> bool:
        """Edit the spec's data to ``(name, options)`` read from a path just written."""
        # The state caches the task by its spec: the same upload name again is an equal spec over
        # new files, so the cache must be dropped for them to be read (and checked).
        self.state.forget_task()
        name, options = data
        spec = self.state.spec
        unchanged = (name, options) == (spec.data.name, dict(spec.data.options))
        ok = self._edit({"data.name": name, "data.options": options})
        if ok and unchanged:  # an equal spec notifies nobody: redraw from the new files here
            self._shown = None
            self.refresh()
        return ok

    def _offer_table(self, path: str, staged: Staged | None) -> bool:
        try:
            header = csv_header(path)
        except ValueError as e:
            if staged is not None:
                discard(staged)
            return self._error(str(e))
        previous = self.state.spec.data.options.get("target")
        self._pending = _PendingTable(self.state.spec.task.name, path, staged)
        self.target.options = header
        self.target.value = previous if previous in header else header[-1]  # the last column, by custom
        self.target_row.layout.display = None
        self.message.value = ""
        return True

    def use_table(self, target: str | None = None) -> bool:
        """Read the offered CSV with ``target`` (default: the one picked) as the column to predict."""
        pending = self._pending
        if pending is None:
            return self._error("target: no CSV is waiting for a target column; load or upload one first")
        target = self.target.value if target is None else target
        if target not in self.target.options:
            return self._error(f"target: {target!r} is no column of {os.path.basename(pending.path)!r}; allowed: "
                               f"{', '.join(self.target.options)}")

        def apply(path: str) -> bool:
            return self._apply(("csv", {"path": path, "target": target}))

        if pending.staged is None:
            ok = apply(pending.path)
        else:
            ok = commit(pending.staged, apply)  # refused: the upload stays staged, another target may do
        if ok:
            self._pending = None
            self.target_row.layout.display = "none"
        return ok

    def _drop_pending(self) -> None:
        if self._pending is not None and self._pending.staged is not None:
            discard(self._pending.staged)
        self._pending = None
        self.target_row.layout.display = "none"

    def _show_source(self, source: str) -> None:
        rows = {BUILTIN: self.data_picker, FOLDER: self.path_row, UPLOAD: self.upload_row}
        for name, row in rows.items():
            row.layout.display = None if name == source else "none"

    # -- drawing ---------------------------------------------------------------------------------
    def _origin(self) -> str:
        """Where the data comes from, for the summary: built-in, or its path under the root."""
        spec = self.state.spec
        path = _data_path(dict(spec.data.options))
        if self._label_of(spec.task.name, spec.data.name, dict(spec.data.options)) is not None or path is None:
            return f"built-in {spec.data.name!r}"
        inside = os.path.commonpath([self.data_root, os.path.realpath(path)]) == self.data_root
        return f"read from {os.path.relpath(path, self.data_root) if inside else path}"

    def _sync_pickers(self) -> None:
        spec = self.state.spec
        self._syncing = True
        try:
            self.task_picker.value = spec.task.name
            labels = list(self.choices(spec.task.name))
            current = self._label_of(spec.task.name, spec.data.name, dict(spec.data.options))
            self.data_picker.options = labels
            self.data_picker.value = current
            path = _data_path(dict(spec.data.options))
            if current is None and path is not None:
                folder = os.path.dirname(path) if spec.data.name == "image_mask_folder" else path
                inside = os.path.commonpath([self.data_root, os.path.realpath(folder)]) == self.data_root
                rel = os.path.relpath(folder, self.data_root) if inside else folder
                self.path.value = rel
                uploaded = inside and rel.split(os.sep)[0] == UPLOADS
                if labels and not (uploaded and self.source.value == UPLOAD):
                    self.source.value = FOLDER  # data read from a path: the folder source shows it
            elif current is None and labels:
                self.source.value = FOLDER
        finally:
            self._syncing = False

    def refresh(self) -> None:
        spec = self.state.spec
        if self._pending is not None and self._pending.task != spec.task.name:
            self._drop_pending()  # the CSV was offered to another task
        key = (spec.task.model_dump_json(), spec.data.model_dump_json())
        if key == self._shown:
            return
        self._sync_pickers()
        task = self.state.task()
        self.description.value = _description_html(tasks.get(spec.task.name))
        shown = task.show_batch(self.n_samples)
        RENDERERS[type(shown)](self, shown)
        self.summary.value = _summary(task, self._origin())
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
