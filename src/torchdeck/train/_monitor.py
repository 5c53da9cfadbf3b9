"""A watched metric: which epoch value, and what counts as better (checkpoints, early stopping)."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from torchdeck.train._state import TrainState

__all__ = ["Monitor", "MODES"]

# mode -> is ``new`` better than ``best`` by more than ``delta``?
MODES: dict[str, Callable[[float, float, float], bool]] = {
    "min": lambda new, best, delta: new < best - delta,
    "max": lambda new, best, delta: new > best + delta,
}


@dataclasses.dataclass(frozen=True)
class Monitor:
    """``metric``: a key of ``state.metrics`` (``"valid_loss"``, ``"valid_accuracy"``, ...);
    ``mode``: ``"min"`` or ``"max"``; ``min_delta``: how much better counts as better."""

    owner: str
    metric: str
    mode: str = "min"
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"{self.owner}: monitor must be a metric name such as 'valid_loss', got {self.metric!r}")
        if self.mode not in MODES:
            raise ValueError(f"{self.owner}: mode must be one of {', '.join(map(repr, MODES))}, got {self.mode!r}")
        delta = self.min_delta
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta >= 0 or math.isinf(delta):
            raise ValueError(f"{self.owner}: min_delta must be a finite number >= 0, got {delta!r}")

    def value(self, state: TrainState) -> float:
        """The monitored value of the epoch that just ended."""
        if self.metric not in state.metrics:
            have = ", ".join(sorted(state.metrics)) or "none"
            raise ValueError(f"{self.owner}: monitor {self.metric!r} is not among this epoch's metrics "
                             f"({have}); pass monitor= one of these")
        return float(state.metrics[self.metric])

    def improved(self, new: float, best: float | None) -> bool:
        """A non-finite value never improves; anything finite beats no best yet."""
        if not math.isfinite(new):
            return False
        return best is None or MODES[self.mode](new, best, float(self.min_delta))
