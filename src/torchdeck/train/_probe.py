"""Steps that are not part of a run (the sanity check, lr_find) and leave no trace."""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import TYPE_CHECKING, Iterator

from torchdeck.train._callback import Callback
from torchdeck.train._checkpoint import capture, restore
from torchdeck.train._precision import MixedPrecision, ToDevice
from torchdeck.train._state import TrainState

if TYPE_CHECKING:
    from torchdeck.train._learner import Learner
    from torchdeck.train._phases import Phase

__all__ = ["probing", "sanity_check", "SanityCheck"]

# TrainState fields a probe step overwrites and that are not in a checkpoint.
_STEP_FIELDS = ("phase", "xb", "yb", "pred", "loss", "batch_index", "epoch_complete")


@contextlib.contextmanager
def probing(learner: "Learner") -> Iterator[None]:
    """Inside, only ``in_probes`` callbacks hear events; on leaving, the learner is put back
    exactly: weights, optimiser state, callback state, RNGs, loader shuffling, step and
    history (as a checkpoint would), gradients, train/eval modes and the step fields."""
    s = learner.state
    snap = capture(learner)
    fields = {f: getattr(s, f) for f in _STEP_FIELDS}
    params = list(s.model.parameters())
    grads = [p.grad for p in params]
    modules = list(s.model.modules())
    modes = [m.training for m in modules]
    try:
        with learner.probe_mode():
            yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            restore(learner, snap)
        for p, g in zip(params, grads):
            p.grad = g
        for m, mode in zip(modules, modes):
            m.training = mode
        for f, v in fields.items():
            setattr(s, f, v)


def sanity_check(learner: "Learner") -> dict[str, float]:
    """Run the first batch of every phase (training included: forward, loss, backward and an
    optimiser step), each from the learner as it is, then put everything back. Returns each
    phase's loss on that batch at the current weights.

    Raises RuntimeError naming the phase when a batch fails, ValueError when a loader is
    empty or a loss is not a finite scalar — before any real training time is spent.
    """
    losses: dict[str, float] = {}
    for phase in learner.phases:
        with probing(learner):
            losses[phase.name] = _probe_phase(learner, phase)
    return losses


def _probe_phase(learner: "Learner", phase: "Phase") -> float:
    batch = next(iter(learner.loaders[phase.name]), None)
    if batch is None:
        raise ValueError(f"SanityCheck: the {phase.name!r} loader yields no batch")
    try:
        learner.probe_step(phase, batch)
    except Exception as e:
        raise RuntimeError(f"SanityCheck: the first {phase.name!r} batch failed before training: "
                           f"{type(e).__name__}: {e}") from e
    loss = learner.state.loss
    if loss is None or getattr(loss, "ndim", None) != 0:
        got = "None" if loss is None else f"shape {tuple(getattr(loss, 'shape', ()))}"
        raise ValueError(f"SanityCheck: loss_fn must return a 0-d tensor; on the first {phase.name!r} "
                         f"batch it gave {got}")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise ValueError(f"SanityCheck: the first {phase.name!r} batch gives loss {value}; check the "
                         "data, the model's output and the loss")
    return value


class SanityCheck(Callback):
    """Before each fit, one batch through every phase (see :func:`sanity_check`), so a
    broken validation step fails in seconds, not after the first training epoch. Nothing
    it does stays: weights, optimiser, RNGs and history are restored. ``losses`` keeps the
    last check's loss per phase."""

    reads = ("model", "optimizer", "loss")
    after = (ToDevice, MixedPrecision)

    def __init__(self) -> None:
        self.losses: dict[str, float] = {}
        self._learner: "Learner | None" = None

    def attach(self, learner: "Learner") -> None:
        self._learner = learner

    def fit_begin(self, state: TrainState) -> None:
        if self._learner is None:
            raise RuntimeError("SanityCheck: not attached to a learner; add it with Learner(callbacks=[...])")
        self.losses = sanity_check(self._learner)

    def __repr__(self) -> str:
        return "SanityCheck()"


