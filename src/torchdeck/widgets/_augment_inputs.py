"""Typed inputs for a transform's arguments, derived from the values in its spec.

Nothing here lists transforms: an argument's input comes from the *kind* of its spec value
(a flag, a number, a (low, high) sampling range, anything else as YAML), and a slider's bounds
from ``HINTS``, looked up by (transform, argument) and then by argument name. A transform
registered later gets inputs too, with bounds guessed from its defaults. The inputs never
validate: the spec does, and a refusal is shown next to the input that caused it.
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import Any, Callable

import ipywidgets as W
import yaml

__all__ = ["Hint", "HINTS", "KINDS", "FieldInput", "hint_for", "kind_of"]


@dataclasses.dataclass(frozen=True)
class Hint:
    """Slider bounds for an argument; ``kind`` forces an input where the value's type misleads
    (affine's ``translate`` is an (x, y) pair, not a range; erasing's ``value`` may be text)."""

    lo: float
    hi: float
    step: float
    kind: str | None = None


# Bounds that make the slider useful, not what the transform allows: a value the transform
# refuses (zoom 0) is shown as refused. Keys: "argument" or ("transform", "argument").
HINTS: dict[Any, Hint] = {
    "degrees": Hint(-180.0, 180.0, 1.0),
    "p": Hint(0.0, 1.0, 0.05),
    "brightness": Hint(0.0, 3.0, 0.01),
    "contrast": Hint(0.0, 3.0, 0.01),
    "saturation": Hint(0.0, 3.0, 0.01),
    "gamma": Hint(0.1, 4.0, 0.01),
    "hue": Hint(-0.5, 0.5, 0.01),
    "sigma": Hint(0.0, 10.0, 0.05),
    "std": Hint(0.0, 0.5, 0.005),
    "distortion": Hint(0.0, 1.0, 0.01),
    "divisor": Hint(1, 128, 1),
    "factor": Hint(0.1, 4.0, 0.01),
    "size": Hint(8, 1024, 1),
    "ratio": Hint(0.1, 10.0, 0.01),
    "scale": Hint(0.1, 4.0, 0.01),
    ("random_resized_crop", "scale"): Hint(0.01, 1.0, 0.01),
    ("random_erasing", "scale"): Hint(0.01, 1.0, 0.01),
    ("random_erasing", "value"): Hint(0.0, 1.0, 0.01, kind="text"),
    ("translate", "x"): Hint(-1.0, 1.0, 0.01),
    ("translate", "y"): Hint(-1.0, 1.0, 0.01),
    ("shear", "x"): Hint(-80.0, 80.0, 1.0),
    ("shear", "y"): Hint(-80.0, 80.0, 1.0),
    ("affine", "shear"): Hint(-80.0, 80.0, 1.0),
    ("affine", "translate"): Hint(0.0, 1.0, 0.01, kind="pair"),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def kind_of(value: Any) -> str:
    """The input for a spec value: ``bool``, ``int``, ``float``, ``range`` (two floats, low <=
    high) or ``text`` (YAML: lists of integers such as sizes, null, strings, longer lists)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return "range"
    return "text"


def hint_for(transform: str, field: str, value: Any) -> Hint:
    """Bounds for ``transform.field``, widened to hold ``value``; a guess from the value for an
    argument nobody described (0..2×value, at least 0..1)."""
    hint = HINTS.get((transform, field)) or HINTS.get(field)
    numbers = [v for v in (value if isinstance(value, list) else [value]) if _is_number(v) and math.isfinite(v)]
    if hint is None:
        top = max([1.0] + [2.0 * abs(v) for v in numbers])
        hint = Hint(min([0.0] + [-top for v in numbers if v < 0]), top, top / 100.0)
    if numbers:  # a loaded spec may hold a value outside the usual bounds: still show it
        hint = dataclasses.replace(hint, lo=min([hint.lo] + numbers), hi=max([hint.hi] + numbers))
    return hint


@dataclasses.dataclass(frozen=True)
class InputKind:
    """How one kind of value is edited: make its widgets, read the spec value back, show one."""

    make: Callable[[str, Any, Hint], list[W.ValueWidget]]
    read: Callable[[list[W.ValueWidget]], Any]
    write: Callable[[list[W.ValueWidget], Any], None]


def _style(name: str, width: int = 300) -> dict[str, Any]:
    label = 7 * len(name) + 14
    return {"layout": W.Layout(width=f"{width}px"), "style": {"description_width": f"{label}px"}}


def _text_make(name: str, v: Any, h: Hint) -> list[W.ValueWidget]:
    return [W.Text(value=_dump(v), description=name, continuous_update=False, tooltip="YAML: 224, [224, 160], null",
                   **_style(name))]


def _dump(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _text_read(ws: list[W.ValueWidget]) -> Any:
    return yaml.safe_load(ws[0].value)  # a YAML error is reported by FieldInput


def _set_one(ws: list[W.ValueWidget], v: Any) -> None:
    ws[0].value = v


def _int_make(name: str, v: Any, h: Hint) -> list[W.ValueWidget]:
    return [W.IntSlider(value=v, min=int(h.lo), max=int(h.hi), step=max(1, int(h.step)), description=name,
                        continuous_update=True, **_style(name))]


def _float_make(name: str, v: Any, h: Hint) -> list[W.ValueWidget]:
    return [W.FloatSlider(value=v, min=h.lo, max=h.hi, step=h.step, description=name, continuous_update=True,
                          readout_format=".3g", **_style(name))]


def _range_make(name: str, v: Any, h: Hint) -> list[W.ValueWidget]:
    return [W.FloatRangeSlider(value=tuple(v), min=h.lo, max=h.hi, step=h.step, description=name,
                               continuous_update=True, readout_format=".3g", **_style(name, 340))]


def _pair_make(name: str, v: Any, h: Hint) -> list[W.ValueWidget]:
    return [W.FloatSlider(value=x, min=h.lo, max=h.hi, step=h.step, description=f"{name} {axis}",
                          continuous_update=True, readout_format=".3g", **_style(f"{name} {axis}"))
            for axis, x in zip("xy", v)]


def _pair_write(ws: list[W.ValueWidget], v: Any) -> None:
    for w, x in zip(ws, v):
        w.value = x


# kind -> its input. "pair" is only chosen by a Hint (two independent numbers).
KINDS: dict[str, InputKind] = {
    "bool": InputKind(lambda n, v, h: [W.Checkbox(value=v, description=n, indent=False, **_style(n, 160))],
                      lambda ws: bool(ws[0].value), _set_one),
    "int": InputKind(_int_make, lambda ws: int(ws[0].value), _set_one),
    "float": InputKind(_float_make, lambda ws: float(ws[0].value), _set_one),
    "range": InputKind(_range_make, lambda ws: [float(x) for x in ws[0].value],
                       lambda ws, v: _set_one(ws, tuple(v))),
    "pair": InputKind(_pair_make, lambda ws: [float(w.value) for w in ws], _pair_write),
    "text": InputKind(_text_make, _text_read, lambda ws, v: _set_one(ws, _dump(v))),
}


def input_kind(transform: str, field: str, value: Any) -> str:
    hint = HINTS.get((transform, field)) or HINTS.get(field)
    return hint.kind if hint is not None and hint.kind is not None else kind_of(value)


class FieldInput(W.HBox):
    """One argument of a step: its input(s) and, after a refusal, the reason beside them."""

    def __init__(self, transform: str, name: str, value: Any, on_edit: Callable[[str, Any], None]) -> None:
        self.name = name
        self.kind = input_kind(transform, name, value)
        self._io = KINDS[self.kind]
        self.widgets = self._io.make(name, value, hint_for(transform, name, value))
        for w in self.widgets:
            w.add_class("td-aug-field")
        self.message = W.HTML("")
        self.message.add_class("td-field-error")
        self._quiet = False
        self._on_edit = on_edit
        for w in self.widgets:
            w.observe(self._changed, "value")
        super().__init__([*self.widgets, self.message])

    @property
    def value(self) -> Any:
        return self._io.read(self.widgets)

    def _changed(self, change: Any) -> None:
        if self._quiet:
            return
        try:
            value = self.value
        except yaml.YAMLError as e:
            self.refuse(f"{self.name}: not valid YAML ({' '.join(str(e).split())[:80]})")
            return
        self._on_edit(self.name, value)

    def show(self, value: Any) -> None:
        """Show the spec's value (no edit event) and drop any refusal."""
        self._quiet = True
        try:
            self._io.write(self.widgets, value)
        finally:
            self._quiet = False
        self.message.value = ""

    def refuse(self, reason: str) -> None:
        # The refused value stays in the input so the user sees what was wrong with it; red
        # inline too, for a panel shown outside the Studio (no studio.css there).
        self.message.value = f"<span style='color:#b00020'>{html.escape(reason)}</span>"
