"""Optimiser step: torchdeck's lowered chains against torch's own optimisers.

Claim: the common chains cost no more than torch's fastest optimiser doing the same update,
because ``O.Optimizer`` recognises them and runs torch's fused kernels itself:

1. ``adamw`` (``chain(adam(), weight_decay(1e-2), scale_lr(1e-3))``) vs
   ``torch.optim.AdamW(fused=True)`` — goal <= 1.10 (foreach and for-loop AdamW for reference);
2. ``chain(clip_norm(1.0), adamw)`` vs ``clip_grad_norm_`` + ``AdamW(fused=True)`` — goal <= 0.90;
3. ``chain(momentum(0.9), scale_lr(1e-2))`` vs ``SGD(momentum=0.9, foreach=True)`` — goal <= 1.05.

The parameters have ResNet-18's shapes (torchvision's ``resnet18()`` built locally, no weights:
62 tensors, 11.7M parameters), the gradients are random and fixed. Every side runs in this
process on its own copy of the same parameters; rounds are interleaved (a, b, c, b, c, a, ...,
each round starting one side later) so slow moments of a noisy machine hit all sides alike, and each side's figure is the median
over rounds of its mean step time. One thread on CPU (``--threads``); on CUDA (used when available, or
``--device cuda``) every round is synchronised. Prints a table and
``<name>: ratio <x> vs <peer>`` lines; asserts nothing about time.

    python benchmarks/optim_step.py [--device cpu|cuda] [--rounds 15] [--steps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Callable

import torch
import torchvision

from torchdeck import optim as O
from torchdeck.optim._lowering import describe_lowering, no_lowering

LR, DECAY, MAX_NORM, RHO, SGD_LR = 1e-3, 1e-2, 1.0, 0.9, 1e-2


@dataclasses.dataclass
class Side:
    """One optimiser under test: ``step()`` runs one optimiser step on its own parameters."""

    name: str
    params: list[torch.Tensor]
    step: Callable[[], None]
    times: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Case:
    name: str           # the `<name>: ratio` line
    ours: str           # the side that is measured ...
    peer: str           # ... against this one
    goal: float
    sides: dict[str, Callable[[list[torch.Tensor]], Callable[[], None]]]


def resnet18_shapes() -> list[torch.Size]:
    return [p.shape for p in torchvision.models.resnet18(weights=None).parameters()]


def torchdeck_side(rule: O.Rule, *, lowered: bool = True,
                   write_grads: bool = False) -> Callable[[list[torch.Tensor]], Callable[[], None]]:
    def make(params):
        opt = O.Optimizer(params, rule, write_grads=write_grads)
        if lowered:
            return opt.step

        def generic():
            with no_lowering():
                opt.step()
        return generic
    return make


def torch_side(factory, *, clip: bool = False) -> Callable[[list[torch.Tensor]], Callable[[], None]]:
    def make(params):
        opt = factory(params)
        if not clip:
            return opt.step

        def step():
            torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
            opt.step()
        return step
    return make


def cases() -> list[Case]:
    adamw = O.chain(O.adam(), O.weight_decay(DECAY), O.scale_lr(LR))
    clipped = O.chain(O.clip_norm(MAX_NORM), adamw)
    momentum = O.chain(O.momentum(RHO), O.scale_lr(SGD_LR))
    adamw_torch = {k: torch_side(lambda ps, k=k: torch.optim.AdamW(ps, lr=LR, weight_decay=DECAY, **{k: True}))
                   for k in ("fused", "foreach")}
    return [
        Case("optim_step_adamw", "torchdeck adamw chain", "torch AdamW(fused=True)", 1.10, {
            "torchdeck adamw chain": torchdeck_side(adamw),
            "torch AdamW(fused=True)": adamw_torch["fused"],
            "torch AdamW(foreach=True)": adamw_torch["foreach"],
            "torch AdamW(foreach=False)": torch_side(lambda ps: torch.optim.AdamW(ps, lr=LR, weight_decay=DECAY,
                                                                                   foreach=False)),
            "torchdeck adamw chain, no_lowering": torchdeck_side(adamw, lowered=False),
        }),
        # torch's composition leaves the clipped gradients in .grad; write_grads=True does the same
        # (the like-for-like line); the default, .grad untouched, is printed beside it.
        Case("optim_step_clip_adamw", "torchdeck chain(clip_norm, adamw), write_grads=True",
             "torch clip_grad_norm_ + AdamW(fused=True)",
             0.90, {
                 "torchdeck chain(clip_norm, adamw)": torchdeck_side(clipped),
                 "torch clip_grad_norm_ + AdamW(fused=True)": torch_side(
                     lambda ps: torch.optim.AdamW(ps, lr=LR, weight_decay=DECAY, fused=True), clip=True),
                 "torchdeck chain(clip_norm, adamw), write_grads=True": torchdeck_side(clipped, write_grads=True),
                 "torchdeck chain(clip_norm, adamw), no_lowering": torchdeck_side(clipped, lowered=False),
             }),
        Case("optim_step_momentum", "torchdeck chain(momentum, scale_lr)", "torch SGD(momentum, foreach=True)", 1.05, {
            "torchdeck chain(momentum, scale_lr)": torchdeck_side(momentum),
            "torch SGD(momentum, foreach=True)": torch_side(
                lambda ps: torch.optim.SGD(ps, lr=SGD_LR, momentum=RHO, foreach=True)),
            "torch SGD(momentum, fused=True)": torch_side(
                lambda ps: torch.optim.SGD(ps, lr=SGD_LR, momentum=RHO, fused=True)),
            "torchdeck chain(momentum, scale_lr), no_lowering": torchdeck_side(momentum, lowered=False),
        }),
    ]


def run_case(case: Case, shapes: list[torch.Size], device: torch.device, rounds: int, steps: int) -> dict[str, Side]:
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen) * 0.05 for s in shapes]
    grads = [torch.randn(s, generator=gen) for s in shapes]
    sides = {}
    for name, make in case.sides.items():
        params = [p.to(device, copy=True).requires_grad_(True) for p in init]
        for p, g in zip(params, grads):
            p.grad = g.to(device, copy=True)  # torch's clip_grad_norm_ rewrites its grads
        sides[name] = Side(name, params, make(params))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for side in sides.values():  # first steps allocate the state: not timed
        side.step()
        side.step()
    order = list(sides.values())
    for r in range(rounds):
        # Rotate who goes first: a side timed right after one that churns memory (the generic
        # path allocates) pays for it, and rotation spreads that over all sides.
        for side in order[r % len(order):] + order[:r % len(order)]:
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                side.step()
            sync()
            side.times.append((time.perf_counter() - t0) / steps)
    return sides


def max_difference(a: Side, b: Side) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.params, b.params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per side (the median is kept)")
    parser.add_argument("--steps", type=int, default=5, help="optimiser steps per round")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    shapes = resnet18_shapes()
    n = sum(s.numel() for s in shapes)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"optimiser step on {device} ({where}), torch {torch.__version__}: ResNet-18 shapes, {len(shapes)} tensors, "
          f"{n / 1e6:.1f}M float32 parameters, random grads; median of {args.rounds} interleaved rounds "
          f"of {args.steps} steps")
    t_start = time.perf_counter()
    lines = []
    for case in cases():
        sides = run_case(case, shapes, device, args.rounds, args.steps)
        peer = statistics.median(sides[case.peer].times)
        print(f"\n  {'side':50s} {'ms/step':>8s} {'ratio':>7s}")
        for name, side in sides.items():
            ms = statistics.median(side.times)
            mark = "  <- vs" if name == case.peer else ""
            print(f"  {name:50s} {ms * 1e3:8.2f} {ms / peer:7.2f}{mark}")
        ratio = statistics.median(sides[case.ours].times) / peer
        diff = max_difference(sides[case.ours], sides[case.peer])
        print(f"  (max |param difference| ours vs peer after {2 + args.rounds * args.steps} steps: {diff:.1e})")
        verdict = "met" if ratio <= case.goal else "NOT met"
        lines.append(f"{case.name}: ratio {ratio:.2f} vs {case.peer} (goal <= {case.goal:.2f}: {verdict})")
        del sides
    print()
    print("\n".join(lines))
    print(f"(benchmark took {time.perf_counter() - t_start:.0f} s; lowering: "
          f"{describe_lowering(O.chain(O.clip_norm(MAX_NORM), O.adamw(LR, decay=DECAY)))})")


if __name__ == "__main__":
    main()
