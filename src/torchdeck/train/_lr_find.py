"""lr_find: an exponential learning-rate sweep that leaves the learner exactly as it was."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from torchdeck.train._probe import probing

if TYPE_CHECKING:
    from torchdeck.train._learner import Learner

__all__ = ["LRFindResult", "lr_find", "suggest_lrs"]


@dataclasses.dataclass
class LRFindResult:
    """The sweep: ``lrs[i]`` was used for step i, which gave ``losses[i]`` (raw) and
    ``smoothed[i]`` (exponential moving average, bias-corrected).

    ``hints`` are suggestions read off the smoothed curve, not rules: ``"steepest"`` (where
    the loss falls fastest against log lr) and ``"minimum/10"`` (a tenth of the lr at the
    lowest loss, fastai's rule of thumb). Look at the curve (``lrs`` against ``smoothed``,
    log x axis) before trusting either. ``diverged`` says the sweep stopped early because
    the loss blew up.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    hints: dict[str, float]
    diverged: bool

    def __repr__(self) -> str:
        hints = ", ".join(f"{k} {v:.2e}" for k, v in self.hints.items()) or "none (too few points)"
        end = "diverged" if self.diverged else "completed"
        return f"LRFindResult({len(self.lrs)} steps, {end}; hints, not rules: {hints})"


def suggest_lrs(lrs: Iterable[float], smoothed: Iterable[float]) -> dict[str, float]:
    """``{"steepest": ..., "minimum/10": ...}`` from a sweep (finite points only; needs 3)."""
    lr = np.asarray(list(lrs), dtype=np.float64)
    loss = np.asarray(list(smoothed), dtype=np.float64)
    ok = np.isfinite(loss) & np.isfinite(lr) & (lr > 0)
    lr, loss = lr[ok], loss[ok]
    if len(lr) < 3:
        return {}
    slope = np.gradient(loss, np.log10(lr))
    return {"steepest": float(lr[int(np.argmin(slope))]), "minimum/10": float(lr[int(np.argmin(loss))] / 10.0)}


def _cycle(loader: Iterable[Any], name: str) -> Iterator[Any]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError(f"lr_find: the {name!r} loader yields no batch")


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"lr_find: {name} must be a positive number, got {value!r}")
    return float(value)


def lr_find(learner: "Learner", *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            beta: float = 0.98, diverge: float = 4.0) -> LRFindResult:
    """Train ``steps`` batches with the lr rising geometrically from ``start_lr`` to ``end_lr``
    (every param group gets the same lr), stopping once the smoothed loss exceeds
    ``diverge`` times its best (or is not finite). Runs on the learner's own model and
    optimiser, then restores them — and the RNGs, the loaders' shuffling, the history —
    exactly (see ``probing``). Only ``in_probes`` callbacks (mixed precision) take part.
    """
    start_lr, end_lr = _positive("start_lr", start_lr), _positive("end_lr", end_lr)
    if end_lr <= start_lr:
        raise ValueError(f"lr_find: end_lr must be greater than start_lr, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"lr_find: steps must be an integer >= 2, got {steps!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
        raise ValueError(f"lr_find: beta (smoothing) must be in [0, 1), got {beta!r}")
    if _positive("diverge", diverge) <= 1:
        raise ValueError(f"lr_find: diverge must be > 1 (a multiple of the best loss), got {diverge!r}")
    phase = next((p for p in learner.phases if p.training), None)
    if phase is None:
        raise ValueError(f"lr_find: the learner has no training phase; phases: {', '.join(map(repr, learner.phases))}")
    groups = learner.optimizer.param_groups
    for i, group in enumerate(groups):
        if "lr" not in group:
            keys = ", ".join(k for k in group if k not in ("params", "param_names"))
            raise ValueError(f"lr_find: param group {i} has no 'lr' hyperparameter to sweep; it has: {keys}")

    sweep = np.geomspace(start_lr, end_lr, steps)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    diverged = False
    best = math.inf
    avg = 0.0
    with probing(learner):
        batches = _cycle(learner.loaders[phase.name], phase.name)
        for i, lr in enumerate(sweep.tolist()):
            for group in groups:
                group["lr"] = lr
            learner.probe_step(phase, next(batches))
            loss = float(learner.state.loss.detach())
            avg = beta * avg + (1 - beta) * loss
            smooth = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(smooth)
            if not math.isfinite(smooth) or smooth > diverge * best:
                diverged = True
                break
            best = min(best, smooth)
    # The point that diverged says where to stop, not where to train: hints leave it out.
    kept = len(lrs) - 1 if diverged else len(lrs)
    return LRFindResult(lrs, losses, smoothed, suggest_lrs(lrs[:kept], smoothed[:kept]), diverged)
