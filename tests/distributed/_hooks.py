"""``--setup`` hooks for test_cli.py (imported by the worker processes)."""

from __future__ import annotations

from torchdeck import distributed
from torchdeck.train import Callback


class FailOnRank1(Callback):
    reads = ("phase", "batch_index")

    def step_end(self, state) -> None:
        if distributed.rank() == 1 and state.phase.training and state.batch_index == 1:
            raise RuntimeError("planned failure on rank 1")


def fail_on_rank_1(learner) -> None:
    learner.add_callback(FailOnRank1())
