"""Resumes a digits run from a checkpoint in a fresh Python process (run by test_checkpoint.py).

usage: python _resume_child.py CHECKPOINT CHECKPOINT_DIR OUT_FILE EPOCHS DATA_FILE

DATA_FILE holds the digits tensors (``digits_tensors()`` saved by the parent), which spares
the child scikit-learn's import. The child runs on one thread, as the parent's test does.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _digits import digits_learner  # noqa: E402

from torchdeck import schedules as S  # noqa: E402
from torchdeck.train import Checkpointer, EarlyStopping  # noqa: E402


def resume_learner(checkpoint_dir: str, data=None):
    """The run both sides train: dropout (global RNG), shuffling (the loader's generator), a
    warm-up then cosine schedule, clipped Adam, early stopping and a checkpointer."""
    lr = S.Sequence([S.Linear(3e-4, 3e-3, steps=5), S.CosAnneal(3e-3, 1e-4)])
    return digits_learner([S.Scheduler({"lr": lr}), Checkpointer(checkpoint_dir, keep_last=2),
                           EarlyStopping(patience=50)], batch_size=128, n_train=768, dropout=0.2, data=data)


def outcome(learner) -> dict:
    """What must match bit for bit (epoch_seconds is wall time and is left out)."""
    history = dataclasses.asdict(learner.history)
    history["epochs"] = [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in history["epochs"]]
    return {"weights": {k: v.clone() for k, v in learner.model.state_dict().items()},
            "optimizer": learner.optimizer.state_dict(), "history": history, "metrics": dict(learner.state.metrics),
            "step": learner.state.step, "epochs_done": learner.state.epochs_done,
            "torch_rng": torch.get_rng_state(), "loader_rng": learner.loaders["train"].generator.get_state()}


if __name__ == "__main__":
    checkpoint, checkpoint_dir, out, epochs, data_file = sys.argv[1:]
    torch.set_num_threads(1)
    learner = resume_learner(checkpoint_dir, torch.load(data_file, weights_only=True))
    learner.fit(int(epochs), resume=checkpoint)
    torch.save(outcome(learner), out)
