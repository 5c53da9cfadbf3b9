"""Where and how a step computes: ToDevice, MixedPrecision, GradAccumulation.

Two conventions the three share with StopOnNaN:

- a training step whose parameters all have ``grad is None`` after ``backward_end`` is not
  applied: every torch optimiser (and ours) skips parameters without a gradient. Gradient
  accumulation defers a step that way, and mixed precision skips a step with inf/NaN
  gradients that way (what ``GradScaler.step`` does), so ``step_end`` still runs and the
  loss is still recorded;
- ``backward_end`` order is GradAccumulation, then MixedPrecision (unscales the accumulated
  gradients once), then StopOnNaN (checks the real, unscaled gradients).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from torchdeck.train._callback import Callback
from torchdeck.train._finite import all_finite
from torchdeck.train._state import TrainState

if TYPE_CHECKING:
    from torchdeck.train._learner import Learner

__all__ = ["ToDevice", "MixedPrecision", "GradAccumulation", "available_devices", "AUTOCAST_DTYPES"]


def available_devices() -> list[str]:
    """Device types this machine can train on, best first."""
    from torchdeck.train._learner import AUTO_DEVICES
    return [name for name, present in AUTO_DEVICES if present()]


def _grads(state: TrainState) -> list[torch.Tensor]:
    return [p.grad for p in state.model.parameters() if p.grad is not None]


class ToDevice(Callback):
    """Trains on ``device``: ``"auto"`` (CUDA, then Apple's MPS, then CPU), ``"cpu"``,
    ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    At ``fit_begin`` the model and the optimiser's state move there and the learner's
    ``device`` changes, so each phase moves its batches there too.
    """

    reads = ("model", "optimizer")
    writes = ("model",)

    def __init__(self, device: str | torch.device = "auto") -> None:
        from torchdeck.train._learner import resolve_device
        self.device = resolve_device(device)  # refuses a malformed name now
        self._learner: "Learner | None" = None

    def attach(self, learner: "Learner") -> None:
        self._learner = learner

    def fit_begin(self, state: TrainState) -> None:
        if self.device.type not in available_devices():
            raise ValueError(f"ToDevice: device {str(self.device)!r} is not available on this machine; "
                             f"allowed here: 'auto', {', '.join(map(repr, available_devices()))}")
        if self._learner is not None:
            self._learner.to(self.device)

    def __repr__(self) -> str:
        return f"ToDevice({str(self.device)!r})"


class GradAccumulation(Callback):
    """Steps the optimiser once every ``n`` batches, with the mean of their gradients: the
    update of one batch ``n`` times larger (exactly so for a mean loss and equal batches),
    in the memory of one.

    The last batches of a training epoch form a smaller group (no gradient is carried into
    the next epoch). ``state.step`` still counts batches, so schedules advance per batch.
    Costs one params-sized buffer.
    """

    reads = ("phase", "model", "batch_index", "batches")

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"GradAccumulation: n must be a positive integer (batches per step), got {n!r}")
        self.n = n
        self._stash: dict[torch.nn.Parameter, torch.Tensor] = {}
        self._count = 0

    def epoch_begin(self, state: TrainState) -> None:
        if state.phase.training:
            self._stash, self._count = {}, 0

    def backward_end(self, state: TrainState) -> None:
        if self.n == 1:
            return
        self._count += 1
        total = state.batches.get(state.phase.name, 0)
        last_batch = total > 0 and state.batch_index == total - 1
        params = [p for p in state.model.parameters() if p.grad is not None]
        if self._count < self.n and not last_batch:
            # Keep this batch's gradients aside (the phase zeroes .grad before the next
            # backward) and leave none: the optimiser step is then a no-op.
            for p in params:
                held = self._stash.get(p)
                if held is None:
                    self._stash[p] = p.grad
                else:
                    held.add_(p.grad)
                p.grad = None
            return
        for p, held in self._stash.items():
            p.grad = held if p.grad is None else p.grad.add_(held)
        grads = _grads(state)
        if grads and self._count > 1:
            torch._foreach_mul_(grads, 1.0 / self._count)
        self._stash, self._count = {}, 0

    def __repr__(self) -> str:
        return f"GradAccumulation({self.n})"


# device type -> autocast dtype when none is given: float16 where the hardware is fast at it
# (with loss scaling), bfloat16 on CPU (same range as float32: no scaling needed).
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"cuda": torch.float16, "mps": torch.float16, "cpu": torch.bfloat16}
_DTYPE_NAMES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class MixedPrecision(Callback):
    """Forward pass and loss under ``torch.autocast``; with float16, dynamic loss scaling
    (``torch.amp.GradScaler``): the loss is scaled for ``backward``, the gradients unscaled
    before the other ``backward_end`` callbacks see them, a step with inf/NaN gradients is
    skipped and the scale adapts — ``GradScaler``'s recipe.

    Args:
        dtype: ``"float16"``, ``"bfloat16"`` or None (the device's default: float16 on CUDA
            and MPS, bfloat16 on CPU).
        scaler: loss scaling on/off; None: on for float16, off for bfloat16.
        init_scale, growth_interval: the ``GradScaler``'s starting scale and how many clean
            steps it waits before doubling it (torch's defaults).

    ``state.loss`` holds the scaled loss only between ``backward_begin`` and ``backward_end``;
    metrics and history see the true loss. ``skipped`` counts skipped steps.
    """

    reads = ("phase", "loss", "model", "optimizer")
    writes = ("loss",)
    after = (GradAccumulation,)
    in_probes = True  # lr_find and the sanity check run their steps in the same precision

    def __init__(self, dtype: str | None = None, *, scaler: bool | None = None, init_scale: float = 2.0 ** 16,
                 growth_interval: int = 2000) -> None:
        if dtype is not None and dtype not in _DTYPE_NAMES:
            raise ValueError(f"MixedPrecision: dtype must be one of {', '.join(map(repr, _DTYPE_NAMES))} "
                             f"or None (the device's default), got {dtype!r}")
        if scaler is not None and not isinstance(scaler, bool):
            raise ValueError(f"MixedPrecision: scaler must be True, False or None (auto), got {scaler!r}")
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or not 0 < init_scale < math.inf:
            raise ValueError(f"MixedPrecision: init_scale must be a positive number, got {init_scale!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"MixedPrecision: growth_interval must be a positive integer, got {growth_interval!r}")
        self.dtype = dtype
        self.scaler = scaler
        self.init_scale = float(init_scale)
        self.growth_interval = growth_interval
        self.skipped = 0
        self._device_type = ""
        self._autocast_dtype: torch.dtype | None = None
        self._scaler: Any = None
        self._scaler_state: dict[str, Any] | None = None  # loaded before the scaler exists
        self._ctx: Any = None
        self._true_loss: torch.Tensor | None = None
        self._update_due = False

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return self._autocast_dtype

    @property
    def grad_scaler(self) -> Any:
        """The ``torch.amp.GradScaler`` in use (None without loss scaling)."""
        return self._scaler

    def _setup(self, state: TrainState) -> None:
        param = next(state.model.parameters(), None)
        device_type = param.device.type if param is not None else "cpu"
        if device_type == self._device_type:
            return
        if device_type not in AUTOCAST_DTYPES:
            raise ValueError(f"MixedPrecision: no autocast for device type {device_type!r}; "
                             f"allowed: {', '.join(AUTOCAST_DTYPES)}")
        dtype = _DTYPE_NAMES[self.dtype] if self.dtype else AUTOCAST_DTYPES[device_type]
        use_scaler = dtype == torch.float16 if self.scaler is None else self.scaler
        self._device_type, self._autocast_dtype = device_type, dtype
        self._scaler = torch.amp.GradScaler(device_type, init_scale=self.init_scale,
                                            growth_interval=self.growth_interval) if use_scaler else None
        if self._scaler is not None and self._scaler_state:
            self._scaler.load_state_dict(self._scaler_state)
        self._scaler_state = None

    def _exit(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(None, None, None)

    def _finish_update(self) -> None:
        if self._update_due:
            self._update_due = False
            self._scaler.update()

    def fit_begin(self, state: TrainState) -> None:
        self._setup(state)

    def step_begin(self, state: TrainState) -> None:
        self._setup(state)  # also when first used by lr_find / the sanity check
        # A step cancelled mid-way leaves the context open and the update undone: close both.
        self._exit()
        self._finish_update()
        self._ctx = torch.autocast(self._device_type, dtype=self._autocast_dtype)
        self._ctx.__enter__()

    def backward_begin(self, state: TrainState) -> None:
        self._exit()  # backward runs outside autocast, as torch recommends
        if self._scaler is not None:
            self._true_loss = state.loss
            state.loss = self._scaler.scale(state.loss)

    def backward_end(self, state: TrainState) -> None:
        if self._scaler is None:
            return
        state.loss, self._true_loss = self._true_loss, None
        grads = _grads(state)
        if not grads:  # GradAccumulation deferred this step: unscale once, at the real step
            return
        self._scaler.unscale_(state.optimizer)
        self._update_due = True
        if not all_finite(grads):
            for p in state.model.parameters():
                p.grad = None
            self.skipped += 1

    def step_end(self, state: TrainState) -> None:
        self._exit()
        self._finish_update()

    def epoch_end(self, state: TrainState) -> None:
        self._exit()
        self._finish_update()

    def fit_end(self, state: TrainState) -> None:
        self._exit()
        if self._update_due and self._scaler is not None:
            self._finish_update()
        if self._true_loss is not None:
            state.loss, self._true_loss = self._true_loss, None

    def state_dict(self) -> dict[str, Any]:
        scaler = self._scaler.state_dict() if self._scaler is not None else self._scaler_state
        return {"scaler": scaler, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state["skipped"])
        if self._scaler is not None and state["scaler"]:
            self._scaler.load_state_dict(state["scaler"])
        else:
            self._scaler_state = state["scaler"]

    def __repr__(self) -> str:
        return f"MixedPrecision(dtype={self.dtype!r}, scaler={self.scaler!r})"
