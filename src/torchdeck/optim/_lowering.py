"""Lowering: run known rules and chains through torch's fused / foreach kernels.

``lowering_for(rule)`` returns a function ``step(params, grads, state) -> None`` that applies
the rule's whole update to ``params`` in place (keeping ``state`` in the rule's own format, so
switching between the lowered and the generic path, or resuming, changes nothing), or ``None``
when the rule has no lowering and the generic ``update_`` path runs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from torchdeck.optim._base import Rule

__all__ = ["lowering_for"]

Step = Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]


def lowering_for(rule: Rule) -> Step | None:
    del rule
    return None
