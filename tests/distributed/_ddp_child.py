"""Run by torchrun in test_ddp.py: each case for 2 epochs under DDP; every rank saves what it got."""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _cases  # noqa: E402

from torchdeck import distributed  # noqa: E402
from torchdeck.train import Callback, CSVLogger, ProgressBar, TimeBudget  # noqa: E402


class Seen(Callback):
    """Counts the samples this rank steps on, per phase (over both epochs)."""

    reads = ("phase", "yb")

    def __init__(self) -> None:
        self.samples: dict[str, int] = {}

    def step_end(self, state) -> None:
        self.samples[state.phase.name] = self.samples.get(state.phase.name, 0) + len(state.yb)


def main(out: str) -> None:
    torch.set_num_threads(1)
    info = distributed.init("cpu")
    for case in _cases.CASES:
        learner = _cases.learner(case)
        seen = Seen()
        learner.set_callbacks([*learner.callbacks, seen, ProgressBar(file=open(os.devnull, "w")),
                               CSVLogger(os.path.join(out, f"{case}.csv"))])
        distributed.prepare(learner)
        train = learner.loaders["train"]
        learner.fit(2)
        torch.save({"weights": {k: v.clone() for k, v in learner.model.state_dict().items()},
                    "history": learner.history.epochs, "metrics": dict(learner.state.metrics),
                    "callbacks": [type(cb).__name__ for cb in learner.callbacks],
                    "model": type(learner.model).__name__, "samples": seen.samples,
                    "seed": getattr(getattr(train, "sampler", None), "seed", None),
                    "batches": {k: len(v) for k, v in learner.loaders.items()}},
                   os.path.join(out, f"{case}-rank{info.rank}.pt"))
    # A time budget that runs out on rank 1 only (a clock one second a step there): every rank
    # must stop at the same step, or rank 0 would wait forever at its next all-reduce.
    ticks = iter(range(10**6))
    clock = (lambda: float(next(ticks))) if info.rank == 1 else (lambda: 0.0)
    learner = _cases.learner(_cases.CASES[0])
    learner.add_callback(TimeBudget(3.0, clock=clock))
    distributed.prepare(learner)
    learner.fit(2)
    torch.save({"step": learner.state.step, "stop_reason": learner.state.stop_reason},
               os.path.join(out, f"budget-rank{info.rank}.pt"))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
