"""Curves for plots: a schedule over a run, thinned without losing its extremes."""

from __future__ import annotations

import numpy as np

from torchdeck.schedules._base import Schedule

__all__ = ["curve"]


def curve(schedule: Schedule, total: int, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``schedule`` fitted to a run of ``total`` steps, at most ``max_points``
    of them: every step when they fit, else each bucket's minimum and maximum (plus the
    first and last step), so the peaks of a cyclic schedule stay exact in the plot."""
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"curve: total must be a positive integer, got {total!r}")
    if max_points < 4:
        raise ValueError(f"curve: max_points must be >= 4, got {max_points!r}")
    ts = np.arange(total)
    values = schedule.fit_to(total).values(ts)
    if total <= max_points:
        return ts, values
    buckets = (max_points - 2) // 2
    size = -(-total // buckets)
    padded = np.concatenate([values, np.full(buckets * size - total, values[-1])]).reshape(buckets, size)
    rows = np.arange(buckets) * size
    keep = np.concatenate([[0, total - 1], rows + padded.argmin(axis=1), rows + padded.argmax(axis=1)])
    keep = np.unique(np.minimum(keep, total - 1))
    return ts[keep], values[keep]
