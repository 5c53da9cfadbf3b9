"""Events and flow control, listed once (fastai's good part; FluxTraining.jl's names).

A callback is an object with methods named after the events it handles; each receives
the learner's :class:`~torchdeck.train.TrainState`.
"""

from __future__ import annotations

__all__ = ["EVENTS", "CancelStep", "CancelEpoch", "CancelFit"]

EVENTS: tuple[str, ...] = (
    "fit_begin",       # before the first epoch
    "epoch_begin",     # start of a phase's pass over its data (state.phase tells which)
    "step_begin",      # a batch is in state.xb / state.yb
    "loss_begin",      # state.pred is set
    "backward_begin",  # state.loss is set (training phases only)
    "backward_end",    # gradients are in .grad, before the optimiser step
    "step_end",        # after the optimiser step (or after the loss when validating)
    "epoch_end",       # end of a phase's pass; epoch metrics are in state.metrics
    "fit_end",         # always, also after a cancel or an error
)


class CancelStep(Exception):
    """Raise in a callback to skip the rest of this step."""


class CancelEpoch(Exception):
    """Raise in a callback to end this epoch early (both phases)."""


class CancelFit(Exception):
    """Raise in a callback to end training; ``fit_end`` still runs."""
