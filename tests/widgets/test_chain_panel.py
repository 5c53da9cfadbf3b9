"""The chain builder: rules from the registry, typed inputs, refusals in place, live code and spec."""

from __future__ import annotations

import dataclasses
import html
import re

import ipywidgets as W
import pytest
import yaml

from torchdeck import optim as O
from torchdeck.widgets import ChainPanel, StudioState
from torchdeck.widgets._chain_panel import addable_rules


@pytest.fixture
def panel() -> ChainPanel:
    return ChainPanel(StudioState())


def _names(panel: ChainPanel) -> list[str]:
    return [r.name for r in panel.rules()]


def _shown_code_rule(panel: ChainPanel) -> O.Rule:
    """Run the Python the panel shows (unescaped from its <pre>) and return its ``rule``."""
    code = html.unescape(re.fullmatch(r"<pre>(.*)</pre>", panel.code.value, re.S).group(1))
    ns: dict = {}
    exec(code, ns)  # noqa: S102 - the test checks that the shown code runs and makes the chain
    return ns["rule"]


def _shown_yaml(panel: ChainPanel) -> dict:
    return yaml.safe_load(html.unescape(re.fullmatch(r"<pre>(.*)</pre>", panel.yaml.value, re.S).group(1)))


@dataclasses.dataclass(frozen=True)
class _Toy(O.Rule):
    """A rule registered only inside a test: one float, one int, one flag."""

    name = "toy_rule"
    rate: float = O.hyper(0.5, gt=0.0, le=1.0, help="a rate")
    n: int = O.hyper(2, ge=1, help="a count")
    flip: bool = False

    def update_(self, updates, state, params):
        return updates, state


@dataclasses.dataclass(frozen=True)
class _Holder(O.Rule):
    """A rule whose field is not a number (like partition's rules): no typed inputs."""

    name = "holder_rule"
    inner: tuple = ("sgd",)

    def update_(self, updates, state, params):
        return updates, state


def test_the_add_menu_is_the_registry_and_follows_new_rules(monkeypatch):
    names = addable_rules()
    assert set(names) <= set(O.RULES)
    # Every rule the menu offers can be added and the spec accepts the chain.
    state = StudioState()
    panel = ChainPanel(state)
    base = state.spec.optim
    for name in names:
        assert panel.add_rule(name, at=0), state.error
        # The new rule's own spec heads the chain (a named chain, adamw, joins as its rules).
        added = O.RULES[name]()
        head = added.rules if isinstance(added, O.Chain) else (added,)
        assert panel.rules()[:len(head)] == head
        assert state.edit(optim=base)
    monkeypatch.setitem(O.RULES, _Toy.name, _Toy)
    monkeypatch.setitem(O.RULES, _Holder.name, _Holder)
    assert "toy_rule" in addable_rules()
    assert "holder_rule" not in addable_rules()
    assert "toy_rule" in ChainPanel(StudioState()).add_picker.options


def test_inputs_are_typed_from_the_fields_of_any_registered_rule(monkeypatch):
    monkeypatch.setitem(O.RULES, _Toy.name, _Toy)
    panel = ChainPanel(StudioState())
    assert panel.add_rule("toy_rule", at=0)
    row = panel.rows.children[0]
    assert isinstance(row.fields["rate"].input, W.FloatText)
    assert isinstance(row.fields["n"].input, W.IntText)
    assert isinstance(row.fields["flip"].input, W.Checkbox)
    assert "a rate" in row.fields["rate"].input.tooltip and "(0.0, 1.0]" in row.fields["rate"].input.tooltip

    row.fields["n"].input.value = 5
    row.fields["flip"].input.value = True
    assert panel.state.spec.optim["chain"][0] == {"toy_rule": {"rate": 0.5, "n": 5, "flip": True}}
    row.fields["rate"].input.value = 1.5
    assert "toy_rule: rate must be in (0.0, 1.0], got 1.5" in row.fields["rate"].message.value
    assert panel.state.spec.optim["chain"][0]["toy_rule"]["rate"] == 0.5


def test_real_int_and_flag_fields_get_int_boxes_and_checkboxes(panel):
    assert panel.add_rule("accumulate", at=0) and panel.add_rule("rmsprop", at=1)
    n = panel.field(0, "n")
    assert isinstance(n.input, W.IntText)
    assert isinstance(panel.field(1, "centered").input, W.Checkbox)
    n.input.value = 0
    with pytest.raises(ValueError) as e:
        O.accumulate(n=0)
    assert str(e.value) in n.message.value  # the rule's own words: field, value, allowed range
    assert panel.state.spec.optim["chain"][0] == {"accumulate": {"n": 1}}
    n.input.value = 4
    panel.field(1, "centered").input.value = True
    assert panel.state.spec.rule().rules[:2] == (O.accumulate(4), O.rmsprop(centered=True))


def test_a_refused_value_is_explained_next_to_its_field_and_never_reaches_the_spec(panel):
    state = panel.state
    before = state.spec
    lr = panel.field(2, "lr")
    lr.input.value = -1.0  # as the browser would send it
    with pytest.raises(ValueError) as e:
        O.scale_lr(-1.0)
    assert str(e.value) == "scale_lr: lr must be in [0.0, inf), got -1.0"
    assert str(e.value) in lr.message.value and "#b00020" in lr.message.value
    assert lr.value == -1.0  # the refused value stays visible beside its reason
    assert state.spec == before
    assert state.error == "optim.chain[2].scale_lr: lr must be in [0.0, inf), got -1.0"
    # NaN is refused too, by name.
    panel.field(1, "b1").input.value = float("nan")
    assert "adam: b1 must be a number, got nan" in panel.field(1, "b1").message.value
    assert state.spec == before
    # A valid value clears the message and lands in the spec; the inputs are the same widgets.
    lr.input.value = 0.01
    assert lr.message.value == "" and panel.field(2, "lr") is lr
    assert state.spec.rule() == O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(0.01))
    assert panel.field(1, "b1").value == 0.9 and panel.field(1, "b1").message.value == ""


def test_reorder_and_remove_with_the_buttons(panel):
    row = panel.rows.children[0]
    up, down, remove = row.children[0].children[1:]
    assert up.disabled and not down.disabled
    down.click()
    assert _names(panel) == ["adam", "clip_norm", "scale_lr"]
    last_down = panel.rows.children[2].children[0].children[2]
    assert last_down.disabled
    panel.rows.children[1].children[0].children[1].click()  # clip_norm back up
    assert _names(panel) == ["clip_norm", "adam", "scale_lr"]
    panel.rows.children[0].children[0].children[3].click()  # remove clip_norm
    assert _names(panel) == ["adam", "scale_lr"]
    assert not panel.move_rule(0, -1)  # nothing above the first rule


def test_code_and_spec_views_reproduce_the_chain_live(panel):
    panel.add_rule("weight_decay")
    panel.field(3, "lr").input.value = 0.02
    panel.move_rule(0, +1)
    spec = panel.state.spec
    assert _shown_code_rule(panel) == spec.rule()
    assert _shown_yaml(panel) == {"optim": spec.optim}
    assert O.rule_from_spec(_shown_yaml(panel)["optim"]) == O.chain(
        O.adam(), O.clip_norm(1.0), O.weight_decay(5e-4), O.scale_lr(0.02))
    assert panel.summary.value == "<code>adam → clip_norm(1.0) → weight_decay(5e-4) → scale_lr(0.02)</code>"


def test_an_edit_the_spec_refuses_is_explained_and_the_chain_kept(panel):
    assert panel.remove_rule(2)  # adam's lr is now the one the lr schedule drives
    before = panel.state.spec
    assert not panel.remove_rule(1)  # no rule left with an lr, but the default schedule drives "lr"
    assert panel.state.spec == before
    assert panel.state.error.startswith("schedules.lr: the optimiser has no hyperparameter 'lr'")
    assert "schedules.lr" in panel.message.value
    assert _names(panel) == ["clip_norm", "adam"]
    assert panel.state.edit(schedules={})
    assert panel.message.value == ""  # a new spec clears the old refusal
    assert panel.remove_rule(1)
    assert not panel.remove_rule(0)
    assert "at least one rule" in panel.message.value and _names(panel) == ["clip_norm"]


def test_spec_changes_from_elsewhere_update_the_fields_in_place(panel):
    lr = panel.field(2, "lr")
    lr.input.value = -5.0  # refused, message shown
    assert lr.message.value
    assert panel.state.edit(optim=O.chain(O.clip_norm(2.0), O.adam(b1=0.8), O.scale_lr(0.1)).to_spec())
    assert panel.field(2, "lr") is lr  # same rules: the same inputs, new values
    assert lr.value == 0.1 and lr.message.value == ""
    assert panel.field(0, "max_norm").value == 2.0 and panel.field(1, "b1").value == 0.8
    assert panel.state.spec.rule() == O.chain(O.clip_norm(2.0), O.adam(b1=0.8), O.scale_lr(0.1))


def test_a_named_chain_stays_named_and_rules_of_rules_are_read_only():
    state = StudioState()
    assert state.edit(optim="adamw")
    panel = ChainPanel(state)
    assert _names(panel) == ["adamw"]
    panel.field(0, "decay").input.value = 0.05
    assert state.spec.optim == {"adamw": {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "decay": 0.05}}

    assert state.edit(optim={"chain": [{"partition": {"*bias": "sgd", "*": "adam"}}, {"scale_lr": {"lr": 0.01}}]})
    row = panel.rows.children[0]
    assert row.fields == {} and "partition(" in row.children[1].children[0].value
    panel.move_rule(0, +1)  # still movable
    assert _names(panel) == ["scale_lr", "partition"]
