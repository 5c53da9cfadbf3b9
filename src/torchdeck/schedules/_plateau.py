"""``ReduceOnPlateau``: scale a hyperparameter down when a monitored metric stops improving.

Unlike the schedules, this one is stateful: it depends on the metrics seen, not on the step.
It follows ``torch.optim.lr_scheduler.ReduceLROnPlateau`` step for step.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from torchdeck.train import Callback, Metrics, TrainState

__all__ = ["ReduceOnPlateau"]

_OWNER = "reduce_on_plateau"
_STATE_KEYS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")


def _number(field: str, value: Any, *, minimum: float = 0.0, below: float | None = None) -> float:
    allowed = f"a number >= {minimum}" + (f" and < {below}" if below is not None else "")
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            or value < minimum or (below is not None and value >= below)):
        raise ValueError(f"{_OWNER}: {field} must be {allowed}, got {value!r}")
    return float(value)


def _count(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{_OWNER}: {field} must be an integer >= 0, got {value!r}")
    return value


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{_OWNER}: {field} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


class ReduceOnPlateau(Callback):
    """Multiply ``group[hyper]`` of every param group by ``factor`` once ``monitor`` has not
    improved for more than ``patience`` epochs (torch's ``ReduceLROnPlateau`` semantics).

    As a Learner callback it reads ``state.metrics[monitor]`` at the end of each validation
    phase. By hand: ``rop = ReduceOnPlateau(optimizer=opt); rop.step(valid_loss)`` per epoch.
    ``state_dict``/``load_state_dict`` carry ``best``, ``num_bad_epochs``,
    ``cooldown_counter`` and ``last_epoch``, so a resumed run equals an uninterrupted one.

    Do not combine it with a :class:`Scheduler` that drives the same ``hyper``: the Scheduler
    sets that hyperparameter before every step and would undo the reduction.
    """

    reads = ("metrics", "phase", "optimizer")
    # It changes optimiser param groups, yet declares no write: the Scheduler already declares
    # ``optimizer`` and the learner refuses two writers of one field, which would forbid using
    # both (e.g. a Scheduler on momentum with this on lr). Declaring finer-grained writes
    # (per hyperparameter) is future work.
    writes = ()
    after = (Metrics,)  # the epoch's metrics must be in state.metrics before we read them

    def __init__(self, monitor: str = "valid_loss", mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_value: float | Sequence[float] = 0.0, eps: float = 1e-8, hyper: str = "lr",
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{_OWNER}: monitor must be a metric name such as 'valid_loss', got {monitor!r}")
        if not isinstance(hyper, str) or not hyper:
            raise ValueError(f"{_OWNER}: hyper must be a hyperparameter name such as 'lr', got {hyper!r}")
        self.monitor = monitor
        self.mode = _choice("mode", mode, ("min", "max"))
        self.threshold_mode = _choice("threshold_mode", threshold_mode, ("rel", "abs"))
        # torch only refuses factor >= 1; a negative factor would act as 0, so it is refused too.
        self.factor = _number("factor", factor, minimum=0.0, below=1.0)
        self.patience = _count("patience", patience)
        self.cooldown = _count("cooldown", cooldown)
        self.threshold = _number("threshold", threshold)
        self.eps = _number("eps", eps)
        if isinstance(min_value, (list, tuple)):
            self.min_value: float | list[float] = [_number(f"min_value[{i}]", v) for i, v in enumerate(min_value)]
        else:
            self.min_value = _number("min_value", min_value)
        self.hyper = hyper
        if optimizer is not None and not hasattr(optimizer, "param_groups"):
            raise ValueError(f"{_OWNER}: optimizer must be a torch optimiser (with param_groups), "
                             f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if optimizer is not None:
            self._min_values(optimizer)  # a per-group list must match the groups
            self._check_hyper(optimizer)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    # -- the rule, as torch ------------------------------------------------------------------
    def _min_values(self, optimizer: torch.optim.Optimizer) -> list[float]:
        n = len(optimizer.param_groups)
        if isinstance(self.min_value, list):
            if len(self.min_value) != n:
                raise ValueError(f"{_OWNER}: min_value has {len(self.min_value)} values but the optimizer has "
                                 f"{n} param groups; give one per group or a single number")
            return self.min_value
        return [self.min_value] * n

    def _is_better(self, a: float) -> bool:
        best = self.best
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _check_hyper(self, optimizer: torch.optim.Optimizer) -> None:
        for i, group in enumerate(optimizer.param_groups):
            if self.hyper not in group:
                allowed = ", ".join(k for k in group if k not in ("params", "param_names"))
                raise ValueError(f"{_OWNER}: param group {i} has no hyperparameter {self.hyper!r} (hyper); "
                                 f"allowed: {allowed}")

    def _reduce(self, optimizer: torch.optim.Optimizer) -> None:
        self._check_hyper(optimizer)
        for group, floor in zip(optimizer.param_groups, self._min_values(optimizer)):
            old = float(group[self.hyper])
            new = max(old * self.factor, floor)
            if old - new > self.eps:
                if isinstance(group[self.hyper], torch.Tensor):
                    group[self.hyper].fill_(new)
                else:
                    group[self.hyper] = new

    def step(self, metric: Any, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Record one epoch's ``metric`` and reduce ``hyper`` if it has plateaued."""
        optimizer = optimizer if optimizer is not None else self.optimizer
        if optimizer is None:
            raise RuntimeError("ReduceOnPlateau.step() needs the optimizer given to ReduceOnPlateau(..., optimizer)")
        current = float(metric)  # also a zero-dim tensor
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce(optimizer)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    # -- as a Learner callback -----------------------------------------------------------------
    def epoch_end(self, state: TrainState) -> None:
        if state.phase is None or state.phase.training:
            return
        if self.monitor not in state.metrics:
            available = ", ".join(sorted(state.metrics)) or "none"
            raise ValueError(f"{_OWNER}: monitor {self.monitor!r} is not among the epoch's metrics; "
                             f"available: {available}")
        self.step(state.metrics[self.monitor], state.optimizer)

    # -- by hand ---------------------------------------------------------------------------------
    def get_last_lr(self) -> list[float]:
        opt = self.optimizer
        return [float(g[self.hyper]) for g in opt.param_groups] if opt is not None else []

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _STATE_KEYS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"{_OWNER}: state_dict lacks {', '.join(missing)}; expected {', '.join(_STATE_KEYS)}")
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.last_epoch = int(state["last_epoch"])

    def __repr__(self) -> str:
        return (f"ReduceOnPlateau(monitor={self.monitor!r}, mode={self.mode!r}, factor={self.factor}, "
                f"patience={self.patience}, hyper={self.hyper!r})")
