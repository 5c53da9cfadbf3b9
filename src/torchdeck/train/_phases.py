"""Phases: what one step does. The learner runs each epoch's phases in turn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from torchdeck.train._learner import Learner

__all__ = ["Phase", "TrainingPhase", "ValidationPhase", "forward_loss"]


class Phase:
    """A pass over one loader. Subclasses fill :meth:`step`; ``training`` switches grad,
    ``model.train()`` and the global step count."""

    name: ClassVar[str] = ""
    training: ClassVar[bool] = False

    def step(self, learner: "Learner") -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        # Comparing devices costs a fifth of a no-op .to(): it runs twice every step.
        return x if x.device == device else x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, device) for v in x)
    return x


def forward_loss(learner: "Learner") -> None:
    """Move the batch to the device, predict, and compute the loss (the part phases share)."""
    s = learner.state
    s.xb, s.yb = _to(s.xb, learner.device), _to(s.yb, learner.device)
    s.pred = s.model(s.xb)
    learner.fire("loss_begin")
    s.loss = s.loss_fn(s.pred, s.yb)


class TrainingPhase(Phase):
    name = "train"
    training = True

    def step(self, learner: "Learner") -> None:
        forward_loss(learner)
        s = learner.state
        learner.fire("backward_begin")
        s.optimizer.zero_grad(set_to_none=True)
        s.loss.backward()
        learner.fire("backward_end")
        s.optimizer.step()


class ValidationPhase(Phase):
    name = "valid"
    training = False

    def step(self, learner: "Learner") -> None:
        forward_loss(learner)
