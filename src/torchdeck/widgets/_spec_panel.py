"""The spec as YAML: read what the Studio will run, paste a spec in, or copy the Python."""

from __future__ import annotations

import html

import ipywidgets as W

from torchdeck.spec import Experiment, SpecError
from torchdeck.widgets._state import StudioState

__all__ = ["SpecPanel"]


class SpecPanel(W.VBox):
    """YAML of the current spec (editable; Apply validates it first) and the equivalent script."""

    def __init__(self, state: StudioState) -> None:
        self.state = state
        self.yaml = W.Textarea(layout=W.Layout(width="100%", height="320px"))
        self.yaml.add_class("td-yaml")
        self.apply_button = W.Button(description="Apply YAML")
        self.apply_button.on_click(lambda _: self.apply())
        self.python = W.HTML()
        super().__init__([self.yaml, self.apply_button, W.HTML("<b>The same run as a script</b>"), self.python])
        state.observe(lambda _: self.refresh(), "spec")
        self.refresh()

    def apply(self) -> bool:
        try:
            spec = Experiment.parse_yaml(self.yaml.value)
        except SpecError as e:
            self.state.error = str(e)
            return False
        return self.state.replace(spec)

    def refresh(self) -> None:
        spec = self.state.spec
        self.yaml.value = spec.to_yaml()
        self.python.value = f"<pre style='font-size:11px'>{html.escape(spec.to_python())}</pre>"
