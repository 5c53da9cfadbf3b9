"""When the training monitor may redraw: at most once per interval, by a clock tests can fake."""

from __future__ import annotations

import math
import time
from typing import Callable

__all__ = ["RedrawGate"]


class RedrawGate:
    """Says whether ``interval`` seconds have passed since the last redraw.

    An event that comes too early leaves the redraw ``pending``: the next event past the
    interval (or the run's end, which always draws) shows it.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < math.inf:
            raise ValueError(f"TrainingMonitor: redraw_interval must be a positive number of seconds, got {interval!r}")
        if not callable(clock):
            raise ValueError(f"TrainingMonitor: clock must be a function returning seconds, got {clock!r}")
        self.interval = float(interval)
        self.clock = clock
        self.last = -math.inf
        self.pending = False

    def due(self) -> bool:
        """True when a redraw may happen now; otherwise marks one pending."""
        if self.clock() - self.last >= self.interval:
            return True
        self.pending = True
        return False

    def drawn(self) -> None:
        self.last = self.clock()
        self.pending = False
