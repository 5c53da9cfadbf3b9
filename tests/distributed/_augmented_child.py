"""An augmented image-classification learner (digits, flip_x + rotate) built from seeds only,
and, run by torchrun from test_shard_augmented.py, its 2-epoch DDP run: every rank saves its
weights and how many images it augmented."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import numpy as np
import torch

from torchdeck import augment as A
from torchdeck import data, tasks
from torchdeck import optim as O
from torchdeck.train import Learner

N_TRAIN, N_VALID, BATCH, SIZE = 64, 22, 16, 12  # 12: the encoder resizes the 8x8 digits (bilinear)
EPOCHS = 2


class CountingAugment:
    """Calls the pipeline and records each seed it is called with (one call per image)."""

    def __init__(self, augment: Any) -> None:
        self.augment, self.seeds = augment, []

    def __call__(self, image: np.ndarray, *, seed: int) -> np.ndarray:
        self.seeds.append(seed)
        return self.augment(image, seed=seed)


def task(n_train: int = N_TRAIN, n_valid: int = N_VALID) -> tasks.ImageClassification:
    digits = data.load("digits")
    small = dataclasses.replace(digits, train_idx=digits.train_idx[:n_train], valid_idx=digits.valid_idx[:n_valid])
    return tasks.ImageClassification(small, size=SIZE, augment=A.Pipeline(A.FlipX(), A.Rotate(20)))


def learner() -> tuple[Learner, CountingAugment]:
    """The learner each rank runs and the single-process reference runs, and its counter."""
    loaders = task().loaders(BATCH, seed=5)
    counter = CountingAugment(loaders["train"].augment)
    loaders["train"].augment = counter
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 32), torch.nn.ReLU(),
                                    torch.nn.Linear(32, 10))
    # clip_norm reads the whole gradient: it agrees only if DDP's averaged gradient is the full batch's.
    rule = O.chain(O.clip_norm(0.5), O.adam(), O.scale_lr(1e-2))
    return Learner(model, loaders, torch.nn.functional.cross_entropy, rule, metrics=("accuracy",)), counter


def main(out: str) -> None:
    from torchdeck import distributed

    torch.set_num_threads(1)
    info = distributed.init("cpu")
    run, counter = learner()
    distributed.prepare(run)
    train = run.loaders["train"]
    run.fit(EPOCHS)
    torch.save({"weights": {k: v.clone() for k, v in run.model.state_dict().items()},
                "seeds": list(counter.seeds), "loader": type(train).__name__,
                "batches": {k: len(v) for k, v in run.loaders.items()}, "metrics": dict(run.state.metrics)},
               os.path.join(out, f"augmented-rank{info.rank}.pt"))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
