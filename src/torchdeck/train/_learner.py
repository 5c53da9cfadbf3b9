"""The Learner: a training loop that fires events to dependency-ordered callbacks."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch

from torchdeck.optim import Optimizer, Rule
from torchdeck.train._callback import Callback, order_callbacks
from torchdeck.train._callbacks import Metrics, Recorder
from torchdeck.train._events import EVENTS, CancelEpoch, CancelFit, CancelStep
from torchdeck.train._phases import Phase, TrainingPhase, ValidationPhase
from torchdeck.train._runner import Run
from torchdeck.train._state import TrainState

__all__ = ["Learner", "resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None picks CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Learner:
    """Trains ``model`` on ``loaders`` (a ``{"train": ..., "valid": ...}`` mapping of
    iterables of ``(x, y)`` batches).

    Args:
        model: the module to train; moved to ``device``.
        loaders: one loader per phase name.
        loss_fn: ``loss_fn(pred, y) -> 0-d tensor``.
        optimizer: a torch optimizer, or a torchdeck rule (wrapped in ``optim.Optimizer``).
        callbacks: extra callbacks; ``Metrics(*metrics)`` and ``Recorder`` are always present.
        metrics: names or functions for the ``Metrics`` callback.
        epochs: the default for :meth:`fit`.
    """

    def __init__(self, model: torch.nn.Module, loaders: dict[str, Iterable[Any]],
                 loss_fn: Callable[[Any, Any], torch.Tensor], optimizer: torch.optim.Optimizer | Rule,
                 *, callbacks: Sequence[Callback] = (), metrics: Sequence[Any] = (), epochs: int = 1,
                 device: str | torch.device | None = "cpu",
                 phases: Sequence[Phase] = (TrainingPhase(), ValidationPhase())) -> None:
        self.device = resolve_device(device)
        model = model.to(self.device)
        if isinstance(optimizer, Rule):
            optimizer = Optimizer(model.named_parameters(), optimizer)
        for p in phases:
            if p.name not in loaders:
                raise ValueError(f"Learner: no loader for phase {p.name!r}; loaders given: {', '.join(loaders)}")
        self.loaders = dict(loaders)
        self.phases = tuple(phases)
        self.epochs = epochs
        self.state = TrainState(model=model, optimizer=optimizer, loss_fn=loss_fn)
        self.callbacks: list[Callback] = []
        self._handlers: dict[str, list[Callable[[TrainState], None]]] = {}
        self._run: Run | None = None
        self.task: Any = None
        self.weights_report: Any = None  # what from_task loaded from a weights file
        self.set_callbacks([Metrics(*metrics), Recorder(), *callbacks])

    @classmethod
    def from_task(cls, task: Any, *, backbone: str = "small_cnn", backbone_options: dict[str, Any] | None = None,
                  rule: Rule | None = None, schedules: dict[str, Any] | None = None, batch_size: int = 64,
                  epochs: int = 1, seed: int = 0, device: str | None = "cpu", weights: str | None = None,
                  callbacks: Sequence[Callback] = ()) -> "Learner":
        """Model, loaders, loss and metrics from a task (FastAI.jl's ``tasklearner``).

        The model is initialised from ``seed`` without touching torch's global RNG, so the
        same seed gives the same weights wherever it is called.
        """
        from torchdeck import models, optim
        from torchdeck.schedules import Scheduler

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            body, features = models.build_backbone(backbone, task.input_channels(), **(backbone_options or {}))
            model = models.Model(body, task.head(features))
        report = models.load_weights(model, weights) if weights else None
        rule = rule if rule is not None else optim.chain(optim.adam(), optim.scale_lr(1e-3))
        extra = [Scheduler(schedules)] if schedules else []
        learner = cls(model, task.loaders(batch_size, seed=seed), task.loss(), rule, metrics=task.metrics(),
                      callbacks=[*extra, *callbacks], epochs=epochs, device=device)
        learner.task = task
        learner.weights_report = report
        return learner

    def show_results(self, n: int = 16) -> Any:
        """Validation images captioned with predictions (``pred≠true`` where wrong)."""
        if self.task is None:
            raise RuntimeError("show_results needs a learner made with Learner.from_task")
        return self.task.show_results(self.predict, n)

    # -- convenience views -------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return self.state.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.state.optimizer

    @property
    def history(self):
        return self.state.history

    # -- callbacks ---------------------------------------------------------------------------
    def set_callbacks(self, callbacks: Iterable[Callback]) -> None:
        ordered = order_callbacks(callbacks)
        # Precompute, per event, the bound methods that handle it: firing an event nobody
        # handles costs one dict lookup and an empty loop.
        self._handlers = {e: [getattr(cb, e) for cb in ordered if e in cb.handles()] for e in EVENTS}
        self.callbacks = ordered

    def add_callback(self, cb: Callback) -> None:
        self.set_callbacks([*self.callbacks, cb])

    def remove_callback(self, cb: Callback | type[Callback]) -> None:
        keep = [c for c in self.callbacks if not (c is cb or (isinstance(cb, type) and isinstance(c, cb)))]
        self.set_callbacks(keep)

    def fire(self, event: str) -> None:
        for handler in self._handlers[event]:
            handler(self.state)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, epochs: int | None = None) -> "Learner":
        """Train for ``epochs`` (default: ``self.epochs``) more epochs."""
        epochs = self.epochs if epochs is None else epochs
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"fit: epochs must be a positive integer, got {epochs!r}")
        s = self.state
        s.epochs, s.epoch, s.phase = epochs, 0, None
        s.batches = {p.name: _len(self.loaders[p.name]) for p in self.phases}
        try:
            self.fire("fit_begin")
            for epoch in range(epochs):
                s.epoch = epoch
                try:
                    for phase in self.phases:
                        self._run_phase(phase)
                except CancelEpoch:
                    pass
        except CancelFit:
            pass
        finally:
            self.fire("fit_end")
        return self

    def _run_phase(self, phase: Phase) -> None:
        s = self.state
        s.phase = phase
        s.model.train(phase.training)
        s.metrics = {k: v for k, v in s.metrics.items() if not k.startswith(f"{phase.name}_")}
        self.fire("epoch_begin")
        try:
            with torch.set_grad_enabled(phase.training):
                for i, batch in enumerate(self.loaders[phase.name]):
                    s.batch_index = i
                    s.xb, s.yb = batch
                    try:
                        self.fire("step_begin")
                        phase.step(self)
                        self.fire("step_end")
                    except CancelStep:
                        pass
                    if phase.training:
                        s.step += 1
        except (CancelEpoch, CancelFit):
            # A cancelled pass still ends: its metrics, history and progress bar close.
            self.fire("epoch_end")
            raise
        self.fire("epoch_end")

    def fit_async(self, epochs: int | None = None) -> Run:
        """Start :meth:`fit` on a background thread and return its :class:`Run` handle."""
        if self._run is not None and not self._run.done:
            raise RuntimeError(f"this learner already has a run in progress (status {self._run.status}); "
                               "stop it or wait for it before starting another")
        self._run = Run(self, self.epochs if epochs is None else epochs)
        return self._run.start()

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Raw model outputs for an encoded batch (eval mode, no grad)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(x.to(self.device))
        finally:
            self.model.train(was_training)


def _len(loader: Iterable[Any]) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return 0
