"""``pipe.explain(seed)``: what each step drew, which stage ran it, and what each stage cost."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from torchdeck.augment._plan import ItemOp, Plan, Values, Warp

__all__ = ["Explanation", "Row", "StageTime", "explain"]


@dataclasses.dataclass(frozen=True)
class Row:
    step: int                 # 1-based, in the order the steps were sampled
    depth: int                # nesting under OneOf / SomeOf
    name: str                 # the transform's spec name
    params: dict[str, Any]    # what it drew, as plain numbers
    applied: bool             # False: a Maybe (or its own p) skipped it
    stage: int | None         # 1-based stage that executed it; None: nothing to do
    sample_us: float          # time to draw its parameters


@dataclasses.dataclass(frozen=True)
class StageTime:
    stage: int
    kind: str                 # "warp", "values" or the transform's name
    steps: tuple[int, ...]    # 1-based steps it executes
    ms: float


@dataclasses.dataclass(frozen=True)
class Explanation:
    rows: tuple[Row, ...]
    stages: tuple[StageTime, ...]
    sample_ms: float
    total_ms: float
    plan: Plan
    output: dict[str, Any]

    def __str__(self) -> str:
        by_stage = {s.stage: s for s in self.stages}
        lines = [f"{'step':>4}  {'transform':<24}{'stage':<11}{'time':>10}  params"]
        seen: set[int] = set()
        for r in self.rows:
            name = "  " * r.depth + r.name + ("" if r.applied else " (skipped)")
            stage, cost = "-", ""
            if r.stage is not None:
                st = by_stage[r.stage]
                stage = f"{r.stage} {st.kind}"
                if r.stage not in seen:
                    seen.add(r.stage)
                    cost = f"{st.ms:.3f} ms"
                else:
                    cost = '"'
            params = " ".join(f"{k}={v}" for k, v in r.params.items())
            lines.append(f"{r.step:>4}  {name:<24}{stage:<11}{cost:>10}  {params}")
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: steps, stages (and how many fuse several steps), times, output size."""
        fused = sum(1 for s in self.stages if len(s.steps) > 1)
        return (f"{_count(len(self.rows), 'step')} in {_count(len(self.stages), 'stage')} ({fused} fused); "
                f"sampling {self.sample_ms:.3f} ms, total {self.total_ms:.3f} ms; output "
                f"{'×'.join(map(str, self.plan.size))}")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython shows the table
        p.text(str(self))


_KIND = {Warp: "warp", Values: "values"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def explain(pipe: Any, *, seed: Any, fuse: bool, size: Any, repeat: int, items: dict[str, Any]) -> Explanation:
    from torchdeck.augment._execute import execute
    from torchdeck.augment._io import read_sample
    from torchdeck.augment._photo import synthetic_photo

    if not items:
        items = {"image": synthetic_photo(256)}
    sample = read_sample(dict(items), size)
    sampling = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        plan = pipe.plan(sample.size, seed=seed, fuse=fuse)  # the same seed: the same plan
        sampling = min(sampling, time.perf_counter() - t0)
    best: list[float] | None = None
    total = float("inf")
    for _ in range(repeat):
        times: list[float] = []
        t2 = time.perf_counter()
        out = sample.restore(execute(plan, sample.items, pipe.options, times), plan.size)
        total = min(total, time.perf_counter() - t2)
        best = times if best is None else [min(a, b) for a, b in zip(best, times)]
    rows = tuple(Row(i + 1, s.depth, s.transform.name, s.transform.describe(s.params) if s.applied else {},
                     s.applied, None if s.stage is None else s.stage + 1, s.sample_us)
                 for i, s in enumerate(plan.steps))
    stages = tuple(StageTime(i + 1, _KIND.get(type(st), st.op if isinstance(st, ItemOp) else "?"),
                             tuple(j + 1 for j in (st.steps if isinstance(st, Warp) else st.step_ids)), t * 1e3)
                   for i, (st, t) in enumerate(zip(plan.stages, best or [])))
    return Explanation(rows, stages, sampling * 1e3, (sampling + total) * 1e3, plan, out)
