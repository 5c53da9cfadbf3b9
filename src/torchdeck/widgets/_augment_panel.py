"""The augmentation preview: build the training pipeline from the transform registry, see it
on 8 samples with their targets drawn over them, and what each step cost.

The pipeline lives in the spec (``Experiment.augment``): every edit is proposed to the spec,
a refused one is explained next to the input that caused it, and the rows and the grid are
redrawn from the spec the Studio then holds. Slider drags edit the spec on every step, but
the grid is redrawn once per burst (see ``_Coalesced``).
"""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any, Callable

import ipywidgets as W
import traitlets
import yaml

from torchdeck import augment as A
from torchdeck.widgets._augment_draw import Drawn, GridLayout, draw_tile, grid, png
from torchdeck.widgets._augment_inputs import FieldInput, input_kind
from torchdeck.widgets._augment_sources import Frame, photo_frames, task_frames, upload_frames
from torchdeck.widgets._augment_steps import (OPTION_CHOICES, Step, addable_transforms, read_steps,
                                              write_spec)
from torchdeck.widgets._state import StudioState

__all__ = ["AugmentPanel", "explain_table"]

# Normalize has no picture (its output is a float tensor around 0): the grid shows the pipeline
# without it, the timing table with it.
_NOT_DRAWN = ("normalize",)


class _Coalesced:
    """Run ``fn`` once for any number of requests made before it runs.

    In a kernel (an asyncio loop is running) the call goes on the loop: the requests made while
    one widget message is handled (a spec edit redraws the rows and may switch the source)
    make one redraw, after the handler returns and the kernel has said it is idle. A slider
    drag is coalesced by the front end: it keeps one update per widget in flight and merges
    the rest of the drag into the next, so while a redraw runs only the latest value waits.
    Without a loop (a script, a test) ``fn`` runs at once.
    """

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.pending = False

    def request(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.fn()
            return
        if not self.pending:
            self.pending = True
            loop.call_soon(self._run)

    def _run(self) -> None:
        self.pending = False
        self.fn()


def explain_table(ex: A.Explanation) -> str:
    """``pipe.explain(...)`` as an HTML table: each step, the stage that ran it, that stage's time
    (once per fused stage), and what the step drew."""
    by_stage = {s.stage: s for s in ex.stages}
    rows, seen = [], set()
    for r in ex.rows:
        name = "&nbsp;&nbsp;" * r.depth + html.escape(r.name) + ("" if r.applied else " <i>(skipped)</i>")
        stage, ms = "–", ""
        if r.stage is not None:
            st = by_stage[r.stage]
            stage = f"{r.stage} {html.escape(st.kind)}"
            ms = f"{st.ms:.3f}" if r.stage not in seen else "〃"
            seen.add(r.stage)
        params = html.escape(" ".join(f"{k}={v}" for k, v in r.params.items()))
        rows.append(f"<tr><td>{r.step}</td><td>{name}</td><td>{stage}</td><td style='text-align:right'>{ms}</td>"
                    f"<td>{params}</td></tr>")
    foot = html.escape(ex.summary())
    return ("<table class='td-aug-timing'><tr><th>step</th><th>transform</th><th>stage</th><th>ms</th>"
            f"<th>drew</th></tr>{''.join(rows)}</table><div class='td-aug-info'>{foot}</div>")


def _row_kind(step: Step) -> tuple:
    """Rows are reused for steps of the same kind (same transform, same inputs)."""
    if not step.editable:
        return step.name, None
    return step.name, tuple((k, input_kind(step.name, k, v)) for k, v in step.args.items())


class _StepRow(W.VBox):
    """A step's name, its probability, move/remove buttons and one input per argument."""

    def __init__(self, panel: "AugmentPanel", step: Step) -> None:
        self.kind = _row_kind(step)
        self.index = 0
        cls = A.TRANSFORMS.get(step.name)
        doc = ((cls.__doc__ if cls is not None else "") or "").strip().split("\n")[0]
        label = W.HTML(f"<code>{html.escape(step.name)}</code>", layout=W.Layout(width="150px"), tooltip=doc)
        # Text labels: Voila asks a CDN for the icon font, so icons are blank offline.
        self.up = W.Button(description="↑", tooltip="move up", layout=W.Layout(width="32px"))
        self.down = W.Button(description="↓", tooltip="move down", layout=W.Layout(width="32px"))
        remove = W.Button(description="remove", tooltip="remove this step", layout=W.Layout(width="70px"))
        for b, css in ((self.up, "td-aug-up"), (self.down, "td-aug-down"), (remove, "td-aug-remove")):
            b.add_class(css)
        self.up.on_click(lambda _: panel.move_step(self.index, -1))
        self.down.on_click(lambda _: panel.move_step(self.index, +1))
        remove.on_click(lambda _: panel.remove_step(self.index))
        self.fields: dict[str, FieldInput] = {}
        self.probability: FieldInput | None = None
        self.text = W.HTML()
        head: list[W.Widget] = [label, self.up, self.down, remove]
        if step.editable:
            # The chance the step runs at all (a maybe around it); a transform's own p (flip_x)
            # is one of its arguments below.
            self.probability = FieldInput("maybe", "p", step.p, lambda _, v: panel.set_probability(self.index, v))
            self.probability.widgets[0].description = "run p"
            self.probability.widgets[0].tooltip = "probability the step runs (1: always)"
            head.append(self.probability)
            self.fields = {k: FieldInput(step.name, k, v, lambda n, v: panel.set_value(self.index, n, v))
                           for k, v in step.args.items()}
            body: list[W.Widget] = list(self.fields.values())
        else:
            body = [self.text]
        super().__init__([W.HBox(head, layout=W.Layout(flex_flow="row wrap")),
                          W.VBox(body, layout=W.Layout(margin="0 0 0 20px"))])
        self.add_class("td-aug-step")

    def place(self, index: int, count: int, step: Step) -> None:
        """Sit at ``index`` of ``count`` steps and show ``step``'s values (dropping refusals)."""
        self.index = index
        self.up.disabled, self.down.disabled = index == 0, index == count - 1
        for k, v in step.args.items():
            if k in self.fields:
                self.fields[k].show(v)
        if self.probability is not None:
            self.probability.show(step.p)
        if not step.editable:
            text = yaml.safe_dump(step.raw, default_flow_style=True, sort_keys=False).strip()
            self.text.value = f"<code>{html.escape(text)}</code> <i>(edit in the spec's YAML)</i>"


class AugmentPanel(W.VBox):
    """``AugmentPanel(state)``: the training augmentation, edited as a list of steps and previewed
    on ``samples`` seeds (``seed`` .. ``seed + samples - 1``) at ``side``×``side``."""

    seed = traitlets.Int(0, help="first seed of the grid; Reseed moves it on by the number of samples")
    source = traitlets.Unicode("photo", help="what the grid shows: photo | upload | task")
    redraw_ms = traitlets.Float(0.0, help="time of the last grid redraw (pipeline, drawing, PNG)")

    def __init__(self, state: StudioState, *, samples: int = 8, side: int = 224, columns: int = 4) -> None:
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise ValueError(f"AugmentPanel: samples must be a positive integer, got {samples!r}")
        if not isinstance(side, int) or isinstance(side, bool) or side < 16:
            raise ValueError(f"AugmentPanel: side must be an integer >= 16, got {side!r}")
        self.state = state
        self.samples = samples
        self.layout_grid = GridLayout(side=side, columns=columns)
        names = addable_transforms()
        self.picker = W.Dropdown(options=names, value="rotate" if "rotate" in names else None, description="Add",
                                 layout=W.Layout(width="260px"))
        self.picker.add_class("td-aug-picker")
        self.add_button = W.Button(description="Add step", layout=W.Layout(width="90px"))
        self.add_button.add_class("td-aug-add")
        self.add_button.on_click(lambda _: self.add_step(self.picker.value))
        self.rows = W.VBox()
        self.options = {k: W.Dropdown(options=v, description=k, layout=W.Layout(width="200px"))
                        for k, v in OPTION_CHOICES.items()}
        for k, w in self.options.items():
            w.observe(lambda ch, k=k: None if self._quiet else self.set_option(k, ch["new"]), "value")
        self.message = W.HTML()
        self.message.add_class("td-aug-error")
        self.source_picker = W.ToggleButtons(options=[("photo", "photo"), ("upload", "upload"),
                                                      ("task data", "task")], value="photo",
                                             tooltips=["built-in photo", "your image", "the task's training images"])
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload image")
        self.source_info = W.HTML()
        self.source_info.add_class("td-aug-info")
        self.reseed_button = W.Button(description="Reseed", layout=W.Layout(width="90px"))
        self.reseed_button.add_class("td-aug-reseed")
        self.reseed_button.on_click(lambda _: self.reseed())
        self.seed_info = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.image.add_class("td-aug-grid")
        self.timing = W.HTML()
        self.timing.add_class("td-aug-timing-box")
        super().__init__([
            W.HTML("<b>Augmentation</b>"), self.rows, W.HBox([self.picker, self.add_button]),
            W.HBox(list(self.options.values()), layout=W.Layout(flex_flow="row wrap")), self.message,
            W.HBox([self.source_picker, self.upload]), self.source_info,
            W.HBox([self.reseed_button, self.seed_info]), self.image, self.timing,
        ])
        self.add_class("td-augment")
        self._quiet = False
        self._frames: list[Frame] = []
        self._frames_key: Any = None
        self._upload: tuple[bytes, str] | None = None
        self._shown: Any = None
        self._redraw = _Coalesced(self.draw)
        self.source_picker.observe(lambda ch: self.set_source(ch["new"]), "value")
        self.upload.observe(self._uploaded, "value")
        self.observe(lambda _: self._redraw.request(), "seed")
        state.observe(lambda _: self.refresh(), "spec")
        self.refresh()

    # -- reading -------------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        return read_steps(self.state.spec.augment)[0]

    def pipeline_options(self) -> dict[str, Any]:
        return read_steps(self.state.spec.augment)[1]

    def field(self, index: int, name: str) -> FieldInput:
        """The input of argument ``name`` of step ``index``."""
        return self.rows.children[index].fields[name]

    # -- edits ---------------------------------------------------------------------------------
    def set_value(self, index: int, field: str, value: Any) -> bool:
        steps = self.steps()
        steps[index] = steps[index].replace(args={**steps[index].args, field: value})
        if not self._propose(steps, self.pipeline_options(), show=False):
            self.rows.children[index].fields[field].refuse(self.state.error)
            return False
        return True

    def set_probability(self, index: int, p: float) -> bool:
        steps = self.steps()
        steps[index] = steps[index].replace(p=p)
        if not self._propose(steps, self.pipeline_options(), show=False):
            self.rows.children[index].probability.refuse(self.state.error)
            return False
        return True

    def set_option(self, name: str, value: Any) -> bool:
        return self._propose(self.steps(), {**self.pipeline_options(), name: value})

    def add_step(self, name: str, at: int | None = None) -> bool:
        """Append (or insert at ``at``) ``name`` with its default arguments."""
        steps = self.steps()
        try:
            args = next(iter(A.TRANSFORMS.lookup(name)().to_spec().values()))
        except (TypeError, ValueError) as e:
            return self._panel_error(f"augment: {e}")
        steps.insert(len(steps) if at is None else at, Step(name, args))
        return self._propose(steps, self.pipeline_options())

    def remove_step(self, index: int) -> bool:
        steps = self.steps()
        del steps[index]
        return self._propose(steps, self.pipeline_options())

    def move_step(self, index: int, offset: int) -> bool:
        """Swap step ``index`` with its neighbour ``offset`` (-1 up, +1 down) away."""
        steps = self.steps()
        other = index + offset
        if not 0 <= other < len(steps):
            return False
        steps[index], steps[other] = steps[other], steps[index]
        return self._propose(steps, self.pipeline_options())

    def reseed(self) -> None:
        """Show the next ``samples`` seeds."""
        self.seed += self.samples

    def set_source(self, kind: str) -> bool:
        """``photo``, ``upload`` (the last uploaded image) or ``task`` (the task's training data)."""
        allowed = ("photo", "upload", "task")
        if kind not in allowed:
            raise ValueError(f"source must be one of {', '.join(allowed)}, got {kind!r}")
        if kind == "upload" and self._upload is None:
            self._quiet_source(self.source)
            return self._source_error("upload: no image uploaded yet; use the Upload button")
        previous = self.source
        self.source = kind
        if not self._load_frames():
            self.source = previous
            self._quiet_source(previous)
            return False
        self._quiet_source(kind)
        self._redraw.request()
        return True

    def load_upload(self, content: bytes, name: str = "upload") -> bool:
        """Use an image file's bytes as the source; a file that is no image is refused in place
        and the grid keeps what it showed."""
        try:
            upload_frames(content, name, self.layout_grid.side)
        except ValueError as e:
            return self._source_error(str(e))
        self._upload = (bytes(content), name)
        self._frames_key = None
        return self.set_source("upload")

    def _uploaded(self, change: Any) -> None:
        files = change["new"]
        if files:
            f = files[-1]
            self.load_upload(bytes(f["content"]), f.get("name", "upload"))

    def _propose(self, steps: list[Step], options: dict[str, Any], *, show: bool = True) -> bool:
        if not self.state.edit(augment=write_spec(steps, options)):
            if show:
                self.message.value = html.escape(self.state.error)
            return False
        return True

    def _panel_error(self, text: str) -> bool:
        self.state.error = text
        self.message.value = html.escape(text)
        return False

    def _source_error(self, text: str) -> bool:
        self.source_info.value = f"<span style='color:#b00020'>{html.escape(text)}</span>"
        return False

    def _quiet_source(self, kind: str) -> None:
        if self.source_picker.value != kind:
            self.source_picker.value = kind  # its observer finds the source already set

    # -- drawing -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the rows from the spec; redraw the grid if the pipeline (or the task's data,
        when that is the source) changed."""
        self.message.value = ""  # the spec changed: a refusal of an earlier edit is old news
        spec = self.state.spec
        # A task without augmentation (tables): say so and offer no step, rather than a refusal later.
        off = not self.state.takes_augment()
        for w in (self.picker, self.add_button, *self.options.values()):
            w.disabled = off
        if off:
            self.message.value = html.escape(f"task {spec.task.name!r} takes no augmentation")
        key = (spec.augment, spec.task.model_dump_json() + spec.data.model_dump_json()
               if self.source == "task" else None)
        if key == self._shown:
            return
        self._shown = key
        steps, options = read_steps(spec.augment)
        names = tuple(addable_transforms())
        if names != tuple(self.picker.options):  # a transform registered since (a user's own)
            self.picker.options = names
        self._quiet = True
        try:
            for k, w in self.options.items():
                w.value = options[k]
        finally:
            self._quiet = False
        # Keep the rows of steps still there (an edit or a move creates no widgets and the
        # slider being dragged stays); make rows only for new steps.
        spare: dict[tuple, list[_StepRow]] = {}
        for row in self.rows.children:
            spare.setdefault(row.kind, []).append(row)
        rows = []
        for i, s in enumerate(steps):
            same = spare.get(_row_kind(s))
            row = same.pop(0) if same else _StepRow(self, s)
            row.place(i, len(steps), s)
            rows.append(row)
        if rows != list(self.rows.children):
            self.rows.children = rows
        self._redraw.request()

    def _load_frames(self) -> bool:
        spec = self.state.spec
        key = (self.source, self._upload[1] if self.source == "upload" and self._upload else None,
               spec.task.model_dump_json() + spec.data.model_dump_json() if self.source == "task" else None)
        if key == self._frames_key:
            return True
        try:
            if self.source == "task":
                frames, where = task_frames(self.state.task(), self.samples)
            elif self.source == "upload" and self._upload is not None:
                frames, where = upload_frames(*self._upload, self.layout_grid.side)
            else:
                frames, where = photo_frames(self.layout_grid.side)
        except ValueError as e:
            return self._source_error(str(e))
        self._frames, self._frames_key = frames, key
        self.source_info.value = html.escape(f"source: {where}")
        return True

    def samples_out(self) -> list[tuple[int, Frame, dict[str, Any]]]:
        """(seed, input frame, pipeline output) for each tile, as the grid draws them."""
        if not self._load_frames():
            self.source = "photo"
            self._quiet_source("photo")
            self._load_frames()
        steps, options = read_steps(self.state.spec.augment)
        shown = write_spec(steps, options, skip=_NOT_DRAWN)
        pipe = None if shown is None else A.transform_from_spec(shown)
        out = []
        for i in range(self.samples):
            frame = self._frames[i % len(self._frames)]
            seed = self.seed + i
            items = frame.items()
            out.append((seed, frame, items if pipe is None else pipe(**items, seed=seed)))
        return out

    def draw(self) -> None:
        """Run the pipeline on every tile's seed, draw targets over the images, set the PNG, and
        time the pipeline's steps with ``explain`` on the first."""
        t0 = time.perf_counter()
        try:
            results = self.samples_out()
        except ValueError as e:  # e.g. a crop larger than the task's images
            self.message.value = html.escape(f"preview: {e}")
            return
        tiles = [draw_tile(_drawn(o), self.layout_grid.side) for _, _, o in results]
        self.image.value = png(grid(tiles, [f"seed {s}" for s, _, _ in results], self.layout_grid))
        self.redraw_ms = (time.perf_counter() - t0) * 1e3
        self.seed_info.value = f"seeds {self.seed}–{self.seed + self.samples - 1}; redraw {self.redraw_ms:.0f} ms"
        pipe = self.state.spec.augment_pipeline()
        if pipe is None:
            self.timing.value = "<i>no augmentation: add a step</i>"
            return
        try:
            self.timing.value = explain_table(pipe.explain(seed=self.seed, **results[0][1].items()))
        except ValueError as e:
            self.timing.value = html.escape(f"explain: {e}")


def _drawn(out: dict[str, Any]) -> Drawn:
    kp = out.get("keypoints")
    boxes = out.get("boxes")
    return Drawn(image=out["image"], mask=out.get("mask"),
                 keypoints=None if kp is None else kp.xy, visible=None if kp is None else kp.visible,
                 boxes=None if boxes is None else boxes.xyxy)
