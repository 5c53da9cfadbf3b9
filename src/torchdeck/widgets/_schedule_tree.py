"""The schedule tree editor: each scheduled hyperparameter as a tree of typed nodes.

Everything here is read from the schedules' own metadata: the node types are the
``SCHEDULES`` registry, a node's inputs are its dataclass fields (their type hints pick the
input kind), and its children are the fields it lists in ``nested``. Nothing is written per
schedule type. An edit is made on the spec (plain dicts), the spec validates it, and the
tree redraws from the spec it then holds; a refused edit leaves the spec alone and shows
its message on the node it was made on.

A node is addressed by its key and a path from the root. The key is the hyperparameter
(``"lr"``) for a schedule shared by every param group, or ``(hyperparameter, group)`` for one
group's own (``("lr", "head.*")``: the group's partition pattern, or its position when the spec
lists the groups' schedules in order). The path has one ``(field, index)`` pair per level,
``index`` None for a field holding one schedule, e.g. ``(("schedules", 1),)`` is the second
segment of a root Sequence.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import html
import math
import types
import typing
from typing import Any, Callable, Iterator, Literal

import ipywidgets as W
import numpy as np
import yaml

from torchdeck.optim import Partition
from torchdeck.schedules import SCHEDULES, Schedule, Sequence, schedule_from_spec
from torchdeck.widgets._state import StudioState

__all__ = ["ScheduleTree", "NodeRow", "HyperSection", "Key", "Path", "FieldInfo", "node_fields", "FIELD_EDITORS",
           "key_name", "hyper_of", "group_of"]

Path = tuple[tuple[str, int | None], ...]
Spec = dict[str, Any]  # one node: {"linear": {"start": ..., ...}}
Group = str | int      # a param group: its name (partition pattern) or its position
Key = str | tuple[str, Group]  # a hyperparameter's shared schedule, or one group's


def hyper_of(key: Key) -> str:
    return key if isinstance(key, str) else key[0]


def group_of(key: Key) -> Group | None:
    return None if isinstance(key, str) else key[1]


def key_name(key: Key) -> str:
    """How the plot names the key's curve: ``lr``, ``lr [head.*]`` (as ``Experiment.schedule_curves``)."""
    return key if isinstance(key, str) else f"{key[0]} [{key[1]}]"


def key_label(key: Key) -> str:
    """How the spec's errors name the key: ``schedules.lr``, ``schedules.lr['head.*']``, ``schedules.lr[0]``."""
    return f"schedules.{key}" if isinstance(key, str) else f"schedules.{key[0]}[{key[1]!r}]"


def key_spec(schedules: dict[str, Any], key: Key) -> Spec | None:
    """The spec of the key's schedule in ``schedules`` (None when it has none)."""
    hyper, group = hyper_of(key), group_of(key)
    spec = schedules.get(hyper)
    if group is None or spec is None:
        return spec
    try:
        return spec[group]
    except (KeyError, IndexError, TypeError):
        return None


# -- field kinds, read from the type hints ------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One editable field of a schedule type."""

    name: str
    kind: str                      # a key of FIELD_EDITORS
    required: bool
    default: Any = None
    choices: tuple[Any, ...] = ()  # for kind "choice"


def _kind(hint: Any) -> tuple[str, tuple[Any, ...]]:
    """The input kind for a field's type hint (``float``, ``int | None``, ``tuple[int, ...]``...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "choice", args
    if origin in (typing.Union, types.UnionType):
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args) and len(rest) == 1 and rest[0] in (int, float):
            return f"optional_{rest[0].__name__}", ()
        if set(map(_kind_name, rest)) == {"int", "ints"}:
            return "int_or_ints", ()
    return _kind_name(hint), ()


def _kind_name(hint: Any) -> str:
    if hint in (bool, float, int, str):
        return hint.__name__
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (int, Ellipsis):
        return "ints"
    return "yaml"  # anything else is typed as YAML (a number, a list, null ...)


@functools.cache
def node_fields(cls: type[Schedule]) -> tuple[FieldInfo, ...]:
    """The fields of a schedule type that are values (not child schedules), in order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in cls.nested:
            continue
        kind, choices = _kind(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(FieldInfo(f.name, kind, required, None if required else f.default, choices))
    return tuple(out)


def node_fields_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in node_fields(cls))


# -- small editors, one per field kind ---------------------------------------------------------
def _none_or(parse: Callable[[str], Any], allowed: str) -> Callable[[Any], Any]:
    def read(text: Any) -> Any:
        text = str(text).strip()
        if text.lower() in ("", "null", "none"):
            return None
        try:
            return parse(text)
        except ValueError:
            raise ValueError(f"must be {allowed}, got {text!r}") from None
    return read


def _ints(text: Any) -> list[int]:
    parts = [p for p in str(text).replace(",", " ").split()]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"must be whole numbers separated by commas, got {text!r}") from None


def _int_or_ints(text: Any) -> int | list[int]:
    values = _ints(text)
    if not values:
        raise ValueError(f"must be a whole number or several separated by commas, got {text!r}")
    return values[0] if len(values) == 1 else values


def _yaml(text: Any) -> Any:
    try:
        return yaml.safe_load(str(text))
    except yaml.YAMLError:
        raise ValueError(f"must be a YAML value, got {text!r}") from None


def _show_optional(v: Any) -> str:
    return "" if v is None else repr(v)


def _show_ints(v: Any) -> str:
    return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


_NUMBER = dict(layout=W.Layout(width="150px"), style={"description_width": "initial"})


@dataclasses.dataclass(frozen=True)
class FieldEditor:
    """How one kind of field is edited: the input, spec value -> input value, and back."""

    make: Callable[[FieldInfo], W.ValueWidget]
    show: Callable[[Any], Any]
    parse: Callable[[Any], Any]  # raises ValueError("must be ..., got ...")


def _text(placeholder: str) -> Callable[[FieldInfo], W.ValueWidget]:
    return lambda f: W.Text(description=f.name, placeholder=placeholder, continuous_update=False, **_NUMBER)


FIELD_EDITORS: dict[str, FieldEditor] = {
    "float": FieldEditor(lambda f: W.FloatText(description=f.name, continuous_update=False, **_NUMBER), float,
                         float),
    "int": FieldEditor(lambda f: W.IntText(description=f.name, continuous_update=False, **_NUMBER), int, int),
    "optional_float": FieldEditor(_text("none"), _show_optional,
                                  _none_or(float, "a number or empty (none)")),
    "optional_int": FieldEditor(_text("rest of the run"), _show_optional,
                                _none_or(int, "a whole number or empty (the rest of the run)")),
    "bool": FieldEditor(lambda f: W.Checkbox(description=f.name, indent=False, layout=W.Layout(width="auto")),
                        bool, bool),
    "choice": FieldEditor(lambda f: W.Dropdown(description=f.name, options=list(f.choices), **_NUMBER),
                          lambda v: v, lambda v: v),
    "str": FieldEditor(_text(""), str, str),
    "ints": FieldEditor(_text("e.g. 100, 200"), _show_ints, _ints),
    "int_or_ints": FieldEditor(_text("e.g. 100 or 100, 200"), _show_ints, _int_or_ints),
    "yaml": FieldEditor(_text("YAML"), lambda v: _yaml_dump(v), _yaml),
}


def _yaml_dump(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


# -- paths into a schedule (objects) and its spec (dicts) ---------------------------------------
def walk(node: Schedule, path: Path = ()) -> Iterator[tuple[Path, Schedule]]:
    """Every node of the tree, parents before children."""
    yield path, node
    for field in node.nested:
        value = getattr(node, field)
        if isinstance(value, tuple):
            for i, child in enumerate(value):
                yield from walk(child, path + ((field, i),))
        else:
            yield from walk(value, path + ((field, None),))


def node_at(node: Schedule, path: Path) -> Schedule:
    for field, i in path:
        node = getattr(node, field) if i is None else getattr(node, field)[i]
    return node


def _spec_parent(spec: Spec, step: tuple[str, int | None]) -> tuple[Any, Any]:
    """(container, key) of the child spec one step below ``spec``."""
    (kwargs,) = spec.values()
    field, i = step
    return (kwargs, field) if i is None else (kwargs[field], i)


def spec_at(spec: Spec, path: Path) -> Spec:
    for step in path:
        container, k = _spec_parent(spec, step)
        spec = container[k]
    return spec


def with_spec_at(spec: Spec, path: Path, new: Spec) -> Spec:
    """A copy of ``spec`` with the node at ``path`` replaced by ``new``."""
    if not path:
        return copy.deepcopy(new)
    out = copy.deepcopy(spec)
    container, k = _spec_parent(spec_at(out, path[:-1]), path[-1])
    container[k] = copy.deepcopy(new)
    return out


def where(key: Key, root: Schedule, path: Path) -> str:
    """How the spec errors name the node at ``path``: ``schedules.lr.sequence.schedules[0]``."""
    out, node = key_label(key), root
    for field, i in path:
        out += f".{node.name}.{field}" + ("" if i is None else f"[{i}]")
        node = node_at(node, ((field, i),))
    return out


# -- lengths -------------------------------------------------------------------------------------
def length_field(s: Schedule) -> str | None:
    """The field that holds ``s``'s length (``steps``, ``period``, ``total_steps``...), found by
    trying: a whole-number field whose value is the length and that sets it. None if none does."""
    for f in node_fields(type(s)):
        if f.kind not in ("int", "optional_int") or getattr(s, f.name) != s.length:
            continue  # e.g. Shifted.offset: a whole number, but not the length
        probe = (s.length or 0) + 1
        try:
            if dataclasses.replace(s, **{f.name: probe}).length == probe:
                return f.name
        except ValueError:
            continue
    return None


def with_length(s: Schedule, n: int | None) -> Schedule | None:
    """``s`` made ``n`` steps long (None: open, it spans what it is given) through its
    :func:`length_field`; None when it has none that can take ``n``."""
    if s.length == n:
        return s
    field = length_field(s)
    if field is None:
        return None
    try:
        t = dataclasses.replace(s, **{field: n})
    except ValueError:
        return None
    return t if t.length == n else None


# -- children: list fields, and a Sequence's segments with their lengths -----------------------
class Children:
    """Children in a list field (``sum``, ``product``): add a copy after one, remove one."""

    def replace(self, parent: Schedule, field: str, i: int, child: Schedule) -> Schedule:
        items = list(getattr(parent, field))
        items[i] = child
        return dataclasses.replace(parent, **{field: tuple(items)})

    def insert_after(self, parent: Schedule, field: str, i: int, span: int) -> Schedule:
        items = list(getattr(parent, field))
        items.insert(i + 1, items[i])
        return dataclasses.replace(parent, **{field: tuple(items)})

    def remove(self, parent: Schedule, field: str, i: int) -> Schedule:
        items = list(getattr(parent, field))
        if len(items) == 1:
            raise ValueError(f"{parent.name}: {field} needs at least one schedule; change this node's type instead")
        del items[i]
        return dataclasses.replace(parent, **{field: tuple(items)})

    def length(self, parent: Schedule, i: int) -> tuple[bool, int | None]:
        """(has a length slot, its value)."""
        return False, None


class Segments(Children):
    """A Sequence's segments. Each has a length (its slot in ``steps``); when the segment's own
    length field holds it (``linear.steps``, ``cos_anneal.period``...), that field is changed
    with it, so the spec keeps writing each length once."""

    def length(self, parent: Schedule, i: int) -> tuple[bool, int | None]:
        return True, parent.steps[i]

    def set_length(self, seq: Sequence, i: int, n: int | None) -> Sequence:
        children, slots = list(seq.schedules), list(seq.steps)
        if children[i].length == slots[i]:
            children[i] = with_length(children[i], n) or children[i]
        slots[i] = n
        return Sequence(tuple(children), tuple(slots))

    def replace(self, parent: Schedule, field: str, i: int, child: Schedule) -> Schedule:
        children, slots = list(parent.schedules), list(parent.steps)
        children[i] = with_length(child, slots[i]) or child  # the new segment keeps the old one's slot
        return Sequence(tuple(children), tuple(slots))

    def insert_after(self, parent: Schedule, field: str, i: int, span: int) -> Schedule:
        """A copy of segment ``i`` after it, as long as it. After an open last segment (the rest
        of the run, ``span`` steps now) the two share that span: the first gets half."""
        seq = parent
        if seq.steps[i] is None:
            seq = self.set_length(seq, i, max(span // 2, 1))
            children, slots = list(seq.schedules), list(seq.steps)
            children.append(parent.schedules[i])
            slots.append(None)
        else:
            children, slots = list(seq.schedules), list(seq.steps)
            children.insert(i + 1, children[i])
            slots.insert(i + 1, slots[i])
        return Sequence(tuple(children), tuple(slots))

    def remove(self, parent: Schedule, field: str, i: int) -> Schedule:
        children, slots = list(parent.schedules), list(parent.steps)
        if len(children) == 1:
            raise ValueError("sequence: schedules needs at least one segment; change this node's type instead")
        open_end = i == len(children) - 1 and slots[i] is None
        del children[i], slots[i]
        if open_end:  # the new last segment takes over the rest of the run
            last = children[-1]
            if last.length == slots[-1]:
                children[-1] = with_length(last, None) or last
            slots[-1] = None
        return Sequence(tuple(children), tuple(slots))


CHILDREN: dict[str, Children] = {"sequence": Segments()}
_LIST = Children()


def children_of(parent: Schedule) -> Children:
    return CHILDREN.get(parent.name, _LIST)


# -- a new node of another type, keeping what can be kept --------------------------------------
@dataclasses.dataclass(frozen=True)
class Context:
    """What a new node's defaults are drawn from: the node it replaces, as planned."""

    old: Schedule
    fitted: Schedule       # ``old`` fitted to the run: what the plot shows
    span: int              # steps the node covers in the plot
    steps_per_epoch: int

    @functools.cached_property
    def levels(self) -> dict[str, float]:
        ts = np.unique(np.linspace(0, self.span - 1, min(self.span, 2001)).astype(np.int64))
        try:
            v = self.fitted.values(ts)
        except ValueError:  # a node that cannot be evaluated alone (an open length inside Shifted)
            v = np.array([1e-3])
        lo, hi = float(v.min()), float(v.max())
        return {"first": float(v[0]), "last": float(v[-1]), "lo": lo if lo < hi else hi / 10, "hi": hi}


def _level(which: str) -> Callable[[Context, type], Any]:
    return lambda ctx, cls: ctx.levels[which]


def _length(ctx: Context, cls: type) -> int:
    # A wrapper's own length (warm-up, loop period) is a part of what it wraps.
    return max(ctx.span // 10, 1) if cls.nested else ctx.span


# Defaults of required fields, by field name: the same name means the same thing across
# types (start, end, low, high, rate ...). Names not here fall back to their kind.
FIELD_DEFAULTS: dict[str, Callable[[Context, type], Any]] = {
    "value": _level("first"), "start": _level("first"), "end": _level("last"), "max_lr": _level("hi"),
    "low": _level("lo"), "l0": _level("lo"), "high": _level("hi"), "l1": _level("hi"),
    "rate": lambda ctx, cls: float(ctx.steps_per_epoch), "offset": lambda ctx, cls: 0,
    "degree": lambda ctx, cls: 1.0, "step_sizes": lambda ctx, cls: max(ctx.span // 4, 1),
    "milestones": lambda ctx, cls: sorted({m for m in (ctx.span // 2, 3 * ctx.span // 4) if m > 0}) or [1],
}
KIND_DEFAULTS: dict[str, Callable[[Context, type], Any]] = {
    "float": _level("first"), "int": _length, "optional_int": _length, "optional_float": lambda ctx, cls: None,
}
# Factors per step: chosen so the new node decays about a hundredfold over its span.
_DECAYS = ("decay", "gamma")
_DECAY_CANDIDATES = (0.1, 0.2, 0.3, 0.5) + tuple(1 - 10 ** (-k / 2) for k in range(1, 13))


def _pick_decay(cls: type, kwargs: dict[str, Any], field: str, ctx: Context) -> float:
    target = math.log(max(ctx.levels["first"], 1e-300) / 100)
    best, best_err = 0.5, math.inf
    for c in _DECAY_CANDIDATES:
        try:
            end = float(cls(**{**kwargs, field: c}).fit_to(ctx.span).values(np.array([ctx.span - 1]))[0])
        except ValueError:
            continue
        err = abs(math.log(max(end, 1e-300)) - target)
        if err < best_err:
            best, best_err = c, err
    return best


def _is_list(cls: type, field: str) -> bool:
    return typing.get_origin(typing.get_type_hints(cls)[field]) is tuple


def _carried_children(cls: type, old: Schedule, *, wrap: bool = False) -> dict[str, Any]:
    """A composite keeps the old node's children (a warm-up turned loop loops what it warmed
    up; a sequence turned sum adds its segments); one that cannot, wraps the old node (so does
    a leaf turned composite, and a list turned single-child wrapper)."""
    inner: tuple[Schedule, ...] = ()
    for field in old.nested:
        v = getattr(old, field)
        inner += v if isinstance(v, tuple) else (v,)
    out = {}
    for f in cls.nested:
        many = _is_list(cls, f)
        keep = inner and not wrap and (many or not any(_is_list(type(old), g) for g in old.nested))
        out[f] = (inner if many else inner[0]) if keep else ((old,) if many else old)
    return out


def default_node(name: str, ctx: Context) -> Schedule:
    """A node of type ``name`` in place of ``ctx.old``: its children carried over, fields of the
    same name kept (start, end, steps ...), the rest from the plotted curve and the span."""
    cls = SCHEDULES.lookup(name)
    fields = node_fields(cls)
    same = {f.name: getattr(ctx.old, f.name) for f in fields if f.name in node_fields_names(type(ctx.old))
            and not ctx.old.nested}  # a composite's own numbers (warm-up steps) mean other things
    base, wrapped = _carried_children(cls, ctx.old), _carried_children(cls, ctx.old, wrap=True)
    fresh: dict[str, Any] = {}
    for f in fields:
        if not f.required:
            continue
        make = FIELD_DEFAULTS.get(f.name) or KIND_DEFAULTS.get(f.kind)
        if make is not None and f.name not in _DECAYS:
            fresh[f.name] = make(ctx, cls)
    for f in fields:
        if f.required and f.name in _DECAYS:
            fresh[f.name] = _pick_decay(cls, {**base, **fresh}, f.name, ctx)
    error: ValueError | None = None
    for kwargs in ({**base, **fresh, **same}, {**base, **fresh}, {**wrapped, **fresh}):
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as e:
            error = error or (e if isinstance(e, ValueError) else ValueError(f"{name}: {e}"))
    assert error is not None
    raise error


# -- the widget ------------------------------------------------------------------------------
@dataclasses.dataclass
class NodeRow:
    """The inputs of one node of the tree."""

    key: Key
    path: Path
    box: W.VBox
    type_picker: W.Dropdown
    fields: dict[str, W.ValueWidget]
    length: W.ValueWidget | None   # the segment's length in its Sequence
    add_button: W.Button | None    # a sibling after this one (children of a list field)
    remove_button: W.Button | None
    error: W.HTML                  # the last refused edit of this node, in red


@dataclasses.dataclass
class HyperSection:
    """The controls of one scheduled hyperparameter, above its tree(s)."""

    hyper: str
    box: W.VBox
    per_group: W.Checkbox          # one tree per param group, or one shared
    groups: W.HTML                 # the optimiser's named groups, or why the toggle is off
    keep_buttons: dict[Group, W.Button]  # per group: merge, keeping this group's schedule
    error: W.HTML                  # the last refused split or merge, in red


_INDENT_PX = 22


def group_names(rule: Any) -> list[str]:
    """The optimiser's named param groups: one per pattern of a top-level partition (as the
    spec's check of per-group schedules sees them); none for any other rule."""
    return list(rule.parts) if isinstance(rule, Partition) else []


class ScheduleTree(W.VBox):
    """Edit the spec's schedules as trees; one section per scheduled hyperparameter.

    Every method that edits (``set_field``, ``change_type``, ``set_length``, ``add_after``,
    ``remove``, ``add_hyper``, ``remove_hyper``) returns whether the spec took the edit; a
    refused one keeps the spec, sets ``state.error`` and shows the message on its node.
    """

    def __init__(self, state: StudioState) -> None:
        self.state = state
        self.rows: dict[tuple[Key, Path], NodeRow] = {}
        self.hypers: dict[str, HyperSection] = {}
        # (key, path) of a node; (hyper, None) of a section (split, merge); (None, None): add/remove
        self.errors: dict[tuple[Key | None, Path | None], str] = {}
        self.sections = W.VBox()
        self.hyper_picker = W.Dropdown(description="Schedule", options=[], layout=W.Layout(width="220px"))
        self.add_hyper_button = W.Button(description="Add schedule", layout=W.Layout(width="110px"))
        self.add_hyper_button.add_class("td-sched-add-hyper")
        self.add_hyper_button.on_click(lambda _: self.hyper_picker.value and self.add_hyper(self.hyper_picker.value))
        self.hyper_error = W.HTML()
        self.hyper_error.add_class("td-sched-error")
        super().__init__([self.sections, W.HBox([self.hyper_picker, self.add_hyper_button]), self.hyper_error])
        self.add_class("td-sched-tree")
        self._shape: Any = None
        self._syncing = False
        state.observe(lambda _: self.show(), "spec")
        self.show()

    # -- what the spec holds ----------------------------------------------------------------
    # Every read and write of one schedule goes through these two, keyed by Key: the tree's
    # edits are the same for a shared schedule and for one param group's.
    def _root_spec(self, key: Key) -> Spec:
        spec = key_spec(self.state.spec.schedules, key)
        if spec is None:
            raise ValueError(f"{key_label(key)}: no such schedule in the spec")
        return spec

    def _with_root(self, key: Key, node: Spec | None) -> dict[str, Any]:
        """The spec's schedules with the key's replaced by ``node`` (None: the hyperparameter removed)."""
        schedules = dict(self.state.spec.schedules)
        hyper, group = hyper_of(key), group_of(key)
        if node is None:
            del schedules[hyper]
        elif group is None:
            schedules[hyper] = node
        else:
            groups = copy.copy(schedules[hyper])  # a dict by name or a list by position
            groups[group] = node
            schedules[hyper] = groups
        return schedules

    def _roots(self) -> dict[Key, Schedule]:
        """Every schedule the tree edits: shared ones by hyperparameter, the others per group."""
        out: dict[Key, Schedule] = {}
        for hyper, built in self.state.spec.schedule_objects().items():
            if isinstance(built, Schedule):
                out[hyper] = built
            else:
                out.update({(hyper, g): s for g, s in (built.items() if isinstance(built, dict) else enumerate(built))})
        return out

    def group_names(self) -> list[str]:
        """The param groups a schedule can be split into (``optim.partition``'s patterns)."""
        return group_names(self.state.spec.rule())

    def is_per_group(self, hyper: str) -> bool:
        """Whether ``hyper`` has one schedule per param group (by name or by position)."""
        return hyper in self.state.spec.schedules and hyper not in self._roots()

    def _span(self, key: Key, path: Path) -> int:
        """Steps the node at ``path`` covers in the planned run."""
        total = self.state.total_steps()
        fitted = self._roots()[key].fit_to(total)
        if path and path[-1][1] is not None:
            parent = node_at(fitted, path[:-1])
            has_slot, n = children_of(parent).length(parent, path[-1][1])
            if has_slot and n is not None:
                return n
        return node_at(fitted, path).length or total

    # -- edits --------------------------------------------------------------------------------
    def _commit(self, key: Key | None, path: Path | None, make: Callable[[], dict[str, Any]]) -> bool:
        """Propose ``make()``'s schedules to the spec; a refusal is shown on the node at ``path``
        (``path`` None: on the hyperparameter's section; ``key`` None too: on the add row)."""
        try:
            schedules = make()
            spec = key_spec(schedules, key) if key is not None and path is not None else None
            if spec is not None:  # the message names the node, as the spec would
                schedule_from_spec(spec, where=key_label(key))
        except ValueError as e:
            return self._refuse((key, path), str(e))
        before, self.errors = self.state.spec, {}
        if not self.state.edit(schedules=schedules):
            return self._refuse((key, path), self.state.error)
        if self.state.spec == before:  # nothing changed, so nothing redrew: take the old messages away
            self.show()
        return True

    def _refuse(self, at: tuple[Key | None, Path | None], message: str) -> bool:
        self.state.error = message
        self.errors = {at: message}
        self.show()  # the inputs go back to what the spec holds
        return False

    def _replace(self, key: Key, path: Path, node: Schedule) -> dict[str, Any]:
        """Schedules with the node at ``path`` replaced (through its parent when the parent keeps
        per-child state, as a Sequence keeps lengths)."""
        root = self._roots()[key]
        if path and path[-1][1] is not None:
            parent_path, (field, i) = path[:-1], path[-1]
            parent = node_at(root, parent_path)
            new_parent = children_of(parent).replace(parent, field, i, node)
            return self._with_root(key, with_spec_at(self._root_spec(key), parent_path, new_parent.to_spec()))
        return self._with_root(key, with_spec_at(self._root_spec(key), path, node.to_spec()))

    def set_field(self, key: Key, path: Path, field: str, value: Any) -> bool:
        """Set one value of the node at ``path`` (e.g. ``set_field("lr", (("schedules", 0),), "start", 1e-3)``)."""
        def make() -> dict[str, Any]:
            root = self._root_spec(key)
            node = copy.deepcopy(spec_at(root, path))
            (name, kwargs), = node.items()
            if field not in node_fields_names(SCHEDULES[name]):
                allowed = ", ".join(sorted(node_fields_names(SCHEDULES[name])))
                raise ValueError(f"{where(key, self._roots()[key], path)}.{name}: no field {field!r}; "
                                 f"allowed: {allowed}")
            kwargs[field] = value
            return self._with_root(key, with_spec_at(root, path, node))
        return self._commit(key, path, make)

    def change_type(self, key: Key, path: Path, name: str) -> bool:
        """Replace the node with one of type ``name`` (children and same-named values kept)."""
        def make() -> dict[str, Any]:
            root = self._roots()[key]
            old = node_at(root, path)
            if name == old.name:
                return dict(self.state.spec.schedules)
            try:
                SCHEDULES.lookup(name)
            except ValueError as e:
                raise ValueError(f"{where(key, root, path)}: {e}") from None
            ctx = Context(old, node_at(root.fit_to(self.state.total_steps()), path), self._span(key, path),
                          self.state.steps_per_epoch())
            try:
                node = default_node(name, ctx)
            except ValueError as e:
                raise ValueError(f"{where(key, root, path)}.{e}") from None
            return self._replace(key, path, node)
        return self._commit(key, path, make)

    def _list_edit(self, key: Key, path: Path, edit: Callable[[Children, Schedule, str, int], Schedule]) -> bool:
        def make() -> dict[str, Any]:
            if not path or path[-1][1] is None:
                raise ValueError(f"{where(key, self._roots()[key], path)}: only a child in a list of schedules "
                                 "(a sequence's segment, a sum's term) can be added after or removed")
            root = self._roots()[key]
            parent_path, (field, i) = path[:-1], path[-1]
            parent = node_at(root, parent_path)
            try:
                new_parent = edit(children_of(parent), parent, field, i)
            except ValueError as e:
                raise ValueError(f"{where(key, root, parent_path)}.{e}") from None
            return self._with_root(key, with_spec_at(self._root_spec(key), parent_path, new_parent.to_spec()))
        return self._commit(key, path, make)

    def add_after(self, key: Key, path: Path) -> bool:
        """A copy of the node right after it in its list (a sequence's segments: see Segments)."""
        span = self._span(key, path) if path else 0
        return self._list_edit(key, path, lambda c, p, f, i: c.insert_after(p, f, i, span))

    def remove(self, key: Key, path: Path) -> bool:
        return self._list_edit(key, path, lambda c, p, f, i: c.remove(p, f, i))

    def set_length(self, key: Key, path: Path, n: int | None) -> bool:
        """The length of a Sequence's segment (None: the rest of the run, last segment only)."""
        def edit(children: Children, parent: Schedule, field: str, i: int) -> Schedule:
            if not isinstance(children, Segments):
                raise ValueError(f"{parent.name}: its children have no lengths")
            return children.set_length(parent, i, n)
        return self._list_edit(key, path, edit)

    def add_hyper(self, name: str) -> bool:
        """Schedule another hyperparameter of the rule; it starts constant at the rule's value."""
        def make() -> dict[str, Any]:
            hyper = self.state.spec.rule().hyper()
            if name not in hyper or name in self.state.spec.schedules:
                allowed = ", ".join(self._free_hypers()) or "none (every hyperparameter has a schedule)"
                raise ValueError(f"schedules: cannot add {name!r}; allowed: {allowed}")
            return {**self.state.spec.schedules, name: {"constant": {"value": hyper[name]}}}
        return self._commit(None, None, make)

    def remove_hyper(self, hyper: str) -> bool:
        """Stop scheduling ``hyper`` (all its groups' schedules)."""
        return self._commit(None, None, lambda: self._with_root(hyper, None))

    # -- per param group ----------------------------------------------------------------------
    def split_groups(self, hyper: str) -> bool:
        """One schedule per named param group in place of the shared one, each a copy of it
        (``{"lr": s}`` -> ``{"lr": {"backbone.*": s, "head.*": s}}``)."""
        def make() -> dict[str, Any]:
            names = self.group_names()
            if not names:
                raise ValueError(f"schedules.{hyper}: the optimiser has no named param groups to split into; "
                                 "name them with a partition (optim: {partition: {pattern: rule, ...}})")
            if self.is_per_group(hyper):
                return dict(self.state.spec.schedules)
            shared = self.state.spec.schedules[hyper]
            return {**self.state.spec.schedules, hyper: {g: copy.deepcopy(shared) for g in names}}
        return self._commit(hyper, None, make)

    def merge_groups(self, hyper: str, keep: Group | None = None) -> bool:
        """One schedule shared by every group in place of one per group. With ``keep`` (a group),
        that group's schedule; without, only when every group's is the same: a merge that would
        silently drop a group's schedule is refused (the message names two that differ)."""
        def make() -> dict[str, Any]:
            if not self.is_per_group(hyper):
                return dict(self.state.spec.schedules)
            per = self.state.spec.schedules[hyper]
            groups = list(per) if isinstance(per, dict) else list(range(len(per)))
            if keep is not None:
                if keep not in groups:
                    raise ValueError(f"schedules.{hyper}: no param group {keep!r} to keep; "
                                     f"groups: {', '.join(map(repr, groups))}")
                shared = per[keep]
            else:
                first = groups[0]
                differ = [g for g in groups if per[g] != per[first]]
                if differ:
                    raise ValueError(f"schedules.{hyper}: cannot merge, the schedules of groups {first!r} and "
                                     f"{differ[0]!r} differ; keep one with its 'use for all groups' button "
                                     f"(merge_groups({hyper!r}, keep=...))")
                shared = per[first]
            return {**self.state.spec.schedules, hyper: copy.deepcopy(shared)}
        return self._commit(hyper, None, make)

    def _free_hypers(self) -> list[str]:
        return [h for h in self.state.spec.rule().hyper() if h not in self.state.spec.schedules]

    # -- drawing ------------------------------------------------------------------------------
    def row(self, key: Key, path: Path = ()) -> NodeRow:
        return self.rows[(key, path)]

    def show(self) -> None:
        """Redraw from the spec: values in place when the tree's shape is the same, else anew."""
        roots = self._roots()
        shape = ([(key, path, node.name, [f.name for f in self._inputs(node, node_at(root, path[:-1]) if path else None,
                                                                      path)[0]])
                  for key, root in roots.items() for path, node in walk(root)], self._free_hypers())
        self._syncing = True
        try:
            if shape != self._shape:
                self._build(roots)
                self._shape = shape
            names = self.group_names()
            for section in self.hypers.values():
                self._fill_section(section, section.hyper not in roots, names)
            for (key, path), row in self.rows.items():
                self._fill(row, roots[key])
            self.hyper_error.value = html.escape(self.errors.get((None, None), ""))
        finally:
            self._syncing = False

    def _build(self, roots: dict[Key, Schedule]) -> None:
        self.rows, self.hypers = {}, {}
        sections = []
        for hyper in self.state.spec.schedules:
            keys = [k for k in roots if hyper_of(k) == hyper]
            section = self._make_section(hyper, [group_of(k) for k in keys if group_of(k) is not None])
            boxes = list(section.box.children)
            for key in keys:
                group = group_of(key)
                if group is not None:  # a group's tree under its name, with the button that keeps it for all
                    title = W.HTML(f"{html.escape(hyper)} of group <b>{html.escape(str(group))}</b>")
                    title.add_class("td-sched-group")
                    boxes.append(W.HBox([title, section.keep_buttons[group]], layout=W.Layout(align_items="center")))
                root = roots[key]
                for path, node in walk(root):
                    parent = node_at(root, path[:-1]) if path else None
                    row = self._make_row(key, path, node, parent)
                    self.rows[(key, path)] = row
                    boxes.append(row.box)
            section.box.children = boxes
            self.hypers[hyper] = section
            sections.append(section.box)
        self.sections.children = sections
        free = self._free_hypers()
        self.hyper_picker.options = free
        self.hyper_picker.value = free[0] if free else None  # not left blank while there is a choice
        self.hyper_picker.disabled = self.add_hyper_button.disabled = not free

    def _make_section(self, hyper: str, groups: list[Group]) -> HyperSection:
        title = W.HTML(f"<b>{html.escape(hyper)}</b>")
        toggle = W.Checkbox(description="per group", indent=False, layout=W.Layout(width="90px"),
                            tooltip="one schedule per param group (each starts as a copy), or one for all")
        toggle.add_class("td-sched-per-group")
        toggle.observe(lambda ch: self._syncing or (self.split_groups(hyper) if ch["new"]
                                                    else self.merge_groups(hyper)), "value")
        listing = W.HTML()
        listing.add_class("td-sched-groups")
        drop = W.Button(description=f"remove {hyper}", layout=W.Layout(width="auto"))
        drop.add_class("td-sched-remove-hyper")
        drop.on_click(lambda _: self.remove_hyper(hyper))
        keep = {}
        for g in groups:
            button = W.Button(description="use for all groups", layout=W.Layout(width="auto"),
                              tooltip=f"one {hyper} schedule for every group: this group's")
            button.add_class("td-sched-keep")
            button.on_click(lambda _, g=g: self.merge_groups(hyper, keep=g))
            keep[g] = button
        error = W.HTML()
        error.add_class("td-sched-error")
        box = W.VBox([W.HBox([title, toggle, listing, drop], layout=W.Layout(align_items="center")), error])
        box.add_class("td-sched-hyper")
        return HyperSection(hyper, box, toggle, listing, keep, error)

    def _fill_section(self, section: HyperSection, per_group: bool, names: list[str]) -> None:
        section.per_group.value = per_group
        section.per_group.disabled = not (per_group or names)  # merging stays possible; splitting needs names
        section.groups.value = (html.escape("groups: " + ", ".join(map(repr, names))) if names else
                                "one param group (name groups with a partition to split)")
        section.error.value = html.escape(self.errors.get((section.hyper, None), ""))

    @staticmethod
    def _inputs(node: Schedule, parent: Schedule | None, path: Path) -> tuple[list[FieldInfo], bool]:
        """The node's value inputs, and whether it has a length input (a Sequence's segment).
        A segment's own length field (``linear.steps``) is left to the length input when it holds
        the segment's length, so each length is edited in one place, as the spec writes it."""
        has_slot, slot = (children_of(parent).length(parent, path[-1][1])
                          if parent is not None and path[-1][1] is not None else (False, None))
        hide = {"steps"} if isinstance(node, Sequence) else set()  # edited on its segments
        if has_slot and node.length == slot:
            hide.add(length_field(node) or "")
        return [f for f in node_fields(type(node)) if f.name not in hide], has_slot

    def _make_row(self, key: Key, path: Path, node: Schedule, parent: Schedule | None) -> NodeRow:
        label = "" if not path else (f"{path[-1][0]}" if path[-1][1] is None else f"#{path[-1][1] + 1}")
        picker = W.Dropdown(options=SCHEDULES.names(), value=node.name, description=label, tooltip=_doc(type(node)),
                            layout=W.Layout(width="190px"), style={"description_width": "initial"})
        picker.add_class("td-sched-type")
        picker.observe(lambda ch: self._syncing or self.change_type(key, path, ch["new"]), "value")
        inputs, has_slot = self._inputs(node, parent, path)
        fields: dict[str, W.ValueWidget] = {}
        for f in inputs:
            editor = FIELD_EDITORS[f.kind]
            w = editor.make(f)
            w.add_class("td-sched-field")
            w.observe(lambda ch, f=f, e=editor: self._on_input(key, path, f.name, e, ch["new"]), "value")
            fields[f.name] = w
        length = add = remove = None
        if parent is not None and path[-1][1] is not None:
            i, n = path[-1][1], len(getattr(parent, path[-1][0]))
            if has_slot:
                last = i == n - 1
                length = (W.Text(description="length", placeholder="rest of the run", continuous_update=False,
                                 **_NUMBER)
                          if last else W.IntText(description="length", continuous_update=False, **_NUMBER))
                length.add_class("td-sched-length")
                parse = FIELD_EDITORS["optional_int" if last else "int"].parse
                length.observe(lambda ch: self._syncing or self._on_length(key, path, parse, ch["new"]), "value")
            add = W.Button(description="+ after", tooltip="add a copy of this one after it",
                           layout=W.Layout(width="64px"))
            add.add_class("td-sched-add")
            add.on_click(lambda _: self.add_after(key, path))
            remove = W.Button(description="remove", disabled=n == 1, layout=W.Layout(width="64px"))
            remove.add_class("td-sched-remove")
            remove.on_click(lambda _: self.remove(key, path))
        line = [picker] + ([length] if length is not None else []) + list(fields.values()) \
            + [b for b in (add, remove) if b is not None]
        error = W.HTML()
        error.add_class("td-sched-error")
        box = W.VBox([W.HBox(line, layout=W.Layout(flex_flow="row wrap", align_items="center")), error],
                     layout=W.Layout(margin=f"0 0 0 {_INDENT_PX * len(path)}px"))
        box.add_class("td-sched-node")
        return NodeRow(key, path, box, picker, fields, length, add, remove, error)

    def _fill(self, row: NodeRow, root: Schedule) -> None:
        node = node_at(root, row.path)
        row.type_picker.value = node.name
        for f in node_fields(type(node)):
            w = row.fields.get(f.name)
            if w is not None:
                value = FIELD_EDITORS[f.kind].show(getattr(node, f.name))
                if w.value != value:
                    w.value = value
        if row.length is not None:
            parent = node_at(root, row.path[:-1])
            _, n = children_of(parent).length(parent, row.path[-1][1])
            value = ("" if n is None else str(n)) if isinstance(row.length, W.Text) else n
            if row.length.value != value:
                row.length.value = value
        row.error.value = html.escape(self.errors.get((row.key, row.path), ""))

    def _on_input(self, key: Key, path: Path, field: str, editor: FieldEditor, raw: Any) -> None:
        if self._syncing:
            return
        try:
            value = editor.parse(raw)
        except ValueError as e:
            root = self._roots()[key]
            self._refuse((key, path), f"{where(key, root, path)}.{node_at(root, path).name}: {field} {e}")
            return
        self.set_field(key, path, field, value)

    def _on_length(self, key: Key, path: Path, parse: Callable[[Any], Any], raw: Any) -> None:
        try:
            value = parse(raw)
        except ValueError as e:
            root = self._roots()[key]
            self._refuse((key, path), f"{where(key, root, path[:-1])}.sequence: steps[{path[-1][1]}] {e}")
            return
        self.set_length(key, path, value)


def _doc(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]
