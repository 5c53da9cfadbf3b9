"""``Scheduler``: sets optimiser hyperparameters from schedules, step by step."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from torchdeck.schedules._base import Schedule
from torchdeck.schedules._spec import schedule_from_spec
from torchdeck.train import Callback, TrainState

__all__ = ["Scheduler"]


class Scheduler(Callback):
    """Drives hyperparameters (``lr``, ``b1``, ``decay``, ...) of every param group from schedules.

    As a Learner callback it sets them before each training step from the global step,
    after fitting open-ended schedules (``period: null``) to the run's length. Used by hand
    with any torch optimiser, call :meth:`step` after each ``optimizer.step()``, like torch's
    LR schedulers; ``state_dict``/``load_state_dict`` carry the position for resuming.
    """

    reads = ("step", "epochs", "batches", "phase")
    writes = ("optimizer",)

    def __init__(self, schedules: Mapping[str, Schedule | Any], optimizer: torch.optim.Optimizer | None = None,
                 *, total_steps: int | None = None) -> None:
        self.schedules = {k: schedule_from_spec(v, where=f"schedules.{k}") for k, v in schedules.items()}
        self.optimizer = optimizer
        self.t = 0
        self._active = {k: s.fit_to(total_steps) if total_steps else s for k, s in self.schedules.items()}
        self._tables: dict[str, list[float]] = {}
        if optimizer is not None:
            self._check(optimizer)
            try:
                self._apply(optimizer, 0)
            except ValueError as e:  # an open length (steps/period null) with nothing to fit it to
                raise ValueError(f"Scheduler: {e}; or pass total_steps=... when stepping by hand") from None

    def _check(self, optimizer: torch.optim.Optimizer) -> None:
        for name in self.schedules:
            for i, group in enumerate(optimizer.param_groups):
                if name not in group:
                    allowed = ", ".join(k for k in group if k != "params")
                    raise ValueError(f"Scheduler: param group {i} has no hyperparameter {name!r}; allowed: {allowed}")

    def _apply(self, optimizer: torch.optim.Optimizer, t: int) -> None:
        for name, s in self._active.items():
            table = self._tables.get(name)
            value = table[t] if table is not None and t < len(table) else s(t)
            for group in optimizer.param_groups:
                group[name] = value

    # -- as a Learner callback -----------------------------------------------------------------
    def fit_begin(self, state: TrainState) -> None:
        self._check(state.optimizer)
        # Open-ended schedules span this fit: steps already done plus the steps planned.
        total = max(state.step + state.epochs * state.batches.get("train", 0), 1)
        self._active = {k: s.fit_to(total) for k, s in self.schedules.items()}
        # The whole fit's values in one vectorised call; a step then costs a list lookup.
        self._tables = {k: s.values(np.arange(total)).tolist() for k, s in self._active.items()}

    def step_begin(self, state: TrainState) -> None:
        if state.phase.training:
            self._apply(state.optimizer, state.step)

    # -- by hand, like torch.optim.lr_scheduler --------------------------------------------------
    def step(self) -> None:
        if self.optimizer is None:
            raise RuntimeError("Scheduler.step() needs the optimizer given to Scheduler(..., optimizer)")
        self.t += 1
        self._apply(self.optimizer, self.t)

    def get_last_lr(self) -> list[float]:
        opt = self.optimizer
        return [g["lr"] for g in opt.param_groups] if opt is not None else []

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        if self.optimizer is not None:
            self._apply(self.optimizer, self.t)

    def __repr__(self) -> str:
        return f"Scheduler({', '.join(f'{k}={s}' for k, s in self.schedules.items())})"
