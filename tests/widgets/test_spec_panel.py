"""The YAML panel: a pasted spec replaces the Studio's whole, fields it leaves out included."""

from __future__ import annotations

from torchdeck.spec import Experiment
from torchdeck.widgets import SpecPanel, StudioState


def test_applying_yaml_without_augment_or_callbacks_drops_them():
    state = StudioState(Experiment(augment=["flip_x"], callbacks=[{"early_stopping": {"patience": 1}}]))
    panel = SpecPanel(state)
    assert state.spec.augment is not None and state.spec.callbacks
    panel.yaml.value = Experiment().to_yaml()      # the default spec: neither field
    assert panel.apply()
    assert state.spec == Experiment() and state.error == ""


def test_a_bad_yaml_keeps_the_spec_and_says_why():
    state = StudioState()
    panel = SpecPanel(state)
    panel.yaml.value = "train: {epochs: -1}"
    assert not panel.apply()
    assert state.spec == Experiment() and "train.epochs" in state.error
