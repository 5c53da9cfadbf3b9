"""Learner throughput against a hand-written loop on a GPU (issue 8's CUDA claim).

ResNet-18 (torchvision, random init, 10 classes), channels_last, automatic mixed precision
(float16 autocast + GradScaler), synthetic images already on the device, the same optimiser
(torchdeck's adamw, lowered to torch's fused kernel) on both sides. The learner runs with its
default callbacks (Metrics, Recorder) plus MixedPrecision; the loop does the same work by hand
(autocast forward, scaled backward, unscale, step, update). Goal: learner throughput >= 0.97
of the loop's.

Rounds are interleaved (loop, learner, loop, learner, ...) and each side keeps its best; each
round is timed between CUDA synchronisations. Prints
``trainer_gpu: ratio <x> vs hand-written loop`` (throughput, higher is better); asserts
nothing about time.

Without CUDA it prints a note and exits 0; ``--device cpu`` runs a small configuration
(bfloat16 autocast, 64-pixel images) only to check that the script works.

    python benchmarks/trainer_gpu.py [--steps 50] [--batch 128] [--size 224] [--rounds 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torchvision
from torch import nn

from torchdeck import optim as O
from torchdeck.train import Learner, MixedPrecision, TrainingPhase

GOAL = 0.97  # learner throughput / loop throughput


def make_model(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    return model.to(device=device, memory_format=torch.channels_last)


def make_batches(n: int, batch: int, size: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator(device="cpu").manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, size, size, generator=g).to(device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)
        out.append((x, y))
    return out


def rule() -> O.Rule:
    return O.adamw(lr=1e-3, decay=1e-2)


def autocast_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def run_loop(model: nn.Module, batches: list[Any], device: torch.device) -> None:
    opt = O.Optimizer(model.parameters(), rule())
    dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for x, y in batches:
        with torch.autocast(device.type, dtype=dtype):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()


def run_learner(model: nn.Module, batches: list[Any], device: torch.device) -> None:
    dtype = "float16" if device.type == "cuda" else "bfloat16"
    learner = Learner(model, {"train": batches}, nn.CrossEntropyLoss(), rule(), phases=(TrainingPhase(),),
                      device=device, callbacks=[MixedPrecision(dtype)])
    learner.fit(1)


def timed(fn: Any, device: torch.device, *args: Any) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("trainer_gpu: skipped (no CUDA device here; run it on a GPU machine, or --device cpu to check it)")
        return
    if device.type == "cpu":  # only a check that the script runs: a small configuration
        args.steps, args.batch, args.size, args.rounds = min(args.steps, 3), min(args.batch, 8), min(args.size, 64), 2
    else:
        torch.backends.cudnn.benchmark = True
    batches = make_batches(args.steps, args.batch, args.size, device)
    # Warm-up on both sides (cuDNN autotuning, the fused kernels' first launch).
    warm = batches[: max(2, args.steps // 10)]
    run_loop(make_model(device), warm, device)
    run_learner(make_model(device), warm, device)

    best = {"loop": float("inf"), "learner": float("inf")}
    sides = {"loop": run_loop, "learner": run_learner}
    for _ in range(args.rounds):
        for name, fn in sides.items():
            model = make_model(device)
            best[name] = min(best[name], timed(fn, device, model, batches, device))
    images = args.steps * args.batch
    loop_ips, learner_ips = images / best["loop"], images / best["learner"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; ResNet-18, channels_last, {autocast_dtype(device)} autocast, batch {args.batch}, "
          f"{args.size}x{args.size}, {args.steps} steps, best of {args.rounds}")
    print(f"hand-written loop: {loop_ips:,.0f} img/s; learner: {learner_ips:,.0f} img/s")
    print(f"trainer_gpu: ratio {learner_ips / loop_ips:.3f} vs hand-written loop (throughput; goal >= {GOAL})")


if __name__ == "__main__":
    main()
