"""The optimiser chain builder: rules from the registry, typed fields checked in place, and
the chain's code and spec shown live.

Nothing here lists rules or fields by name: the "add" menu is the rule registry, and each
field's input comes from its value's type and the range metadata of ``optim.hyper``. A value
the rule refuses is shown next to its field with the reason and never reaches the spec.
"""

from __future__ import annotations

import dataclasses
import functools
import html
from typing import Any, Callable

import ipywidgets as W
import yaml

from torchdeck import optim
from torchdeck.widgets._state import StudioState

__all__ = ["ChainPanel", "FieldEditor", "addable_rules", "allowed_text"]


def allowed_text(meta: Any) -> str:
    """The range a field's metadata allows, as the rules' errors write it: ``[0.0, 1.0)``."""
    meta = meta or {}
    ge, gt, lt, le = (meta.get(k) for k in ("ge", "gt", "lt", "le"))
    if ge is None and gt is None and lt is None and le is None:
        return ""
    lo = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else "(-inf"
    hi = f"{le}]" if le is not None else f"{lt})" if lt is not None else "inf)"
    return f"{lo}, {hi}"


# Field value type -> input widget. Looked up by the exact type, so bool (a subclass of int)
# gets its checkbox and not an int box. A field whose value has another type (a dict of
# rules, as in partition) has no input: its rule is shown read-only.
_INPUTS: dict[type, Callable[..., W.ValueWidget]] = {
    float: lambda **kw: W.FloatText(continuous_update=False, **kw),
    int: lambda **kw: W.IntText(continuous_update=False, **kw),
    bool: lambda **kw: W.Checkbox(indent=False, **kw),
}


def _sized(name: str) -> dict[str, Any]:
    # The whole field name stays readable (initial_accumulator_value) and short ones stay small.
    label = 8 * len(name) + 12
    return {"layout": W.Layout(width=f"{label + 90}px"), "style": {"description_width": f"{label}px"}}


def _field_meta(rule: optim.Rule) -> dict[str, Any]:
    if not dataclasses.is_dataclass(rule):
        return {}
    return {f.name: f.metadata for f in dataclasses.fields(rule)}


def _editable(rule: optim.Rule) -> bool:
    """The rule's spec is just its hyperparameters, each a plain number or flag, so typed
    inputs describe it fully. Not so for rules made of rules (partition: its spec holds rules
    and its ``hyper()`` is empty) or plain chains."""
    hyper = rule.hyper()
    return (type(rule) is not optim.Chain and rule.to_spec() == {rule.name: hyper}
            and all(type(v) in _INPUTS for v in hyper.values()))


@functools.cache
def _addable(names: frozenset[str]) -> tuple[str, ...]:
    out = []
    for name in sorted(names):
        try:
            rule = optim.RULES[name]()
        except (TypeError, ValueError):  # needs arguments with no default (e.g. partition's rules)
            continue
        # Rules holding other rules (partition) or non-numeric values have no typed inputs; they
        # can still come in through the YAML of the spec panel and are shown read-only here.
        if _editable(rule):
            out.append(name)
    return tuple(out)


def addable_rules() -> list[str]:
    """Registered rules that can be made with their defaults and edited field by field."""
    return list(_addable(frozenset(optim.RULES)))  # keyed by the names: rules registered later appear


class FieldEditor(W.HBox):
    """One hyperparameter: its typed input, and the reason when the rule refused a value."""

    def __init__(self, name: str, value: Any, meta: Any, on_edit: Callable[[str, Any], None]) -> None:
        self.name = name
        meta = meta or {}
        allowed = allowed_text(meta)
        tip = "; ".join(t for t in (meta.get("help", ""), f"allowed {allowed}" if allowed else "") if t)
        self.input = _INPUTS[type(value)](value=value, description=name, tooltip=tip or name, **_sized(name))
        self.input.add_class("td-field")
        self.message = W.HTML("")
        self.message.add_class("td-field-error")
        self._quiet = False
        self.input.observe(lambda ch: None if self._quiet else on_edit(name, ch["new"]), "value")
        super().__init__([self.input, self.message])

    @property
    def value(self) -> Any:
        return self.input.value

    def show(self, value: Any) -> None:
        """Show the spec's value (no edit event) and drop any refusal message."""
        self._quiet = True
        try:
            self.input.value = value
        finally:
            self._quiet = False
        self.message.value = ""

    def refuse(self, reason: str) -> None:
        # The refused value stays in the box so the user sees what was wrong with it.
        # Red inline too: a panel shown outside the Studio has no studio.css.
        self.message.value = f"<span style='color:#b00020'>{html.escape(reason)}</span>"


def _row_kind(rule: optim.Rule) -> tuple:
    """Rows are reused for rules of the same kind: same name, same fields of the same types."""
    if _editable(rule):
        return rule.name, tuple((k, type(v)) for k, v in rule.hyper().items())
    return rule.name, None


class _RuleRow(W.VBox):
    """A rule's name, its move/remove buttons and one editor per hyperparameter.

    A row is kept while a rule of its kind stays in the chain (values change, rules move),
    so an edit or a move creates no widgets; ``index`` is where it sits now.
    """

    def __init__(self, panel: "ChainPanel", rule: optim.Rule) -> None:
        self.kind = _row_kind(rule)
        self.index = 0
        doc = (type(rule).__doc__ or "").strip().split("\n")[0]
        label = W.HTML(f"<code>{html.escape(rule.name)}</code>", layout=W.Layout(width="110px"),
                       tooltip=doc or rule.name)
        # Text labels: Voila asks a CDN for the icon font, so icons are blank offline.
        self.up = W.Button(description="↑", tooltip="move up", layout=W.Layout(width="32px"))
        self.down = W.Button(description="↓", tooltip="move down", layout=W.Layout(width="32px"))
        remove = W.Button(description="remove", tooltip="remove this rule", layout=W.Layout(width="70px"))
        for b, css in ((self.up, "td-rule-up"), (self.down, "td-rule-down"), (remove, "td-rule-remove")):
            b.add_class(css)
        self.up.on_click(lambda _: panel.move_rule(self.index, -1))
        self.down.on_click(lambda _: panel.move_rule(self.index, +1))
        remove.on_click(lambda _: panel.remove_rule(self.index))
        self.fields: dict[str, FieldEditor] = {}
        self.text = W.HTML()
        if self.kind[1] is not None:
            meta = _field_meta(rule)
            self.fields = {name: FieldEditor(name, value, meta.get(name),
                                             lambda n, v: panel.set_value(self.index, n, v))
                           for name, value in rule.hyper().items()}
            body: list[W.Widget] = list(self.fields.values())
        else:
            body = [self.text]
        super().__init__([W.HBox([label, self.up, self.down, remove]),
                          W.HBox(body, layout=W.Layout(flex_flow="row wrap"))])
        self.add_class("td-chain-rule")

    def place(self, index: int, count: int, rule: optim.Rule) -> None:
        """Sit at ``index`` of ``count`` rules and show ``rule``'s values (dropping old refusals)."""
        self.index = index
        self.up.disabled, self.down.disabled = index == 0, index == count - 1
        for name, value in rule.hyper().items():
            if name in self.fields:
                self.fields[name].show(value)
        if not self.fields:
            self.text.value = f"<code>{html.escape(str(rule))}</code> <i>(edit in the spec's YAML)</i>"


class ChainPanel(W.VBox):
    """Build the optimiser chain: add, remove and reorder rules, edit their hyperparameters.

    Every change goes to the Studio's spec; the panel redraws from the spec it then holds.
    """

    def __init__(self, state: StudioState) -> None:
        self.state = state
        self.summary = W.HTML()
        self.summary.add_class("td-chain")
        self.message = W.HTML()
        self.message.add_class("td-chain-error")
        self.rows = W.VBox()
        names = addable_rules()
        self.add_picker = W.Dropdown(options=names, value="weight_decay" if "weight_decay" in names else None,
                                     description="Add", layout=W.Layout(width="220px"))
        self.add_picker.add_class("td-rule-picker")
        self.add_button = W.Button(description="Add rule", layout=W.Layout(width="90px"))
        self.add_button.add_class("td-rule-add")
        self.add_button.on_click(lambda _: self.add_rule(self.add_picker.value))
        self.code = W.HTML()
        self.code.add_class("td-chain-code")
        self.yaml = W.HTML()
        self.yaml.add_class("td-chain-yaml")
        views = W.HBox([W.VBox([W.HTML("<i>Python</i>"), self.code], layout=W.Layout(width="58%")),
                        W.VBox([W.HTML("<i>spec</i>"), self.yaml], layout=W.Layout(width="40%"))])
        super().__init__([W.HTML("<b>Optimiser chain</b>"), self.summary, self.rows,
                          W.HBox([self.add_picker, self.add_button]), self.message, views])
        self._shown: Any = None
        state.observe(lambda _: self.refresh(), "spec")
        self.refresh()

    # -- reading -------------------------------------------------------------------------------
    def rules(self) -> tuple[optim.Rule, ...]:
        """The spec's rules in order. A named chain (``adamw``) is one rule, as the spec names it."""
        rule = self.state.spec.rule()
        return rule.rules if type(rule) is optim.Chain else (rule,)

    def field(self, index: int, name: str) -> FieldEditor:
        """The editor of hyperparameter ``name`` of rule ``index``."""
        return self.rows.children[index].fields[name]

    # -- edits ---------------------------------------------------------------------------------
    def set_value(self, index: int, field: str, value: Any) -> bool:
        """Set one hyperparameter; a refused value is explained next to its field."""
        rules = list(self.rules())
        try:
            rules[index] = rules[index].replace(**{field: value})
        except ValueError as e:
            self.state.error = f"optim.chain[{index}].{e}"
            self._refuse(index, field, str(e))
            return False
        if not self._propose(rules):
            self._refuse(index, field, self.state.error)
            return False
        return True

    def add_rule(self, name: str, at: int | None = None) -> bool:
        """Insert a rule with its defaults; by default before a final ``scale_lr``, where weight
        decay and clipping belong."""
        rules = list(self.rules())
        if at is None:
            at = len(rules) - 1 if rules and rules[-1].name == "scale_lr" else len(rules)
        try:
            rule = optim.RULES.lookup(name)()
        except (TypeError, ValueError) as e:
            self._panel_error(f"optim: {e}")
            return False
        rules.insert(at, rule)
        return self._propose(rules)

    def remove_rule(self, index: int) -> bool:
        rules = list(self.rules())
        del rules[index]
        return self._propose(rules)

    def move_rule(self, index: int, offset: int) -> bool:
        """Swap rule ``index`` with its neighbour ``offset`` (-1 up, +1 down) away."""
        rules = list(self.rules())
        other = index + offset
        if not 0 <= other < len(rules):
            return False
        rules[index], rules[other] = rules[other], rules[index]
        return self._propose(rules)

    def _propose(self, rules: list[optim.Rule]) -> bool:
        if not rules:
            self._panel_error("optim: a chain needs at least one rule")
            return False
        # One rule is written as itself, so a named chain (adamw) keeps its name in the spec;
        # inside a longer chain the engine flattens it to its rules.
        rule = rules[0] if len(rules) == 1 else optim.chain(*rules)
        if not self.state.edit(optim=rule.to_spec()):
            # e.g. removing the rule whose lr a schedule drives: the spec says which and why.
            self.message.value = html.escape(self.state.error)
            return False
        return True

    def _panel_error(self, text: str) -> None:
        self.state.error = text
        self.message.value = html.escape(text)

    def _refuse(self, index: int, field: str, reason: str) -> None:
        row = self.rows.children[index] if index < len(self.rows.children) else None
        if row is not None and field in row.fields:
            row.fields[field].refuse(reason)

    # -- drawing -------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        self.message.value = ""  # the spec changed: a refusal of an earlier edit is old news
        rule = self.state.spec.rule()
        if rule == self._shown and not force:
            return
        self._shown = rule
        rules = self.rules()
        names = tuple(addable_rules())
        if names != tuple(self.add_picker.options):  # a rule registered since (a user's own)
            self.add_picker.options = names
        self.summary.value = f"<code>{html.escape(str(rule))}</code>"
        code = f"from torchdeck import optim as O\nrule = {rule.to_code()}"
        self.code.value = f"<pre>{html.escape(code)}</pre>"
        text = yaml.safe_dump({"optim": self.state.spec.optim}, sort_keys=False, allow_unicode=True)
        self.yaml.value = f"<pre>{html.escape(text)}</pre>"
        # Keep the rows of rules still there (a move or a value edit creates no widgets, and
        # focus stays); make rows only for rules that are new.
        spare: dict[tuple, list[_RuleRow]] = {}
        for row in self.rows.children:
            spare.setdefault(row.kind, []).append(row)
        rows = []
        for i, r in enumerate(rules):
            same = spare.get(_row_kind(r))
            row = same.pop(0) if same else _RuleRow(self, r)
            row.place(i, len(rules), r)
            rows.append(row)
        if rows != list(self.rows.children):
            self.rows.children = rows
