"""Schedules: a million steps of warm-up + cosine with warm restarts.

Claim: torchdeck computes the whole plan with one vectorised ``values()`` call, where torch
has to step its scheduler once per value; and the Scheduler callback's per-step cost is
below ``scheduler.step()``'s. Both sides run in this process; prints
``<name>: ratio <x> vs <peer>`` lines (the goal for the plan is <= 50 ms). Asserts nothing.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from torchdeck import schedules as S
from torchdeck.train import TrainState
from torchdeck.train._phases import TrainingPhase

STEPS = 1_000_000
TORCH_STEPS = 100_000  # torch steps one value at a time; its time is scaled up to STEPS
WARMUP, PERIOD, LR, ETA_MIN = 1_000, 10_000, 3e-3, 1e-5
REPEATS = 3


def ours() -> S.Schedule:
    return S.Warmup(S.Loop(S.CosAnneal(LR, ETA_MIN, period=PERIOD), PERIOD), steps=WARMUP, start=LR / 10)


def torch_scheduler() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=WARMUP)
    cos = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=PERIOD, eta_min=ETA_MIN)
    return opt, torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[WARMUP])


def best(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    sched = ours()
    ts = np.arange(STEPS)
    plan = best(lambda: sched.values(ts))

    def torch_plan():
        opt, s = torch_scheduler()
        for _ in range(TORCH_STEPS):
            opt.param_groups[0]["lr"]
            s.step()

    import warnings
    warnings.filterwarnings("ignore")  # torch warns that step() ran without optimizer.step()
    torch_time = best(torch_plan, 1) * STEPS / TORCH_STEPS

    # Per-step cost of applying the schedule during training.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    cb = S.Scheduler({"lr": sched})
    state = TrainState(model=torch.nn.Identity(), optimizer=opt, loss_fn=None, phase=TrainingPhase(), epochs=1,
                       batches={"train": TORCH_STEPS})
    cb.fit_begin(state)

    def ours_steps():
        for t in range(TORCH_STEPS):
            state.step = t
            cb.step_begin(state)

    ours_step = best(ours_steps) / TORCH_STEPS
    torch_step = torch_time / STEPS  # the same stepping loop as the plan above

    print(f"{STEPS:,} steps of warm-up + cosine with warm restarts:")
    print(f"  torchdeck values()                 {plan * 1e3:8.1f} ms   (goal <= 50 ms)")
    print(f"  torch SequentialLR, stepped        {torch_time * 1e3:8.1f} ms   (measured on {TORCH_STEPS:,} steps, scaled)")
    print(f"schedule_plan: ratio {plan / torch_time:.4f} vs torch SequentialLR stepping")
    print(f"  Scheduler callback per step        {ours_step * 1e6:8.2f} us")
    print(f"  torch scheduler.step() + lr read   {torch_step * 1e6:8.2f} us")
    print(f"scheduler_step: ratio {ours_step / torch_step:.3f} vs torch scheduler.step()")

    # The Studio's schedule plot: redraw after an edit, for a run of ~100 000 steps (the
    # kernel side: plan, thin to 2000 points, update the figure; no browser here).
    from torchdeck.spec import Experiment
    from torchdeck.widgets import StudioState
    from torchdeck.widgets._schedule_panel import SchedulePanel

    state = StudioState(Experiment().with_changes(**{"train.epochs": 4348}))  # 23 steps an epoch
    panel = SchedulePanel(state)
    redraw = best(lambda: panel.refresh(force=True), 5)
    print(f"  schedule plot redraw, {state.total_steps():,} steps {redraw * 1e3:8.1f} ms")
    print(f"schedule_plot_redraw: ratio {redraw / 0.050:.3f} vs the 50 ms goal")


if __name__ == "__main__":
    main()
