"""Any schedule as a torch LR scheduler, for code that asks for one by type (Lightning's
``configure_optimizers``, hand loops written for ``torch.optim.lr_scheduler``)."""

from __future__ import annotations

from typing import Any

import torch

from torchdeck.schedules._scheduler import per_group, _resolve

__all__ = ["TorchLR"]


class TorchLR(torch.optim.lr_scheduler.LRScheduler):
    """``TorchLR(opt, schedule)`` is a real ``LRScheduler``: after ``t`` calls of ``step()``
    the learning rate is ``schedule(t)`` (one schedule, or a list with one per param group).
    torch's own machinery does the counting, ``get_last_lr`` and ``state_dict``.

    Open lengths (``period: null``) need ``total_steps``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Any, *, total_steps: int | None = None,
                 last_epoch: int = -1) -> None:
        scheds = _resolve("TorchLR: schedule", per_group("lr", schedule), optimizer.param_groups)
        self.schedules = [s.fit_to(total_steps) if total_steps else s for s in scheds]
        try:
            self.schedules[0](0)
        except ValueError as e:
            raise ValueError(f"TorchLR: {e}; or pass total_steps=...") from None
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        values = [s(t) for s in self.schedules]
        return values * len(self.optimizer.param_groups) if len(values) == 1 else values
