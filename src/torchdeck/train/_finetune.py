"""``fine_tune``: train the head on a frozen backbone, then everything with discriminative
learning rates (fastai's ``Learner.fine_tune``, FastAI.jl's ``finetune!``).

Phase 1 (``freeze_epochs``): the backbone is frozen with :func:`torchdeck.optim.freeze`, so
its parameters are skipped and their optimiser state stays as it was; only the head learns,
under a one-cycle lr peaking at ``base_lr`` (fastai's ``pct_start=0.99``: a long warm-up).

Phase 2 (``epochs``): everything thawed. The peak lr of each param group is spread
geometrically from ``base_lr / lr_mult`` (the first backbone group) to ``base_lr`` (the head),
then divided by ``unfreeze_div`` (fastai halves ``base_lr`` here: 2). Each group follows a
one-cycle lr: a half-cosine up from ``peak / div`` over ``pct_start`` of the steps, then a
half-cosine down to ``peak / div / final_div`` (fastai's ``combined_cos``, whose
``fit_one_cycle`` this is; momentum is not cycled).

The param groups come from :func:`torchdeck.optim.partition` on the model's backbone/head
split: the backbone's parameterised sub-modules, in order, cut into ``backbone_groups``
contiguous runs, then ``head.*``. The learner's rule runs in every group; the optimiser is
rebuilt once with those groups (its state so far is dropped) unless it already has them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import torch

from torchdeck import optim as O
from torchdeck import schedules as S

__all__ = ["fine_tune", "FineTunePlan", "layer_groups", "one_cycle_lr"]


def _positive_int(field: str, value: object, *, zero: bool = False) -> int:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        allowed = "a non-negative integer" if zero else "a positive integer"
        raise ValueError(f"fine_tune: {field} must be {allowed}, got {value!r}")
    return value


def _positive_number(field: str, value: object, *, at_least: float | None = None) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    if ok and at_least is not None:
        ok = value >= at_least
    if not ok:
        allowed = f"a finite number >= {at_least}" if at_least is not None else "a finite number > 0"
        raise ValueError(f"fine_tune: {field} must be {allowed}, got {value!r}")
    return float(value)


def _fraction(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"fine_tune: {field} must be in (0, 1), got {value!r}")
    return float(value)


def _escape(name: str) -> str:
    # Module names are identifiers or indices; a glob character in one must match literally.
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _units(names: Sequence[str], prefix: str) -> list[str]:
    """The sub-module prefixes under ``prefix`` that hold parameters, in order; a level with one
    child (``stages``) is looked through, so a backbone always splits at its real stages."""
    children = list(dict.fromkeys(n[len(prefix):].split(".")[0] for n in names if n.startswith(prefix)))
    if len(children) == 1:
        child = f"{prefix}{children[0]}."
        deeper = [n for n in names if n.startswith(child)]
        if deeper:  # not a parameter sitting directly at this level
            return _units(deeper, child)
    return [f"{prefix}{c}" for c in children]


def layer_groups(model: torch.nn.Module, backbone_groups: int = 2) -> dict[str, list[str]]:
    """``{pattern: parameter names}``: the backbone cut into ``backbone_groups`` runs of its
    parameterised sub-modules (fewer if it has fewer), then the head; patterns are globs for
    :func:`torchdeck.optim.partition`."""
    for part in ("backbone", "head"):
        if not isinstance(getattr(model, part, None), torch.nn.Module):
            raise ValueError(f"fine_tune: the model must have .backbone and .head modules (a models.Model, as "
                             f"Learner.from_task builds), got {type(model).__name__} without .{part}")
    names = [n for n, _ in model.named_parameters()]
    backbone = [n for n in names if n.startswith("backbone.")]
    head = [n for n in names if n.startswith("head.")]
    if not backbone or not head:
        raise ValueError(f"fine_tune: the model's backbone has {len(backbone)} parameters and its head "
                         f"{len(head)}; both need some")
    units = _units(backbone, "backbone.")
    k = min(backbone_groups, len(units))
    cuts = [round(i * len(units) / k) for i in range(k + 1)]
    groups: dict[str, list[str]] = {}
    for a, b in zip(cuts, cuts[1:]):
        chunk = units[a:b]
        pattern = "|".join(f"{_escape(u)}.*" for u in chunk)
        groups[pattern] = [n for n in backbone if any(n.startswith(f"{u}.") for u in chunk)]
    groups["head.*"] = head
    return groups


def one_cycle_lr(peak: float, total: int, *, pct_start: float, div: float, final_div: float,
                 start: int = 0) -> S.Schedule:
    """fastai's one-cycle lr as a schedule of the global step: held at ``peak / div`` until
    ``start``, a half-cosine up to ``peak`` over ``round(pct_start * total)`` steps (at least
    one), a half-cosine down to ``peak / div / final_div`` over the rest."""
    low = peak / div
    up = min(max(1, round(pct_start * total)), total)
    down = max(1, total - up)
    parts: list[S.Schedule] = [S.CosAnneal(low, peak, period=up), S.CosAnneal(peak, low / final_div, period=down)]
    steps: list[int | None] = [up, None]
    if start > 0:
        parts.insert(0, S.Constant(low, steps=start))
        steps.insert(0, start)
    return S.Sequence(parts, steps=steps)


@dataclasses.dataclass(frozen=True)
class FineTunePlan:
    """What :func:`fine_tune` ran: the param groups (pattern -> parameter names, in optimiser
    order) and the peak lr of each group in each phase."""

    groups: dict[str, list[str]]
    frozen_peak: float
    unfrozen_peaks: tuple[float, ...]


def _partitioned_optimizer(learner: Any, patterns: Sequence[str]) -> O.Optimizer:
    opt = learner.optimizer
    if not isinstance(opt, O.Optimizer):
        raise ValueError(f"fine_tune: the learner's optimiser must be a torchdeck optim.Optimizer (a rule given to "
                         f"the Learner), got {type(opt).__name__}")
    rule = opt.rule
    if isinstance(rule, O.Partition):
        if list(rule.parts) == list(patterns):
            return opt  # a previous fine_tune's groups: keep them and their state
        raise ValueError(f"fine_tune: the learner's rule is already a partition ({', '.join(map(repr, rule.parts))}); "
                         "fine_tune makes its own groups from the backbone/head split: give the learner a plain "
                         "rule or chain")
    if "lr" not in rule.hyper():
        raise ValueError(f"fine_tune: the learner's rule has no lr to schedule ({rule}); end the chain with "
                         "optim.scale_lr(...)")
    new = O.Optimizer(learner.model.named_parameters(), O.partition({p: rule for p in patterns}))
    learner.state.optimizer = new
    return new


def _fit_with_lr(learner: Any, epochs: int, lr: Any) -> None:
    """``learner.fit(epochs)`` with ``lr`` the only lr schedule (others set aside, then put back)."""
    one = S.Scheduler({"lr": lr})
    set_aside = [cb for cb in learner.callbacks if isinstance(cb, S.Scheduler)]
    learner.set_callbacks([cb for cb in learner.callbacks if not isinstance(cb, S.Scheduler)] + [one])
    try:
        learner.fit(epochs)
    finally:
        learner.set_callbacks([cb for cb in learner.callbacks if cb is not one] + set_aside)


def fine_tune(learner: Any, epochs: int, *, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100.0,
              backbone_groups: int = 2, pct_start: float = 0.3, div: float = 5.0, freeze_pct_start: float = 0.99,
              freeze_div: float = 25.0, final_div: float = 1e5, unfreeze_div: float = 2.0) -> FineTunePlan:
    """Fine-tune a pretrained backbone (see the module docstring for the two phases).

    Args:
        learner: a :class:`~torchdeck.train.Learner` whose model has ``.backbone`` and ``.head``
            (``Learner.from_task`` builds such) and whose optimiser runs a torchdeck rule with an lr.
        epochs: epochs of phase 2 (all parameters).
        base_lr: the head's peak lr; the first backbone group peaks at ``base_lr / lr_mult``.
        freeze_epochs: epochs of phase 1 (head only); 0 skips it.
        lr_mult: ratio of the head's lr to the first backbone group's (>= 1).
        backbone_groups: param groups the backbone is cut into (1 or more).
        pct_start, div: phase 2's warm-up share and ``peak / start lr``.
        freeze_pct_start, freeze_div: the same for phase 1.
        final_div: ``start lr / final lr`` of every cycle.
        unfreeze_div: phase 2's peaks are divided by it (fastai: 2; 1 keeps ``base_lr``).

    Returns:
        the :class:`FineTunePlan` that ran.
    """
    epochs = _positive_int("epochs", epochs)
    freeze_epochs = _positive_int("freeze_epochs", freeze_epochs, zero=True)
    backbone_groups = _positive_int("backbone_groups", backbone_groups)
    base_lr = _positive_number("base_lr", base_lr)
    lr_mult = _positive_number("lr_mult", lr_mult, at_least=1.0)
    div, freeze_div = _positive_number("div", div), _positive_number("freeze_div", freeze_div)
    final_div, unfreeze_div = _positive_number("final_div", final_div), _positive_number("unfreeze_div", unfreeze_div)
    pct_start, freeze_pct_start = _fraction("pct_start", pct_start), _fraction("freeze_pct_start", freeze_pct_start)
    per_epoch = sum(len(learner.loaders[p.name]) for p in learner.phases if p.training)
    if per_epoch < 1:
        raise ValueError("fine_tune: the training loader has no batches (or no len()), so the cycles' lengths are "
                         "unknown")

    groups = layer_groups(learner.model, backbone_groups)
    opt = _partitioned_optimizer(learner, list(groups))
    n = len(groups)
    # fastai's slice(lo, hi): geometric steps from the first group to the head.
    peaks = tuple(base_lr / unfreeze_div * lr_mult ** (i / (n - 1) - 1.0) for i in range(n))

    if freeze_epochs:
        backbone = learner.model.backbone
        grads = [(p, p.requires_grad) for p in backbone.parameters()]
        O.freeze(opt, backbone)
        for p, _ in grads:  # no gradient through the backbone: the frozen phase costs less
            p.requires_grad_(False)
        try:
            head_lr = one_cycle_lr(base_lr, freeze_epochs * per_epoch, pct_start=freeze_pct_start, div=freeze_div,
                                   final_div=final_div, start=learner.state.step)
            _fit_with_lr(learner, freeze_epochs, head_lr)
        finally:
            for p, flag in grads:
                p.requires_grad_(flag)
            O.thaw(opt, backbone)

    start = learner.state.step
    lrs = [one_cycle_lr(peak, epochs * per_epoch, pct_start=pct_start, div=div, final_div=final_div, start=start)
           for peak in peaks]
    _fit_with_lr(learner, epochs, lrs)
    return FineTunePlan(groups, base_lr, peaks)
