"""The standard callbacks: Metrics, Recorder, ProgressBar."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

import torch

from torchdeck.train._callback import Callback
from torchdeck.train._metrics import SummedMetric, get_metric
from torchdeck.train._state import TrainState

__all__ = ["Metrics", "Recorder", "ProgressBar", "current_lr"]


def _batch_size(yb: Any) -> int:
    """Samples in a batch's targets: a tensor's first dimension, else ``len`` (a list of
    per-image targets). Called every step: ``len()`` of a tensor costs three times ``shape[0]``."""
    return yb.shape[0] if isinstance(yb, torch.Tensor) else len(yb)


def current_lr(state: TrainState) -> float:
    groups = state.optimizer.param_groups
    return float(groups[0].get("lr", float("nan"))) if groups else float("nan")


def _world_size() -> int:
    """Processes in a torch.distributed run (1 without one): their epoch values are all-reduced."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def reduce_over_ranks(values: list[int], op: str = "max") -> list[int]:
    """Whole numbers reduced element-wise over the ranks (``op``: "max" or "min"), in one
    all-reduce on the backend's device; the values themselves outside a torch.distributed run.
    For decisions every rank must take at the same step (stop, pause, how often to check)."""
    if _world_size() == 1:
        return list(values)
    dist = torch.distributed
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op={"max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.tolist()


def _all_reduced(means: dict[str, list[torch.Tensor]], summed: dict[str, list[torch.Tensor]],
                 sizes: list[int]) -> dict[str, Any]:
    """The epoch values over every rank's samples, with one all-reduce.

    Per rank: the size-weighted sum of each batch-mean value, the sample count and each summed
    metric's statistics (a confusion matrix), packed in one float64 vector (counts stay exact
    up to 2**53) and added up across ranks. Batch-mean values come back as floats, summed
    statistics as the all-ranks total (in their own shape) for ``reduce``.
    """
    device = next(iter(means.values()))[0].device
    weights = torch.tensor(sizes, dtype=torch.float64, device=device)
    totals = {n: torch.stack(v).sum(0) for n, v in summed.items()}
    packed = torch.cat([
        torch.stack([torch.stack(v).to(torch.float64).reshape(-1) @ weights for v in means.values()]),
        weights.sum().reshape(1),
        *[t.to(device=device, dtype=torch.float64).reshape(-1) for t in totals.values()]])
    torch.distributed.all_reduce(packed)
    packed = packed.cpu()
    count = float(packed[len(means)])
    values: dict[str, Any] = dict(zip(means, (packed[:len(means)] / count).tolist()))
    offset = len(means) + 1
    for name, t in totals.items():
        values[name] = packed[offset:offset + t.numel()].reshape(t.shape).to(t.dtype)
        offset += t.numel()
    return values


class Metrics(Callback):
    """Epoch values of the loss and of each metric, per phase, weighted by batch size.

    Metrics run on validation phases; on training phases only with ``train_metrics=True``
    (as fastai: a training-set metric costs time every step and says little). Per-step
    values stay on the device (no host sync per step); the epoch's values land in
    ``state.metrics`` as ``<phase>_loss``, ``<phase>_<metric>``.

    In a torch.distributed run (world size > 1) each epoch's values are over all ranks'
    samples: one all-reduce per phase per epoch adds up every rank's size-weighted sums, its
    sample count and its summed statistics (see ``_all_reduced``). Every rank must then end
    each phase with at least one batch (``torchdeck.distributed`` splits loaders so).
    """

    reads = ("phase", "pred", "yb", "loss")
    writes = ("metrics",)

    def __init__(self, *metrics: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 train_metrics: bool = False) -> None:
        self.metrics = [get_metric(m) for m in metrics]
        self.train_metrics = train_metrics
        self._active: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = []
        self._losses: list[torch.Tensor] = []
        self._values: dict[str, list[torch.Tensor]] = {}
        self._sizes: list[int] = []

    def epoch_begin(self, state: TrainState) -> None:
        measured = self.metrics if (self.train_metrics or not state.phase.training) else []
        self._active = measured
        self._losses = []
        self._values = {name: [] for name, _ in measured}
        self._sizes = []

    def step_end(self, state: TrainState) -> None:
        self._sizes.append(_batch_size(state.yb))
        self._losses.append(state.loss.detach())
        if self._active:
            pred = state.pred.detach()
            for name, fn in self._active:
                # A SummedMetric (F1, mIoU) keeps statistics to add up, not a batch mean.
                value = fn.statistics(pred, state.yb) if isinstance(fn, SummedMetric) else fn(pred, state.yb)
                self._values[name].append(value.detach())

    def epoch_end(self, state: TrainState) -> None:
        if not self._sizes:
            return
        summed = {name: fn for name, fn in self._active if isinstance(fn, SummedMetric)}
        means = {"loss": self._losses, **{n: v for n, v in self._values.items() if n not in summed}}
        if _world_size() > 1:
            values = _all_reduced(means, {n: self._values[n] for n in summed}, self._sizes)
        else:
            sizes = torch.tensor(self._sizes, dtype=torch.float64)
            # One host sync per epoch for all batch-mean values (and one per summed metric).
            table = torch.stack([torch.stack(v).to(torch.float64).cpu() for v in means.values()])
            values = dict(zip(means, (table @ sizes / sizes.sum()).tolist()))
            values.update({name: torch.stack(self._values[name]).sum(0) for name in summed})
        for name, fn in summed.items():
            values[name] = float(fn.reduce(values[name]))
        for name in ("loss", *self._values):
            state.metrics[f"{state.phase.name}_{name}"] = values[name]

    def __repr__(self) -> str:
        return f"Metrics({', '.join(name for name, _ in self.metrics)})"


class Recorder(Callback):
    """Keeps the history: train loss and lr per step, all metrics per epoch."""

    reads = ("phase", "loss", "step", "epoch", "metrics", "optimizer")  # optimizer: the lr
    writes = ("history",)
    after = (Metrics,)

    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []
        self._t0 = 0.0

    def epoch_begin(self, state: TrainState) -> None:
        if state.phase.training:
            self._t0 = time.perf_counter()

    def step_end(self, state: TrainState) -> None:
        if state.phase.training:
            h = state.history
            h.steps.append(state.step)
            h.lrs.append(current_lr(state))
            self._losses.append(state.loss.detach())

    def epoch_end(self, state: TrainState) -> None:
        if self._losses:  # convert the epoch's losses with one host sync
            state.history.losses.extend(torch.stack(self._losses).float().cpu().tolist())
            self._losses = []
        if not state.phase.training:
            row = {"epoch": state.epoch + 1, "step": state.step, **state.metrics,
                   "epoch_seconds": time.perf_counter() - self._t0}
            state.history.epochs.append(row)


class ProgressBar(Callback):
    """A tqdm bar per phase that replaces itself (no pile-up), and one summary line per epoch.

    A phase's bar appears once the phase has run ``delay`` seconds (as tqdm's own ``delay``;
    the bar's clock starts then): a phase shorter than that shows only its epoch line. Tiny
    epochs then neither flicker a bar for a few milliseconds nor pay, every epoch, for making
    one (in a notebook, a widget).

    Args:
        file: where bars and epoch lines go (default: bars to stderr, lines to stdout).
        delay: seconds a phase runs before its bar appears; 0 shows every bar at once.
        clock: the time source, in seconds (tests pass a fake one).
    """

    reads = ("phase", "epoch", "epochs", "batches", "loss", "metrics")
    after = (Recorder,)

    def __init__(self, file: Any = None, *, delay: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < math.inf:
            raise ValueError(f"ProgressBar: delay must be a number of seconds >= 0, got {delay!r}")
        self.file = file
        self.delay = delay
        self.clock = clock
        self._bar: Any = None
        self._done = 0          # steps of the running phase so far
        self._total = 0
        self._desc = ""
        self._start = 0.0

    def epoch_begin(self, state: TrainState) -> None:
        self._close()
        self._done, self._start = 0, self.clock()
        self._total = state.batches.get(state.phase.name, 0)
        self._desc = f"epoch {state.epoch + 1}/{state.epochs} {state.phase.name}"
        if self.delay == 0:
            self._open()

    def step_end(self, state: TrainState) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)
        elif self.clock() - self._start >= self.delay:
            self._open()

    def epoch_end(self, state: TrainState) -> None:
        self._close()
        if not state.phase.training:
            from tqdm.auto import tqdm
            values = "  ".join(f"{k} {v:.4f}" for k, v in state.metrics.items())
            tqdm.write(f"epoch {state.epoch + 1}/{state.epochs}  {values}", file=self.file or sys.stdout)

    def fit_end(self, state: TrainState) -> None:
        self._close()

    def _open(self) -> None:
        from tqdm.auto import tqdm
        self._bar = tqdm(total=self._total, initial=self._done, leave=False, file=self.file or sys.stderr,
                         desc=self._desc, dynamic_ncols=True)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __repr__(self) -> str:
        return f"ProgressBar(delay={self.delay})"
