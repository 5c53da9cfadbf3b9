"""TensorBoard: train loss and learning rate per step, every epoch metric, hyperparameters.

Writes with ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard`` package,
imported only when a fit begins). View with ``tensorboard --logdir <log_dir>``.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Mapping

import torch

from torchdeck.train._callback import Callback
from torchdeck.train._callbacks import Recorder
from torchdeck.train._phases import _to as to_device
from torchdeck.train._state import TrainState

__all__ = ["TensorBoard", "HPARAM_TYPES", "epoch_tag", "lr_tags"]

# What TensorBoard's hparams plugin can show (and a 0-d tensor, turned into a number).
HPARAM_TYPES: tuple[type, ...] = (bool, int, float, str)
# Step losses wait (as tensors) until this many are due, then are read with one host sync:
# a run on a GPU does not stall every step, and the chart is at most this many points behind.
_FLUSH_EVERY = 50


def epoch_tag(name: str, phases: tuple[str, ...]) -> str:
    """``valid_accuracy`` -> ``valid/accuracy`` (TensorBoard groups tags by the part before
    ``/``); a metric not prefixed by a phase name goes under ``metrics/``."""
    for phase in phases:
        if name.startswith(f"{phase}_") and len(name) > len(phase) + 1:
            return f"{phase}/{name[len(phase) + 1:]}"
    return f"metrics/{name}"


def lr_tags(groups: list[dict[str, Any]]) -> list[str]:
    """``step/lr`` for one param group; ``step/lr/<group name or index>`` for each of several."""
    if len(groups) == 1:
        return ["step/lr"]
    return [f"step/lr/{g.get('name', i)}" for i, g in enumerate(groups)]


def _main_process() -> bool:
    # Under torch.distributed every rank runs the callbacks; only rank 0 writes, so one run
    # is one set of curves.
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _check_hparams(hparams: Any) -> dict[str, Any] | None:
    if hparams is None:
        return None
    if not isinstance(hparams, Mapping):
        raise ValueError(f"TensorBoard: hparams must be a mapping of name -> value, got {hparams!r}")
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(key, str) or not isinstance(value, HPARAM_TYPES):
            raise ValueError(f"TensorBoard: hparams[{key!r}] = {value!r}; names must be strings and values one of "
                             f"{', '.join(t.__name__ for t in HPARAM_TYPES)}")
        out[key] = value
    return out


class TensorBoard(Callback):
    """Logs a run for TensorBoard into ``log_dir``.

    - every ``every``-th training step: the train loss (``step/loss``) and the learning rate
      (``step/lr``, or ``step/lr/<group>`` per param group), at x = the global step (the
      step numbers of ``learner.history.steps``);
    - at the end of every complete epoch: each value of ``state.metrics`` as
      ``<phase>/<metric>`` (``train/loss``, ``valid/loss``, ``valid/accuracy``), at x = the
      global step then (so epoch and step curves share an axis);
    - with ``hparams``: the hyperparameters at the end of each fit, with the last epoch's
      metrics as their results (TensorBoard's HPARAMS tab);
    - with ``log_graph=True``: the model's graph, traced (in eval mode) on the first training
      batch of the first fit; a model that cannot be traced gives a warning, not an error.

    The writer opens at ``fit_begin`` and is closed at ``fit_end`` (also after a cancel or an
    error), so each fit adds one event file. Under ``torch.distributed`` only rank 0 writes.

    Args:
        log_dir: the directory for event files (created when missing).
        every: log step values every ``every`` training steps (the first included).
        log_graph: also write the model's graph.
        hparams: ``{name: bool | int | float | str}`` to record with the run's results.
    """

    reads = ("phase", "step", "loss", "optimizer", "metrics", "epoch_complete", "batches", "model", "xb")
    after = (Recorder,)

    def __init__(self, log_dir: str | os.PathLike, *, every: int = 1, log_graph: bool = False,
                 hparams: Mapping[str, Any] | None = None) -> None:
        if isinstance(log_dir, bool) or not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(f"TensorBoard: log_dir must be a directory path (str or os.PathLike), got {log_dir!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"TensorBoard: every must be a positive integer (training steps), got {every!r}")
        if not isinstance(log_graph, bool):
            raise ValueError(f"TensorBoard: log_graph must be True or False, got {log_graph!r}")
        self.log_dir = os.path.abspath(os.fspath(log_dir))
        if os.path.isfile(self.log_dir):
            raise ValueError(f"TensorBoard: log_dir {self.log_dir!r} is a file; give a directory")
        self.every = every
        self.log_graph = log_graph
        self.hparams = _check_hparams(hparams)
        self._writer: Any = None
        self._pending: list[tuple[int, torch.Tensor, list[float]]] = []  # (step, loss, lrs) not yet written
        self._lr_tags: list[str] = []
        self._graph_done = False

    @property
    def writer(self) -> Any:
        """The open ``SummaryWriter`` during a fit (None otherwise, and on ranks other than 0)."""
        return self._writer

    def fit_begin(self, state: TrainState) -> None:
        self._close()  # a fit that died before its fit_end left one open
        if not _main_process():
            return
        from torch.utils.tensorboard import SummaryWriter
        self._writer = SummaryWriter(log_dir=self.log_dir)
        self._lr_tags = lr_tags(state.optimizer.param_groups)

    def step_begin(self, state: TrainState) -> None:
        # Before the step's own forward, so nothing the tracer does can touch tensors that
        # the step's backward will need.
        if self.log_graph and not self._graph_done and self._writer is not None and state.phase.training:
            self._graph_done = True
            self._add_graph(state.model, state.xb)

    def step_end(self, state: TrainState) -> None:
        if self._writer is None or not state.phase.training or state.step % self.every:
            return
        lrs = [float(g.get("lr", math.nan)) for g in state.optimizer.param_groups]
        self._pending.append((state.step, state.loss.detach(), lrs))
        if len(self._pending) >= _FLUSH_EVERY:
            self._flush()

    def epoch_end(self, state: TrainState) -> None:
        if self._writer is None:
            return
        self._flush()
        if state.epoch_complete:
            phases = tuple(state.batches)
            for name, value in state.metrics.items():
                self._writer.add_scalar(epoch_tag(name, phases), value, state.step)
            self._writer.flush()

    def fit_end(self, state: TrainState) -> None:
        try:
            if self._writer is not None:
                self._flush()
                if self.hparams is not None:
                    self._add_hparams(state)
        finally:
            self._close()

    # -- helpers -------------------------------------------------------------------------------
    def _flush(self) -> None:
        if not self._pending:
            return
        steps, losses, lrs = zip(*self._pending)
        self._pending = []
        values = torch.stack(losses).float().cpu().tolist()  # one host sync for all of them
        for step, loss, group_lrs in zip(steps, values, lrs):
            self._writer.add_scalar("step/loss", loss, step)
            for tag, lr in zip(self._lr_tags, group_lrs):
                self._writer.add_scalar(tag, lr, step)

    def _add_hparams(self, state: TrainState) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary
        phases = tuple(state.batches)
        # The results are the epoch scalars already in this run: the plugin reads them by tag.
        results = {epoch_tag(k, phases): float(v) for k, v in state.metrics.items()}
        experiment, session_start, session_end = hparams_summary(self.hparams, results)
        file_writer = self._writer.file_writer
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary, state.step)

    def _add_graph(self, model: torch.nn.Module, xb: Any) -> None:
        # torch traces in eval mode (no BatchNorm update, no dropout draw) and without grad:
        # the extra forward leaves the run as it would be without it (the tests check).
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        xb = to_device(xb, device)  # the phase has not moved this batch yet
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's own warnings about the model
                self._writer.add_graph(model, xb)
        except Exception as e:  # a model the tracer cannot follow must not end the run
            warnings.warn(f"TensorBoard: could not trace the model's graph ({type(e).__name__}: {e}); "
                          "training goes on without it", RuntimeWarning, stacklevel=2)

    def _close(self) -> None:
        self._pending = []
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __repr__(self) -> str:
        return f"TensorBoard({self.log_dir!r}, every={self.every})"
