"""Shared by the schedule tests: what torch's schedulers set, step by step."""

from __future__ import annotations

import numpy as np
import torch


def torch_lrs(make_scheduler, start: float, steps: int) -> np.ndarray:
    """The lr torch's scheduler has set before each of ``steps`` optimiser steps (float64)."""
    opt = torch.optim.SGD([torch.zeros(1, dtype=torch.float64, requires_grad=True)], lr=start)
    sched = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.asarray(out)
