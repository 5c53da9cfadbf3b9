"""Trainer overhead: torchdeck's Learner against a bare PyTorch loop, and fastai's and
Lightning's trainers on the same work.

Claims (issue 8), on a model small enough that per-step Python overhead shows (a tiny MLP on
digits, one CPU thread):

1. ``Learner.fit`` with its default callbacks (Metrics, Recorder) plus a ProgressBar and a
   Scheduler costs at most 10% over the hand-written loop it replaces (goal <= 1.10);
2. the same plus a MetricStream feeding a headless ``TrainingMonitor`` (the Studio's charts,
   built without a display) costs at most 25% over it (goal <= 1.25);
3. for reference, fastai's ``Learner.fit`` and Lightning's ``Trainer.fit`` on the same work
   (the issue measured 2.13x and 2.27x).

A side whose package is missing (fastai and Lightning come with ``make bench``, the widgets
with the ui extra) is skipped with a note, so the script runs anywhere.

Every side does the same work: the same initial weights, the same batches in the same order
(fresh seeded loaders per run), the same optimiser (torchdeck's ``chain(adam(), scale_lr)``,
a real ``torch.optim.Optimizer``, for every side), the same cosine learning-rate schedule set
before each training step, and a validation pass with loss and accuracy averaged over samples
each epoch. Each side's final weights are compared with the bare loop's (printed). The
trainers keep what ours keeps (train loss per step and per epoch, validation loss and accuracy
per epoch: fastai's Recorder does by itself, the Lightning module logs them). Progress bars
and loggers of the peers are off (fastai: ``no_bar()`` and ``no_logging()``; Lightning: no
progress bar, logger, checkpointing, model summary or sanity-check batches); our ProgressBar
writes into a string buffer (its bars appear for phases longer than 0.1 s, so here it writes
the epoch lines).

Rounds are interleaved (a, b, c, a, b, c, ...) and each side keeps its best round. A round
is timed in CPU seconds of this process (the work is single-threaded, so on a quiet machine
that equals wall time; on a shared one, wall time also counts the moments other processes
held the core); wall-time ratios are printed beside. Prints ``<name>: ratio <x> vs <peer>``
lines; asserts nothing about time.

    python benchmarks/trainer_overhead.py [--epochs 30] [--repeats 9] [--no-peers]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import logging
import time
import warnings
from typing import Any, Callable

import torch
from torch import nn

import torchdeck as td
from torchdeck import optim as O, schedules as S
from torchdeck.data import TensorLoader
from torchdeck.schedules import Scheduler
from torchdeck.train import ProgressBar

GOAL = 1.10              # Learner / bare loop
GOAL_MONITOR = 1.25      # Learner + MetricStream + TrainingMonitor / bare loop
ISSUE_FIGURES = {"fastai": 2.13, "lightning": 2.27}  # measured when the issue was filed
LR, LR_MIN, BATCH = 1e-3, 1e-5, 64


def rule() -> O.Rule:
    return O.chain(O.adam(), O.scale_lr(LR))


@dataclasses.dataclass
class Work:
    """What every side trains on."""

    template: nn.Module
    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    epochs: int
    lrs: list[float]  # the lr of each training step: what our Scheduler sets, for every side

    def loaders(self) -> dict[str, TensorLoader]:
        # Fresh loaders per run: the shuffling generator restarts, so every run sees the same batches.
        return {"train": TensorLoader(self.x["train"], self.y["train"], BATCH, shuffle=True, seed=0),
                "valid": TensorLoader(self.x["valid"], self.y["valid"], BATCH, shuffle=False)}

    @property
    def steps(self) -> int:
        return len(self.lrs)


def make_work(epochs: int) -> Work:
    task = td.tasks.get("image-classification")(td.data.load("digits"))
    encoded = task.loaders(batch_size=BATCH, seed=0)
    torch.manual_seed(0)
    template = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    x = {k: v.x for k, v in encoded.items()}
    y = {k: v.y for k, v in encoded.items()}
    steps = epochs * len(TensorLoader(x["train"], y["train"], BATCH))
    opt = O.Optimizer(copy.deepcopy(template).parameters(), rule())
    lrs = S.plan(opt, {"lr": S.CosAnneal(LR, LR_MIN)}, steps)["lr"][0].tolist()
    return Work(template, x, y, epochs, lrs)


# -- the sides: each trains a copy of the template and returns (model, last valid accuracy) --
Result = tuple[nn.Module, float]


def bare_loop(model: nn.Module, loaders: dict[str, TensorLoader], work: Work) -> Result:
    """The loop people write by hand: set the step's lr, train, then a validation pass with
    loss and accuracy averaged over samples."""
    loss_fn = nn.CrossEntropyLoss()
    opt = O.Optimizer(model.parameters(), rule())
    step, acc = 0, float("nan")
    for _ in range(work.epochs):
        model.train()
        for xb, yb in loaders["train"]:
            for group in opt.param_groups:
                group["lr"] = work.lrs[step]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        model.eval()
        total_loss, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for xb, yb in loaders["valid"]:
                pred = model(xb)
                total_loss += loss_fn(pred, yb).item() * len(yb)
                correct += (pred.argmax(dim=1) == yb).sum().item()
                n += len(yb)
        acc = correct / n
    return model, acc


def learner_fit(model: nn.Module, loaders: dict[str, TensorLoader], work: Work, extra: tuple = ()) -> Result:
    callbacks = [Scheduler({"lr": S.CosAnneal(LR, LR_MIN)}), ProgressBar(file=io.StringIO()), *extra]
    learner = td.Learner(model, loaders, nn.CrossEntropyLoss(), rule(), metrics=["accuracy"], callbacks=callbacks)
    learner.fit(work.epochs)
    return learner.model, learner.history.epochs[-1]["valid_accuracy"]


def monitored_side() -> Callable[..., Result]:
    """The Learner streaming into a TrainingMonitor made once, as the Studio does (its charts
    exist before Train is pressed; each run adds the monitor's stream to its learner)."""
    from torchdeck.widgets import StudioState, TrainingMonitor

    monitor = TrainingMonitor(StudioState())

    def run(model: nn.Module, loaders: dict[str, TensorLoader], work: Work) -> Result:
        return learner_fit(model, loaders, work, extra=(monitor.stream,))
    run.monitor = monitor  # type: ignore[attr-defined]
    return run


def fastai_side() -> Callable[..., Result]:
    with warnings.catch_warnings():  # deprecation notices of its dependencies, printed on import
        warnings.simplefilter("ignore")
        from fastai.callback.schedule import ParamScheduler
        from fastai.data.core import DataLoaders
        from fastai.learner import Learner as FastaiLearner
        from fastai.metrics import accuracy
        from fastai.optimizer import OptimWrapper
        from fastai.torch_core import default_device

    default_device(False)  # CPU, as the other sides (fastai would take a GPU if there is one)

    def run(model: nn.Module, loaders: dict[str, TensorLoader], work: Work) -> Result:
        def opt_func(params: Any, lr: float) -> OptimWrapper:
            return OptimWrapper(opt=O.Optimizer(list(params), rule()))

        def lr_at(pct: float) -> float:  # fastai schedules by the fraction of training done
            return work.lrs[min(round(pct * work.steps), work.steps - 1)]

        dls = DataLoaders(loaders["train"], loaders["valid"])
        learn = FastaiLearner(dls, model, loss_func=nn.CrossEntropyLoss(), opt_func=opt_func, metrics=accuracy,
                              cbs=ParamScheduler({"lr": lr_at}))
        with learn.no_bar(), learn.no_logging():
            learn.fit(work.epochs, lr=LR)
        return learn.model, float(learn.recorder.values[-1][-1])
    return run


def lightning_side() -> Callable[..., Result]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lightning.pytorch as pl

    for name in ("lightning.pytorch", "lightning.fabric"):  # "GPU available: ...", tips
        logging.getLogger(name).setLevel(logging.ERROR)

    class Module(pl.LightningModule):
        def __init__(self, model: nn.Module, lrs: list[float]) -> None:
            super().__init__()
            self.model, self.lrs, self.loss_fn = model, lrs, nn.CrossEntropyLoss()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            xb, yb = batch
            loss = self.loss_fn(self.model(xb), yb)
            # What our Recorder and Metrics keep: the loss per step and per epoch.
            self.log("train_loss", loss, on_step=True, on_epoch=True, batch_size=len(yb))
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            xb, yb = batch
            pred = self.model(xb)
            self.log("valid_loss", self.loss_fn(pred, yb), batch_size=len(yb))
            self.log("valid_accuracy", (pred.argmax(dim=1) == yb).float().mean(), batch_size=len(yb))

        def configure_optimizers(self) -> dict[str, Any]:
            opt = O.Optimizer(self.parameters(), rule())
            table = self.lrs
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: table[min(t, len(table) - 1)] / LR)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def run(model: nn.Module, loaders: dict[str, TensorLoader], work: Work) -> Result:
        module = Module(model, work.lrs)
        trainer = pl.Trainer(max_epochs=work.epochs, accelerator="cpu", devices=1, enable_progress_bar=False,
                             logger=False, enable_checkpointing=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        with warnings.catch_warnings():  # fewer batches than log_every_n_steps, its own deprecations
            warnings.simplefilter("ignore")
            trainer.fit(module, loaders["train"], loaders["valid"])
        return module.model, float(trainer.callback_metrics["valid_accuracy"])
    return run


# Sides that need an optional extra: each is skipped with a note when that is not installed.
OPTIONAL: dict[str, tuple[str, Callable[[], Callable[..., Result]], str]] = {
    "monitor": ("Learner + MetricStream -> TrainingMonitor", monitored_side, "the ui extra (`make studio`)"),
    "fastai": ("fastai Learner.fit (no_bar, no_logging)", fastai_side, "`make bench`"),
    "lightning": ("Lightning Trainer.fit (no bar/logger/ckpt/summary)", lightning_side, "`make bench`"),
}
PEERS = ("fastai", "lightning")


# -- measuring --------------------------------------------------------------------------------
@dataclasses.dataclass
class Timing:
    cpu: float = float("inf")
    wall: float = float("inf")
    accuracy: float = float("nan")
    max_diff: float = float("nan")  # largest |weight difference| from the bare loop's final weights


def timed(run: Callable[..., Result], work: Work) -> tuple[float, float, Result]:
    model, loaders = copy.deepcopy(work.template), work.loaders()
    c0, w0 = time.process_time(), time.perf_counter()
    out = run(model, loaders, work)
    return time.process_time() - c0, time.perf_counter() - w0, out


def max_difference(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run (23 train + 6 valid batches each)")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds; each side keeps its best")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip fastai and Lightning")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    work = make_work(args.epochs)

    sides: dict[str, tuple[str, Callable[..., Result]]] = {
        "bare": ("bare loop", bare_loop),
        "learner": ("Learner (Metrics, Recorder, ProgressBar, Scheduler)", learner_fit),
    }
    notes = []
    for key, (label, make, extra) in OPTIONAL.items():
        if key in PEERS and not args.peers:
            continue
        try:
            sides[key] = (label, make())
        except ImportError as e:
            notes.append(f"{key}: skipped, not installed ({e}); {extra} installs it")

    for _, run in sides.values():  # warm-up: first-call paths, allocator
        timed(run, work)
    best = {key: Timing() for key in sides}
    for _ in range(args.repeats):
        reference = None
        for key, (_, run) in sides.items():
            cpu, wall, (model, acc) = timed(run, work)
            b = best[key]
            b.cpu, b.wall, b.accuracy = min(b.cpu, cpu), min(b.wall, wall), acc
            if key == "bare":
                reference = model
            b.max_diff = max_difference(model, reference)

    print(f"tiny MLP on digits, {work.epochs} epochs ({work.steps} train steps), 1 thread, "
          f"best of {args.repeats} interleaved rounds, CPU time:")
    for key, (label, _) in sides.items():
        b = best[key]
        print(f"  {label:52s} {b.cpu:6.3f} s  ({1e6 * b.cpu / work.steps:4.0f} us/step)  "
              f"valid accuracy {b.accuracy:.3f}  max |w - bare| {b.max_diff:.1e}")
    for note in notes:
        print(f"  ({note})")
    if "monitor" in sides:
        monitor = sides["monitor"][1].monitor  # type: ignore[attr-defined]
        print(f"  (the TrainingMonitor redrew its charts {monitor.redraws / (args.repeats + 1):.0f} times per run)")
    bare = best["bare"]

    def ratio(key: str) -> str:
        return f"ratio {best[key].cpu / bare.cpu:.2f} vs bare-loop (wall time: {best[key].wall / bare.wall:.2f})"

    print(f"trainer_overhead: {ratio('learner')} (goal <= {GOAL:.2f})")
    if "monitor" in best:
        print(f"trainer_overhead_monitor: {ratio('monitor')} (goal <= {GOAL_MONITOR:.2f})")
    for key in PEERS:
        if key in best:
            print(f"trainer_overhead_{key}: {ratio(key)} (reference; the issue measured {ISSUE_FIGURES[key]:.2f})")
            print(f"trainer_vs_{key}: ratio {best['learner'].cpu / best[key].cpu:.2f} vs {key}")
    print(f"(benchmark took {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
