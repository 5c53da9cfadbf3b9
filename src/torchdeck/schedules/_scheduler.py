"""``Scheduler``: sets optimiser hyperparameters from schedules, step by step."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np
import torch

from torchdeck.schedules._base import Schedule
from torchdeck.schedules._spec import schedule_from_spec
from torchdeck.train import Callback, TrainState

__all__ = ["Scheduler", "plan"]


class Scheduler(Callback):
    """Drives hyperparameters (``lr``, ``b1``, ``decay``, ...) of param groups from schedules.

    ``schedules`` maps a hyperparameter name to a schedule for every group, or to a list
    with one schedule per param group (``{"lr": [backbone_lr, head_lr]}``).

    As a Learner callback it sets them before each training step from the global step,
    after fitting open-ended schedules (``period: null``) to the run's length. With
    ``per="epoch"`` the schedules count epochs instead (t = steps done // steps per epoch),
    so values change only at epoch boundaries, as torch's epoch-stepped schedulers do. Used by hand
    with any torch optimiser, call :meth:`step` after each ``optimizer.step()``, like torch's
    LR schedulers; ``state_dict``/``load_state_dict`` carry the position for resuming.
    """

    reads = ("step", "epochs", "batches", "phase")
    writes = ("optimizer",)

    def __init__(self, schedules: Mapping[str, Any], optimizer: torch.optim.Optimizer | None = None,
                 *, total_steps: int | None = None, per: str = "step") -> None:
        if per not in ("step", "epoch"):
            raise ValueError(f"Scheduler: per must be 'step' or 'epoch', got {per!r}")
        self.per = per
        self.schedules = {k: _per_group(k, v) for k, v in schedules.items()}
        self.optimizer = optimizer
        self.t = 0
        self._per_epoch = 1
        self._fit(total_steps)
        if optimizer is not None:
            self._check(optimizer)
            try:
                self._apply(optimizer, 0)
            except ValueError as e:  # an open length (steps/period null) with nothing to fit it to
                raise ValueError(f"Scheduler: {e}; or pass total_steps=... when stepping by hand") from None

    def _fit(self, total: int | None) -> None:
        self._active = {k: [s.fit_to(total) if total else s for s in ss] for k, ss in self.schedules.items()}
        # With a known length, every value in one vectorised call; a step then costs a lookup.
        self._tables = {k: [s.values(np.arange(total)).tolist() for s in ss] for k, ss in self._active.items()} \
            if total else {}

    def _check(self, optimizer: Any) -> None:
        groups = optimizer.param_groups
        for name, scheds in self.schedules.items():
            if len(scheds) > 1 and len(scheds) != len(groups):
                raise ValueError(f"Scheduler: schedules.{name} has {len(scheds)} schedules for "
                                 f"{len(groups)} param groups; give one, or one per group")
            for i, group in enumerate(groups):
                if name not in group:
                    allowed = ", ".join(k for k in group if k != "params")
                    raise ValueError(f"Scheduler: param group {i} has no hyperparameter {name!r}; allowed: {allowed}")

    def _apply(self, optimizer: Any, t: int) -> None:
        for name, scheds in self._active.items():
            tables = self._tables.get(name)
            values = [table[t] if tables is not None and t < len(table) else s(t)
                      for s, table in zip(scheds, tables or [None] * len(scheds))]
            for j, group in enumerate(optimizer.param_groups):
                group[name] = values[0] if len(values) == 1 else values[j]

    # -- as a Learner callback -----------------------------------------------------------------
    def fit_begin(self, state: TrainState) -> None:
        self._check(state.optimizer)
        # Open-ended schedules span this fit: steps (or epochs) already done plus those planned.
        per_epoch = max(state.batches.get("train", 0), 1)
        done = state.step // per_epoch if self.per == "epoch" else state.step
        self._fit(max(done + state.epochs * (1 if self.per == "epoch" else per_epoch), 1))
        self._per_epoch = per_epoch

    def step_begin(self, state: TrainState) -> None:
        if state.phase.training:
            t = state.step // self._per_epoch if self.per == "epoch" else state.step
            self._apply(state.optimizer, t)

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
        return f"Scheduler({', '.join(f'{k}={[str(x) for x in s]}' for k, s in self.schedules.items())})"


def _per_group(name: str, spec: Any) -> list[Schedule]:
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"schedules.{name}: an empty list; give a schedule, or one per param group")
        return [schedule_from_spec(x, where=f"schedules.{name}[{i}]") for i, x in enumerate(spec)]
    return [schedule_from_spec(spec, where=f"schedules.{name}")]


def plan(optimizer: Any, schedules: Mapping[str, Any], steps: int, *, start: int = 0) -> dict[str, np.ndarray]:
    """The values a :class:`Scheduler` will set, per hyperparameter: an array (groups, steps)
    for steps ``start .. start + steps - 1`` of a run ``start + steps`` long (so a resumed run
    is planned by its real position). Works on a stand-in of the optimiser's groups: nothing
    of the optimiser changes."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"plan: steps must be a positive integer, got {steps!r}")
    stand_in = SimpleNamespace(param_groups=[{k: v for k, v in g.items() if k != "params"}
                                             for g in optimizer.param_groups])
    sched = Scheduler(schedules, total_steps=start + steps)
    sched._check(stand_in)
    ts = np.arange(start, start + steps)
    n = len(stand_in.param_groups)
    return {name: np.stack([s.values(ts) for s in scheds] if len(scheds) > 1 else [scheds[0].values(ts)] * n)
            for name, scheds in sched._active.items()}
