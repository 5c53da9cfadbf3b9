"""The standard callbacks' output: ProgressBar (bars drawn only for phases that last) and
Metrics on targets that are not tensors."""

from __future__ import annotations

import io
import itertools
import math
import re

import pytest
import torch

from torchdeck import optim as O
from torchdeck.train import Learner, ProgressBar

from ._tiny import tiny_data, tiny_learner


def _ticking(step: float):
    """A clock that advances ``step`` seconds each time it is read (exact binary fractions)."""
    counter = itertools.count()
    return lambda: next(counter) * step


def _epoch_line(row: dict, epochs: int) -> str:
    values = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "step", "epoch_seconds"))
    return f"epoch {row['epoch']}/{epochs}  {values}"


def test_phases_shorter_than_the_delay_print_only_their_epoch_lines():
    out = io.StringIO()
    learner = tiny_learner([ProgressBar(file=out, clock=lambda: 0.0)], n_train=24, epochs=3)
    learner.fit()
    text = out.getvalue()
    assert "|" not in text and "it/s" not in text  # no bar was drawn
    assert text.splitlines() == [_epoch_line(row, 3) for row in learner.history.epochs]


def test_a_bar_appears_once_its_phase_outlasts_the_delay_with_the_steps_already_done():
    out = io.StringIO()
    # Read once at the phase's start and once per step: the second step ends 0.5 s in.
    learner = tiny_learner([ProgressBar(file=out, delay=0.5, clock=_ticking(0.25))], n_train=24, n_valid=10,
                           epochs=2)
    learner.fit()
    text = out.getvalue()
    for epoch in (1, 2):
        # 24 train samples in batches of 8: 3 steps; 10 valid samples: 2 steps.
        assert re.search(rf"epoch {epoch}/2 train:\s+67%.*\b2/3\b", text)
        assert re.search(rf"epoch {epoch}/2 valid:\s+100%.*\b2/2\b", text)
        assert f"epoch {epoch}/2 train:   0%" not in text
    summaries = [line for line in re.split(r"[\r\n]", text) if re.match(r"epoch \d+/\d+  ", line)]
    assert summaries == [_epoch_line(row, 2) for row in learner.history.epochs]


def test_delay_zero_shows_each_bar_from_its_first_step():
    out = io.StringIO()
    tiny_learner([ProgressBar(file=out, delay=0)], n_train=24).fit()
    assert re.search(r"epoch 1/1 train:\s+0%.*\b0/3\b", out.getvalue())
    assert re.search(r"epoch 1/1 valid:\s+0%.*\b0/2\b", out.getvalue())


@pytest.mark.parametrize("delay", [-0.1, math.inf, math.nan, "1", True, None])
def test_a_bad_delay_is_refused_with_its_value(delay):
    with pytest.raises(ValueError, match=rf"ProgressBar: delay must be a number of seconds >= 0, got {re.escape(repr(delay))}"):
        ProgressBar(delay=delay)


def test_epoch_values_weigh_batches_by_size_when_targets_are_lists():
    (xt, yt), (xv, yv) = tiny_data(n_train=12, n_valid=10)
    # Batches of 4, 4 and 2 with the targets as Python lists (as per-image box lists are).
    train = [(xt[i:i + 4], yt[i:i + 4].tolist()) for i in range(0, 12, 4)]
    valid = [(xv[i:i + 4], yv[i:i + 4].tolist()) for i in range(0, 10, 4)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def loss_fn(pred, targets):
        return torch.nn.functional.cross_entropy(pred, torch.tensor(targets))

    learner = Learner(model, {"train": train, "valid": valid}, loss_fn, O.chain(O.adam(), O.scale_lr(1e-2)))
    learner.fit(1)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(learner.model(xv), yv).item()  # the mean over all 10 samples
    assert learner.history.epochs[-1]["valid_loss"] == pytest.approx(expected, rel=1e-6)
