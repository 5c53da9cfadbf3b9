"""Trainer overhead: torchdeck's Learner against a bare PyTorch loop, and the torchdeck
optimiser chain against torch.optim.Adam.

Claim: ``Learner.fit`` with its default callbacks (Metrics, Recorder) and a Scheduler costs at
most 10% over the hand-written loop it replaces, on a model small enough that per-step
Python overhead shows (a tiny MLP on digits, one CPU thread).

Both sides run in this one process, on the same initial weights, the same batches in the
same order and the same optimiser rule; repeats are interleaved (a, b, c, a, b, c, ...) and
the best of each is kept, so slow moments of a noisy machine hit all sides alike.
Prints ``<name>: ratio <x> vs <peer>`` lines; asserts nothing about time.
"""

from __future__ import annotations

import copy
import io
import time

import torch
from torch import nn

import torchdeck as td
from torchdeck import optim as O, schedules as S
from torchdeck.data import TensorLoader
from torchdeck.schedules import Scheduler
from torchdeck.train import ProgressBar

GOAL = 1.10          # Learner / bare loop
EPOCHS = 60          # per measurement (23 train + 6 valid batches each)
REPEATS = 5          # best of
OPT_STEPS = 200
OPT_REPEATS = 5
LR = 1e-3


def rule() -> O.Rule:
    return O.chain(O.adam(), O.scale_lr(LR))


def make_loaders(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> dict[str, TensorLoader]:
    # Fresh loaders per run: the shuffling generator restarts, so every run sees the same batches.
    return {"train": TensorLoader(x["train"], y["train"], 64, shuffle=True, seed=0),
            "valid": TensorLoader(x["valid"], y["valid"], 64, shuffle=False)}


def bare_loop(model: nn.Module, loaders: dict[str, TensorLoader], epochs: int) -> float:
    """The loop people write by hand, doing what Learner.fit does by default: train, then a
    validation pass with loss and accuracy averaged over samples. Returns the last valid accuracy."""
    loss_fn = nn.CrossEntropyLoss()
    opt = O.Optimizer(model.parameters(), rule())
    acc = float("nan")
    for _ in range(epochs):
        model.train()
        for xb, yb in loaders["train"]:
            pred = model(xb)
            loss = loss_fn(pred, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        total_loss, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for xb, yb in loaders["valid"]:
                pred = model(xb)
                total_loss += loss_fn(pred, yb).item() * len(yb)
                correct += (pred.argmax(dim=1) == yb).sum().item()
                n += len(yb)
        acc = correct / n
    return acc


def learner_fit(model: nn.Module, loaders: dict[str, TensorLoader], epochs: int, *, progress: bool) -> float:
    callbacks: list = [Scheduler({"lr": S.CosAnneal(LR, 1e-5)})]
    if progress:
        callbacks.append(ProgressBar(file=io.StringIO()))
    learner = td.Learner(model, loaders, nn.CrossEntropyLoss(), rule(), metrics=["accuracy"], callbacks=callbacks)
    learner.fit(epochs)
    return learner.history.epochs[-1]["valid_accuracy"]


def timed(fn, *args, **kwargs) -> tuple[float, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def bench_trainer() -> None:
    task = td.tasks.get("image-classification")(td.data.load("digits"))
    encoded = task.loaders(batch_size=64, seed=0)
    x = {k: v.x for k, v in encoded.items()}
    y = {k: v.y for k, v in encoded.items()}
    torch.manual_seed(0)
    template = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    sides = {
        "bare loop": lambda m, ld: bare_loop(m, ld, EPOCHS),
        "Learner (Metrics, Recorder, Scheduler)": lambda m, ld: learner_fit(m, ld, EPOCHS, progress=False),
        "Learner + ProgressBar": lambda m, ld: learner_fit(m, ld, EPOCHS, progress=True),
    }
    # One short warm-up each (allocator, first-call paths), then interleaved repeats.
    for fn in sides.values():
        fn(copy.deepcopy(template), make_loaders(x, y))
    best = {name: float("inf") for name in sides}
    acc = {}
    for _ in range(REPEATS):
        for name, fn in sides.items():
            seconds, acc[name] = timed(fn, copy.deepcopy(template), make_loaders(x, y))
            best[name] = min(best[name], seconds)

    steps = EPOCHS * len(make_loaders(x, y)["train"])
    print(f"tiny MLP on digits, {EPOCHS} epochs ({steps} train steps), 1 thread, best of {REPEATS}:")
    for name in sides:
        print(f"  {name:40s} {best[name]:.3f} s  ({1e6 * best[name] / steps:.0f} us/step)  "
              f"valid accuracy {acc[name]:.3f}")
    bare = best["bare loop"]
    print(f"trainer_overhead: ratio {best['Learner (Metrics, Recorder, Scheduler)'] / bare:.2f} vs bare-loop "
          f"(goal <= {GOAL:.2f})")
    print(f"trainer_overhead_progressbar: ratio {best['Learner + ProgressBar'] / bare:.2f} vs bare-loop")


def bench_optim_step() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(512, 512) for _ in range(4)])  # 4 x 262,656 = 1.05M params
    n_params = sum(p.numel() for p in model.parameters())
    grads = [torch.randn_like(p) for p in model.parameters()]

    def run(make_opt) -> tuple[float, list[torch.Tensor]]:
        params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt = make_opt(params)
        opt.step()  # first step allocates the state; not timed
        t0 = time.perf_counter()
        for _ in range(OPT_STEPS):
            opt.step()
        return time.perf_counter() - t0, params

    peers = {
        "torchdeck chain(adam, scale_lr)": lambda ps: O.Optimizer(ps, rule()),
        "torch.optim.Adam(foreach=True)": lambda ps: torch.optim.Adam(ps, lr=LR, foreach=True),
    }
    best = {name: float("inf") for name in peers}
    final = {}
    for _ in range(OPT_REPEATS):
        for name, make in peers.items():
            seconds, final[name] = run(make)
            best[name] = min(best[name], seconds)
    diff = max((a - b).abs().max().item() for a, b in zip(*final.values()))
    print(f"optimiser step, {n_params / 1e6:.2f}M params in {len(grads)} tensors, {OPT_STEPS} steps, "
          f"best of {OPT_REPEATS} (max |param difference| {diff:.1e}):")
    for name in peers:
        print(f"  {name:40s} {best[name]:.3f} s  ({1e6 * best[name] / OPT_STEPS:.0f} us/step)")
    ours, theirs = best.values()
    print(f"optim_step: ratio {ours / theirs:.2f} vs torch.optim.Adam")


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    bench_trainer()
    bench_optim_step()
    print(f"(benchmark took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
