"""The optimiser chain: one row per rule with its hyperparameters, and the code it makes."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from torchdeck import optim
from torchdeck.widgets._state import StudioState

__all__ = ["ChainPanel"]


class ChainPanel(W.VBox):
    """Edit the chain rule by rule: change a value, remove a rule, add one from the registry."""

    def __init__(self, state: StudioState) -> None:
        self.state = state
        self.summary = W.HTML()
        self.summary.add_class("td-chain")
        self.rows = W.VBox()
        self.add_picker = W.Dropdown(options=sorted(optim.RULES), value="weight_decay", description="Add",
                                     layout=W.Layout(width="220px"))
        self.add_button = W.Button(description="Add rule", layout=W.Layout(width="90px"))
        self.add_button.on_click(lambda _: self.add_rule(self.add_picker.value))
        self.code = W.HTML()
        super().__init__([W.HTML("<b>Optimiser chain</b>"), self.summary, self.rows,
                          W.HBox([self.add_picker, self.add_button]), self.code])
        self._shown: Any = None
        state.observe(lambda _: self.refresh(), "spec")
        self.refresh()

    def _chain(self) -> optim.Chain:
        rule = self.state.spec.rule()
        return rule if isinstance(rule, optim.Chain) else optim.chain(rule)

    def _set_rules(self, rules: list[optim.Rule]) -> None:
        self.state.edit(optim=optim.chain(*rules).to_spec())
        self.refresh(force=True)  # a refused edit must put the fields back

    def set_value(self, index: int, field: str, value: Any) -> None:
        rules = list(self._chain().rules)
        try:
            rules[index] = rules[index].replace(**{field: value})
        except ValueError as e:
            self.state.error = f"optim.chain[{index}].{e}"
            self.refresh(force=True)
            return
        self._set_rules(rules)

    def remove_rule(self, index: int) -> None:
        rules = list(self._chain().rules)
        del rules[index]
        self._set_rules(rules)

    def add_rule(self, name: str) -> None:
        rules = list(self._chain().rules)
        # A new rule goes before a final scale_lr, where weight decay and clipping belong.
        at = len(rules) - 1 if rules and rules[-1].name == "scale_lr" else len(rules)
        rules.insert(at, optim.RULES[name]())
        self._set_rules(rules)

    def refresh(self, force: bool = False) -> None:
        chain = self._chain()
        if chain == self._shown and not force:
            return
        self._shown = chain
        self.summary.value = f"<code>{html.escape(str(chain))}</code>"
        self.code.value = f"<pre style='margin:0'>{html.escape(chain.to_code())}</pre>"
        self.rows.children = [self._row(i, r) for i, r in enumerate(chain.rules)]

    def _row(self, index: int, rule: optim.Rule) -> W.HBox:
        fields = []
        for name, value in rule.hyper().items():
            box = W.FloatText(value=value, description=name, continuous_update=False,
                              layout=W.Layout(width="130px"), style={"description_width": "56px"})
            box.observe(lambda ch, n=name: self.set_value(index, n, ch["new"]), "value")
            fields.append(box)
        remove = W.Button(description="remove", layout=W.Layout(width="70px"))
        remove.on_click(lambda _: self.remove_rule(index))
        label = W.HTML(f"<code>{rule.name}</code>", layout=W.Layout(width="90px"))
        return W.HBox([label, *fields, remove], layout=W.Layout(flex_flow="row wrap"))
