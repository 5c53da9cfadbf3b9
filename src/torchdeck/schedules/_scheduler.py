"""``Scheduler``: sets optimiser hyperparameters from schedules, step by step."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np
import torch

from torchdeck.schedules._base import SCHEDULES, Schedule
from torchdeck.schedules._spec import schedule_from_spec
from torchdeck.train import Callback, TrainState

__all__ = ["Scheduler", "plan", "per_group", "per_group_spec", "check_groups"]


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
        self.schedules = {k: per_group(k, v) for k, v in schedules.items()}
        self.optimizer = optimizer
        self.t = 0
        self._per_epoch = 1
        self._total = total_steps
        self._active: dict[str, list[Schedule]] = {}
        self._tables: dict[str, list[list[float]]] = {}
        if optimizer is not None:
            self._check(optimizer)
            try:
                self._apply(optimizer, 0)
            except ValueError as e:  # an open length (steps/period null) with nothing to fit it to
                raise ValueError(f"Scheduler: {e}; or pass total_steps=... when stepping by hand") from None

    def _fit(self, total: int | None) -> None:
        self._total = total
        self._active = {k: [s.fit_to(total) if total else s for s in ss] for k, ss in self._lists.items()}
        # With a known length, every value in one vectorised call; a step then costs a lookup.
        self._tables = {k: [s.values(np.arange(total)).tolist() for s in ss] for k, ss in self._active.items()} \
            if total else {}

    def _check(self, optimizer: Any) -> None:
        """Match the schedules to the optimiser's param groups (by position or by name), then fit."""
        groups = optimizer.param_groups
        self._lists = {name: _resolve(f"Scheduler: schedules.{name}", scheds, groups)
                       for name, scheds in self.schedules.items()}
        for name in self.schedules:
            for i, group in enumerate(groups):
                if name not in group:
                    allowed = ", ".join(k for k in group if k not in ("params", "name", "param_names"))
                    raise ValueError(f"Scheduler: param group {_group_label(group, i)} has no hyperparameter "
                                     f"{name!r}; allowed: {allowed}")
        self._fit(self._total)

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
        def show(s: Any) -> Any:
            return {g: str(x) for g, x in s.items()} if isinstance(s, dict) else [str(x) for x in s]
        return f"Scheduler({', '.join(f'{k}={show(s)}' for k, s in self.schedules.items())})"


def per_group(name: str, spec: Any) -> list[Schedule] | dict[str, Schedule]:
    """One schedule for every group, a list with one per group, or ``{group name: schedule}``
    (groups named by ``optim.partition``). A mapping whose one key is a schedule type is a
    schedule, not a group name."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"schedules.{name}: an empty list; give a schedule, or one per param group")
        return [schedule_from_spec(x, where=f"schedules.{name}[{i}]") for i, x in enumerate(spec)]
    if isinstance(spec, Mapping) and spec and not (len(spec) == 1 and next(iter(spec)) in SCHEDULES):
        return {str(g): schedule_from_spec(x, where=f"schedules.{name}[{g!r}]") for g, x in spec.items()}
    return [schedule_from_spec(spec, where=f"schedules.{name}")]


def per_group_spec(name: str, spec: Any) -> Any:
    """The canonical spec of one hyperparameter's schedules, in the form given: one schedule,
    a list (one per group) or ``{group name: schedule}``."""
    parsed = per_group(name, spec)
    if isinstance(parsed, dict):
        return {g: s.to_spec() for g, s in parsed.items()}
    return [s.to_spec() for s in parsed] if isinstance(spec, (list, tuple)) else parsed[0].to_spec()


def check_groups(name: str, spec: Any, groups: list[dict]) -> None:
    """Raise ``ValueError`` (``schedules.<name>: ...``) unless the schedules fit these param
    groups: one per group or by name, and each group has the hyperparameter."""
    where = f"schedules.{name}"
    _resolve(where, per_group(name, spec), groups)
    for i, group in enumerate(groups):
        if name not in group:
            allowed = ", ".join(k for k in group if k not in ("params", "name", "param_names"))
            label = f" {_group_label(group, i)}" if len(groups) > 1 else ""
            raise ValueError(f"{where}: the optimiser{label} has no hyperparameter {name!r}; allowed: {allowed}")


def _group_label(group: Mapping[str, Any], i: int) -> str:
    return f"{i} ({group['name']!r})" if "name" in group else str(i)


def _resolve(where: str, scheds: list[Schedule] | dict[str, Schedule], groups: list[dict]) -> list[Schedule]:
    """The schedules in param-group order: one for all, one per group, or looked up by name."""
    if isinstance(scheds, dict):
        names = [g.get("name") for g in groups]
        unknown = sorted(set(scheds) - set(names))
        if unknown:
            known = ", ".join(repr(n) for n in names if n is not None) or "none (name groups with optim.partition)"
            raise ValueError(f"{where}: no param group named {unknown[0]!r}; groups: {known}")
        missing = [n for n in names if n not in scheds]
        if missing:
            raise ValueError(f"{where}: no schedule for param group {missing[0]!r}; give one per group name")
        return [scheds[n] for n in names]
    if len(scheds) > 1 and len(scheds) != len(groups):
        raise ValueError(f"{where} has {len(scheds)} schedules for {len(groups)} param groups; give one, or one per group")
    return list(scheds)


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
