"""The Learner: a training loop that fires events to dependency-ordered callbacks."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch

from torchdeck.optim import Optimizer, Rule
from torchdeck.train._access import Access, check_declarations, checked, debug_from_env
from torchdeck.train._callback import Callback, order_callbacks
from torchdeck.train._callbacks import Metrics, Recorder
from torchdeck.train._events import EVENTS, CancelEpoch, CancelFit, CancelStep
from torchdeck.train._phases import Phase, TrainingPhase, ValidationPhase
from torchdeck.train._runner import Run
from torchdeck.train._state import TrainState

if TYPE_CHECKING:
    from torchdeck.train._lr_find import LRFindResult
    from torchdeck.train._finetune import FineTunePlan

__all__ = ["Learner", "resolve_device", "AUTO_DEVICES"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


# "auto" takes the first device type here that this machine has, in this order.
AUTO_DEVICES: tuple[tuple[str, Callable[[], bool]], ...] = (
    ("cuda", torch.cuda.is_available),
    ("mps", _mps_available),
    ("cpu", lambda: True),
)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None picks CUDA when present, then Apple's MPS, else CPU."""
    if device in (None, "auto"):
        return torch.device(next(name for name, present in AUTO_DEVICES if present()))
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: {device!r} is not a device; "
                         "allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'") from None


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
        debug: hand each callback a view of the state that raises
            :class:`~torchdeck.train.StateAccessError` when it reads a field it did not
            declare in ``reads``/``writes`` or writes one outside ``writes`` (see
            ``torchdeck.train._access``). None (the default) reads ``TORCHDECK_DEBUG=1`` from
            the environment. Can be switched between runs with ``learner.debug = ...``.
            Off, callbacks get the state itself and the checks cost nothing.
    """

    def __init__(self, model: torch.nn.Module, loaders: dict[str, Iterable[Any]],
                 loss_fn: Callable[[Any, Any], torch.Tensor], optimizer: torch.optim.Optimizer | Rule,
                 *, callbacks: Sequence[Callback] = (), metrics: Sequence[Any] = (), epochs: int = 1,
                 device: str | torch.device | None = "cpu",
                 phases: Sequence[Phase] = (TrainingPhase(), ValidationPhase()),
                 debug: bool | None = None) -> None:
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
        self._debug = _debug_flag(debug)
        self.set_callbacks([Metrics(*metrics), Recorder(), *callbacks])

    @classmethod
    def from_task(cls, task: Any, *, backbone: str = "small_cnn", backbone_options: dict[str, Any] | None = None,
                  rule: Rule | None = None, schedules: dict[str, Any] | None = None, batch_size: int = 64,
                  epochs: int = 1, seed: int = 0, device: str | None = "cpu", weights: str | None = None,
                  callbacks: Sequence[Callback] = (), debug: bool | None = None) -> "Learner":
        """Model, loaders, loss and metrics from a task (FastAI.jl's ``tasklearner``).

        The model is initialised from ``seed`` without touching torch's global RNG, so the
        same seed gives the same weights wherever it is called.
        """
        from torchdeck import models, optim
        from torchdeck.schedules import Scheduler

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # The task builds it: a tabular task knows its columns' cardinalities, a vision task its head.
            model = task.build_model(backbone, backbone_options)
        report = models.load_weights(model, weights) if weights else None
        rule = rule if rule is not None else optim.chain(optim.adam(), optim.scale_lr(1e-3))
        extra = [Scheduler(schedules)] if schedules else []
        learner = cls(model, task.loaders(batch_size, seed=seed), task.loss(), rule, metrics=task.metrics(),
                      callbacks=[*extra, *callbacks], epochs=epochs, device=device, debug=debug)
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

    def to(self, device: str | torch.device) -> "Learner":
        """Move the model and the optimiser's state to ``device``; batches follow (each
        phase moves its batch to ``learner.device``)."""
        device = resolve_device(device)
        self.state.model.to(device)
        # Loading a state_dict puts each state tensor on its parameter's device.
        opt = self.state.optimizer
        opt.load_state_dict(opt.state_dict())
        self.device = device
        return self

    # -- callbacks ---------------------------------------------------------------------------
    @property
    def debug(self) -> bool:
        """Whether callbacks get checked views of the state (see the class docs)."""
        return self._debug

    @debug.setter
    def debug(self, on: bool) -> None:
        self._refuse_while_running("debug")
        on, was = _debug_flag(on, env=False), self._debug
        self._debug = on
        try:
            # The handlers are built for one mode: rebuild them for the new one.
            self._handlers = self._handlers_of(self.callbacks)
        except ValueError:
            self._debug = was  # a declaration was refused: stay as before
            raise

    def _handlers_of(self, callbacks: Sequence[Callback]) -> dict[str, list[Callable[[TrainState], None]]]:
        if not self._debug:
            return _handlers_of(callbacks)
        for cb in callbacks:
            check_declarations(cb)
        return _checked_handlers_of(callbacks)

    def set_callbacks(self, callbacks: Iterable[Callback]) -> None:
        """Replace the callbacks (ordered from their declarations).

        A callback that needs the learner itself, not only its state (checkpoints save the
        loaders' shuffling state; a sanity check runs the phases), defines
        ``attach(learner)``: it is called here, as FluxTraining.jl's ``init!``.
        """
        ordered = order_callbacks(callbacks)
        # Precompute, per event, the bound methods that handle it: firing an event nobody
        # handles costs one dict lookup and an empty loop.
        self._handlers = self._handlers_of(ordered)
        self.callbacks = ordered
        for cb in ordered:
            attach = getattr(cb, "attach", None)
            if attach is not None:
                attach(self)

    def add_callback(self, cb: Callback) -> None:
        self.set_callbacks([*self.callbacks, cb])

    def remove_callback(self, cb: Callback | type[Callback]) -> None:
        keep = [c for c in self.callbacks if not (c is cb or (isinstance(cb, type) and isinstance(c, cb)))]
        self.set_callbacks(keep)

    def fire(self, event: str) -> None:
        for handler in self._handlers[event]:
            handler(self.state)

    def _fire_to_all(self, event: str) -> None:
        """Like :meth:`fire`, but a cancel raised by one handler takes effect after every
        handler has run: when an epoch ends, an early stop must not keep the checkpoint,
        the logger or the progress bar from seeing that epoch."""
        cancel: BaseException | None = None
        for handler in self._handlers[event]:
            try:
                handler(self.state)
            except (CancelEpoch, CancelFit) as e:
                # CancelFit outranks CancelEpoch: the fit ends either way.
                if cancel is None or (isinstance(e, CancelFit) and not isinstance(cancel, CancelFit)):
                    cancel = e
        if cancel is not None:
            raise cancel

    @contextlib.contextmanager
    def probe_mode(self) -> Iterator[None]:
        """Only callbacks with ``in_probes = True`` (mixed precision) hear events inside.

        Used for steps that are not part of a run (``lr_find``, the sanity check): the
        recorder, the checkpointer, the loggers and the schedules must not see them.
        """
        saved = self._handlers
        self._handlers = self._handlers_of([cb for cb in self.callbacks if getattr(cb, "in_probes", False)])
        try:
            yield
        finally:
            self._handlers = saved

    def probe_step(self, phase: Phase, batch: Any) -> None:
        """One step of ``phase`` on ``batch`` outside a run (use inside :meth:`probe_mode`)."""
        s = self.state
        s.phase = phase
        s.model.train(phase.training)
        s.xb, s.yb = batch
        with torch.set_grad_enabled(phase.training):
            self.fire("step_begin")
            phase.step(self)
            self.fire("step_end")

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, path: str | os.PathLike) -> str:
        """Write a checkpoint directory (see :func:`torchdeck.train.save_checkpoint`)."""
        from torchdeck.train._checkpoint import save_checkpoint
        return save_checkpoint(self, path)

    def load_checkpoint(self, path: str | os.PathLike, *, which: str = "last") -> str:
        """Restore everything a checkpoint holds; ``path`` is a checkpoint or a Checkpointer
        directory (then ``which`` is ``"last"`` or ``"best"``). Returns the checkpoint used."""
        from torchdeck.train._checkpoint import load_checkpoint
        self._refuse_while_running("load_checkpoint")
        return load_checkpoint(self, path, which=which)

    def _refuse_while_running(self, what: str) -> None:
        # Called from the run's own thread (a callback) it would be part of the run; from any
        # other thread it would change the model under a running step.
        run = self._run
        if run is not None and not run.done and threading.current_thread() is not run._thread:
            raise RuntimeError(f"{what}: this learner has a run in progress (status {run.status}); "
                               "stop it or wait for it first")

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, epochs: int | None = None, *, resume: str | os.PathLike | None = None) -> "Learner":
        """Train for ``epochs`` (default: ``self.epochs``) more epochs.

        ``resume``: a checkpoint (or a Checkpointer directory: its last checkpoint) to load
        first; the run then continues exactly as the one that wrote it would have.
        """
        epochs = self.epochs if epochs is None else epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"fit: epochs must be a positive integer, got {epochs!r}")
        if resume is not None:
            self.load_checkpoint(resume)
        s = self.state
        s.epochs, s.epoch, s.phase, s.stop_reason, s.epoch_complete = epochs, 0, None, "", False
        s.batches = {p.name: _len(self.loaders[p.name]) for p in self.phases}
        try:
            self.fire("fit_begin")
            for epoch in range(epochs):
                s.epoch = epoch
                try:
                    for i, phase in enumerate(self.phases):
                        self._run_phase(phase, last=i == len(self.phases) - 1)
                except CancelEpoch:
                    pass
        except CancelFit as e:
            s.stop_reason = str(e) or type(e).__name__
        finally:
            s.epoch_complete = False
            self.fire("fit_end")
        return self

    def _run_phase(self, phase: Phase, *, last: bool = True) -> None:
        s = self.state
        s.phase = phase
        s.epoch_complete = False
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
            self._fire_to_all("epoch_end")
            raise
        if last:
            s.epochs_done += 1
            s.epoch_complete = True
        self._fire_to_all("epoch_end")
        s.epoch_complete = False

    def fit_one_cycle(self, epochs: int, lr_max: float, *, pct_start: float = 0.25, div_factor: float = 25.0,
                      final_div_factor: float = 1e4) -> "Learner":
        """Train ``epochs`` epochs under the 1cycle lr policy (``schedules.OneCycle``, torch's
        OneCycleLR): from ``lr_max / div_factor`` up to ``lr_max`` over ``pct_start`` of the
        steps, then cosine down to ``lr_max / div_factor / final_div_factor``.

        The cycle starts at the learner's current step (a second call starts a new cycle).
        Scheduler callbacks already on the learner are set aside for this fit and put back
        after it.
        """
        from torchdeck.schedules import Constant, OneCycle, Scheduler, Sequence

        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"fit_one_cycle: epochs must be a positive integer, got {epochs!r}")
        per_epoch = sum(_len(self.loaders[p.name]) for p in self.phases if p.training)
        if per_epoch < 1:
            raise ValueError("fit_one_cycle: the training loader has no len() (or no batches), so the cycle's "
                             "length is unknown; use fit() with a Scheduler instead")
        try:
            cycle = OneCycle(max_lr=lr_max, total_steps=epochs * per_epoch, pct_start=pct_start,
                             div_factor=div_factor, final_div_factor=final_div_factor)
        except ValueError as e:
            raise ValueError(f"fit_one_cycle: {e}") from None
        start = self.state.step
        # Schedules count the global step: hold the cycle's first value until this fit starts.
        lr = cycle if start == 0 else Sequence([Constant(cycle(0), steps=start), cycle])
        one_cycle = Scheduler({"lr": lr})
        set_aside = [cb for cb in self.callbacks if isinstance(cb, Scheduler)]
        self.set_callbacks([cb for cb in self.callbacks if not isinstance(cb, Scheduler)] + [one_cycle])
        try:
            return self.fit(epochs)
        finally:
            self.set_callbacks([cb for cb in self.callbacks if cb is not one_cycle] + set_aside)

    def fine_tune(self, epochs: int, **kwargs: Any) -> "FineTunePlan":
        """The head on a frozen backbone, then everything with discriminative lrs
        (fastai's ``fine_tune``; arguments in :func:`torchdeck.train.fine_tune`)."""
        from torchdeck.train._finetune import fine_tune
        self._refuse_while_running("fine_tune")
        return fine_tune(self, epochs, **kwargs)

    def lr_find(self, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100, beta: float = 0.98,
                diverge: float = 4.0) -> "LRFindResult":
        """Learning-rate sweep on this learner, undone afterwards (see
        :func:`torchdeck.train.lr_find`); returns the curve and hints."""
        from torchdeck.train._lr_find import lr_find
        self._refuse_while_running("lr_find")
        return lr_find(self, start_lr=start_lr, end_lr=end_lr, steps=steps, beta=beta, diverge=diverge)

    def sanity_check(self) -> dict[str, float]:
        """One batch through every phase, undone afterwards; the loss per phase."""
        from torchdeck.train._probe import sanity_check
        self._refuse_while_running("sanity_check")
        return sanity_check(self)

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


def _handlers_of(callbacks: Sequence[Callback]) -> dict[str, list[Callable[[TrainState], None]]]:
    return {e: [getattr(cb, e) for cb in callbacks if e in cb.handles()] for e in EVENTS}


def _checked_handlers_of(callbacks: Sequence[Callback]) -> dict[str, list[Callable[[TrainState], None]]]:
    """As :func:`_handlers_of`, each handler wrapped to receive a checked view of the state."""
    access = {id(cb): Access.of(cb) for cb in callbacks}
    return {e: [checked(getattr(cb, e), access[id(cb)], e) for cb in callbacks if e in cb.handles()] for e in EVENTS}


def _debug_flag(value: Any, *, env: bool = True) -> bool:
    if value is None and env:
        return debug_from_env()
    if not isinstance(value, bool):
        allowed = "True, False or None (read TORCHDECK_DEBUG)" if env else "True or False"
        raise ValueError(f"Learner: debug must be {allowed}, got {value!r}")
    return value


def _len(loader: Iterable[Any]) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return 0
