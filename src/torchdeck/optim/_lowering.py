"""Lowering: run known rules and chains through torch's fused kernels.

``lowering_for(rule)`` returns a function ``step(params, grads, state) -> None`` that applies
the rule's whole update to ``params`` in place (keeping ``state`` in the rule's own format, so
switching between the lowered and the generic path, or resuming, changes nothing), or ``None``
when the rule has no lowering and the generic ``update_`` path runs.

A chain is recognised by the exact types of its rules, in order: ``LOWERINGS`` maps a pattern
such as ``(ClipNorm, Adam, WeightDecay, ScaleLR)`` to a builder that reads the hyperparameters
and returns a plan (one of torch's kernels with its arguments), or ``None`` for values the
kernel cannot express. At step time the plan checks the tensors (dtype, device, layout) before
it changes anything and hands a step it cannot take to the rule's own ``update_``: lowering
changes how fast a step runs, never what it computes.

By default a lowered step leaves ``.grad`` as it found it, like the generic path. torch's
kernels apply a clip factor only by dividing the gradients by ``grad_scale`` *in place*, so the
clipped gradients go to scratch tensors instead; ``lowering_for(rule, write_grads=True)`` lets
the kernel leave the clipped gradient in ``.grad`` (as ``clip_grad_norm_`` does), which saves a
pass over the gradients.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch
import torch.utils.weak

from torchdeck.optim._base import Rule
from torchdeck.optim._chain import Chain
from torchdeck.optim._rules import SGD, Adam, ClipNorm, Momentum, ScaleLR, WeightDecay, clip_coefficient

__all__ = ["lowering_for", "describe_lowering", "no_lowering", "lowering_enabled", "register_lowering",
           "LOWERINGS", "Plan", "SERIAL_NUMEL"]

Tensors = Sequence[torch.Tensor]
Step = Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]

# The dtypes torch's fused optimiser kernels take (on CPU and CUDA alike).
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Below this many elements a CPU tensor takes the rules' own update when torch runs several
# threads (see _serial_numel): ATen's grain size, under which its elementwise ops use one thread.
SERIAL_NUMEL = 32768

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("torchdeck_optim_lowering", default=True)


@contextlib.contextmanager
def no_lowering() -> Iterator[None]:
    """Run optimiser steps taken inside the block through the rules' own ``update_``.

    For debugging and for comparing numbers: ``with no_lowering(): opt.step()``. The switch
    belongs to the current thread (a ``contextvars`` variable), so it never leaks into a
    trainer running on another thread.
    """
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def lowering_enabled() -> bool:
    """False inside :func:`no_lowering`."""
    return _ENABLED.get()


# -- the registry --------------------------------------------------------------------------
class Plan:
    """A lowered update: ``plan(params, grads, states, write_grads=...)`` with ``states`` the
    tuple of the rules' states (one per rule of the pattern). Returns False, having changed
    nothing, when the tensors don't suit the kernel."""

    def __call__(self, params: list[torch.Tensor], grads: list[torch.Tensor], states: tuple, *,
                 write_grads: bool = False) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


Builder = Callable[[tuple[Rule, ...]], "Plan | None"]

# pattern of rule types -> builder. Exact types: a subclass may change the maths.
LOWERINGS: dict[tuple[type[Rule], ...], Builder] = {}


def _pattern_name(pattern: tuple[type[Rule], ...]) -> str:
    return "(" + ", ".join(t.name or t.__qualname__ for t in pattern) + ")"


def register_lowering(*pattern: type[Rule]) -> Callable[[Builder], Builder]:
    """Decorator: ``@register_lowering(Adam, ScaleLR)`` on ``builder(rules) -> Plan | None``."""
    if not pattern or not all(isinstance(t, type) and issubclass(t, Rule) for t in pattern):
        raise TypeError(f"register_lowering: expected rule classes, got {pattern!r}")

    def deco(builder: Builder) -> Builder:
        if pattern in LOWERINGS:
            raise ValueError(f"a lowering for {_pattern_name(pattern)} is already registered")
        LOWERINGS[pattern] = builder
        return builder
    return deco


def _plan_for(rule: Rule) -> Plan | None:
    if not _ENABLED.get() or rule.may_skip or _compiling():
        return None
    rules = rule.rules if isinstance(rule, Chain) else (rule,)
    build = LOWERINGS.get(tuple(type(r) for r in rules))
    return None if build is None else build(rules)


def _compiling() -> bool:
    # Under torch.compile the generic foreach path is what dynamo traces well.
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


def lowering_for(rule: Rule, *, write_grads: bool = False) -> Step | None:
    """The lowered step for ``rule``, or ``None`` when the generic path should run.

    ``write_grads``: the step may leave the clipped gradients in ``.grad`` (faster; torch's
    ``clip_grad_norm_`` does the same). By default ``.grad`` is left untouched.
    """
    plan = _plan_for(rule)
    if plan is None:
        return None
    in_chain = isinstance(rule, Chain)

    def step(params: list[torch.Tensor], grads: list[torch.Tensor], state: Any) -> None:
        if not plan(params, grads, state if in_chain else (state,), write_grads=write_grads):
            _generic_step(rule, params, grads, state)
    return step


def describe_lowering(rule: Rule) -> str | None:
    """What an optimiser step with ``rule`` runs (``None``: the rules' own ``update_``)."""
    plan = _plan_for(rule)
    return None if plan is None else plan.describe()


def _generic_step(rule: Rule, params: list[torch.Tensor], grads: list[torch.Tensor], state: Any) -> None:
    """The rule's own update for tensors the kernel refused. Rules update their state in
    place, which is also what the optimiser relies on for a selection of its state."""
    updates, _ = rule.update_([g.clone() for g in grads], state, params)
    if updates is not None:
        torch._foreach_sub_(params, updates)


# -- checking the tensors ------------------------------------------------------------------
def _same_dense_layout(p: torch.Tensor, others: Sequence[torch.Tensor]) -> bool:
    """True when the kernels, which walk memory linearly, see matching elements in ``p`` and
    every tensor of ``others`` (they silently mix elements up when strides differ)."""
    if p.is_contiguous():
        return all(t.is_contiguous() for t in others)
    dense = (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)) or \
        (p.dim() == 5 and p.is_contiguous(memory_format=torch.channels_last_3d))
    return dense and all(t.stride() == p.stride() for t in others)


def _groups(kind: str, params: Tensors, grads: Tensors, *per_param: Tensors) -> dict[tuple, list[int]] | None:
    """Indices by (device, dtype), or None if some tensor doesn't suit the kernel ``kind``."""
    groups: dict[tuple, list[int]] = {}
    for j, (p, g) in enumerate(zip(params, grads)):
        if g.dtype != p.dtype or g.layout != torch.strided or g.device != p.device or g.shape != p.shape:
            return None
        if not _same_dense_layout(p, [g, *(s[j] for s in per_param)]):
            return None
        groups.setdefault((p.device, p.dtype), []).append(j)
    for device, dtype in groups:
        if not _kernel_works(kind, device.type, dtype):
            return None
    return groups


def _steps_on(counts: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Step counts as the fused Adam kernel reads them. Ours are int64 0-d CPU tensors, which
    the CPU kernel reads as they are; elsewhere it wants float32 tensors on its device."""
    if device.type == "cpu":
        return list(counts)
    return list(torch.stack(list(counts)).to(device=device, dtype=torch.float32).unbind())


@functools.cache
def _kernel_works(kind: str, device_type: str, dtype: torch.dtype) -> bool:
    """Whether torch has kernel ``kind`` for this device and dtype, with ``grad_scale``, and it
    computes what we expect (tried once on one element: older torch lacks some CPU kernels)."""
    if dtype not in _FLOATS:
        return False
    try:
        return _PROBES[kind](torch.device(device_type), dtype)
    except (RuntimeError, NotImplementedError, AttributeError, TypeError):
        return False


def _probe_adam(decoupled: bool) -> Callable[[torch.device, torch.dtype], bool]:
    def probe(device: torch.device, dtype: torch.dtype) -> bool:
        def t(v: float) -> torch.Tensor:
            return torch.full((1,), v, dtype=dtype, device=device)
        p, g, m, v = t(1.0), t(1.0), t(0.0), t(0.0)
        steps = _steps_on([torch.full((), 3, dtype=torch.int64)], device)
        kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
        kernel([p], [g], [m], [v], [], steps, lr=0.25, beta1=0.5, beta2=0.75, weight_decay=0.0, eps=1e-3,
               amsgrad=False, maximize=False, grad_scale=torch.full((), 2.0, dtype=torch.float32, device=device))
        # g / grad_scale = 0.5 at t = 3 from zero moments: m = 0.25, v = 0.0625, bias
        # corrections 7/8 and 37/64; the kernel leaves the unscaled gradient in g.
        expected = 1.0 - 0.25 / (7 / 8) * 0.25 / (math.sqrt(0.0625 / (37 / 64)) + 1e-3)
        return abs(float(p) - expected) < 1e-2 and float(g) == 0.5
    return probe


def _probe_sgd(device: torch.device, dtype: torch.dtype) -> bool:
    def t(v: float) -> torch.Tensor:
        return torch.full((1,), v, dtype=dtype, device=device)
    p, g, buf = t(1.0), t(0.5), t(1.0)
    torch._fused_sgd_([p], [g], [buf], weight_decay=0.0, momentum=0.5, lr=0.5, dampening=0.0,
                      nesterov=False, maximize=False, is_first_step=False)
    q = t(1.0)  # plain descent: no buffers at all, gradient halved by grad_scale
    scale = torch.full((), 2.0, dtype=torch.float32, device=device)
    torch._fused_sgd_([q], [g], [], weight_decay=0.0, momentum=0.0, lr=0.5, dampening=0.0, nesterov=False,
                      maximize=False, is_first_step=False, grad_scale=scale)
    return float(buf) == 1.0 and float(p) == 0.5 and float(q) == 0.875


_PROBES: dict[str, Callable[[torch.device, torch.dtype], bool]] = {
    "adam": _probe_adam(decoupled=False),
    "adamw": _probe_adam(decoupled=True),
    "sgd": _probe_sgd,
}


# -- clipping ------------------------------------------------------------------------------
def _clip_coef(max_norm: float | None, grads: list[torch.Tensor]) -> torch.Tensor | None:
    """ClipNorm's factor over all gradients, or None when there is nothing to scale. On CPU
    reading it is free, and at exactly 1 (norm under the limit) the gradients go as they are."""
    if max_norm is None:
        return None
    coef = clip_coefficient(grads, max_norm)
    if coef.device.type == "cpu" and coef.item() == 1.0:
        return None
    return coef


# param -> a tensor shaped like its gradient, for the clipped gradients on CPU. A fresh
# params-sized tensor each step costs page faults that outweigh the whole update there (CUDA's
# caching allocator makes it free, so CUDA allocates). Entries go with their parameter.
_SCRATCH: torch.utils.weak.WeakIdKeyDictionary = torch.utils.weak.WeakIdKeyDictionary()


def _scratch_for(params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for p, g in zip(params, grads):
        buf = _SCRATCH.get(p)
        if buf is None or buf.shape != g.shape or buf.stride() != g.stride() or buf.dtype != g.dtype \
                or buf.device != g.device:
            buf = torch.empty_like(g)  # same strides as g, hence as p (checked by _same_dense_layout)
            _SCRATCH[p] = buf
        out.append(buf)
    return out


def _clipped(coef: torch.Tensor | None, params: list[torch.Tensor], grads: list[torch.Tensor],
             write_grads: bool) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The gradients for the kernel and its ``grad_scale``, with the clip factor applied."""
    if coef is None:
        return grads, None
    if write_grads:
        if grads[0].dtype == torch.float64:  # grad_scale is float32: too coarse for float64 parity
            torch._foreach_mul_(grads, coef)
            return grads, None
        return grads, torch.reciprocal(coef.to(torch.float32))  # the kernel divides by it
    if grads[0].device.type == "cpu":
        scaled = _scratch_for(params, grads)
        for g, out in zip(grads, scaled):
            torch.mul(g, coef, out=out)
        return scaled, None
    return torch._foreach_mul(grads, coef), None


# -- small tensors: the rules' own update ----------------------------------------------------
def _serial_numel(device: torch.device) -> int:
    """Tensors with fewer elements than this take the rules' own (foreach) update on this device.

    torch's fused CPU kernels open a parallel region for every tensor however small, where its
    other CPU ops stay on one thread below ``SERIAL_NUMEL`` elements (ATen's grain size). When
    the other cores are busy, a thread of such a region waits for a time slice: one call on
    four tensors of 3-20 elements took 3-47 ms here, against 15 us on one thread.
    """
    return SERIAL_NUMEL if device.type == "cpu" and torch.get_num_threads() > 1 else 0


def _subset(state: Any, idx: list[int], n: int) -> Any:
    """The part of a rule state for the parameters ``idx`` of ``n``: per-parameter tuples of
    tensors are cut down, sharing their tensors (the rules update state in place)."""
    if isinstance(state, tuple) and not hasattr(state, "_fields") and len(state) == n \
            and all(isinstance(t, torch.Tensor) for t in state):
        return tuple(state[j] for j in idx)
    if isinstance(state, tuple):
        items = [_subset(s, idx, n) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return state


def _rules_step(rules: tuple[Rule, ...], states: tuple, params: list[torch.Tensor], grads: list[torch.Tensor],
                idx: list[int], coef: torch.Tensor | None) -> None:
    """The chain's own update for the parameters ``idx``, with the clip factor of all of them."""
    ps = [params[j] for j in idx]
    updates = [grads[j].clone() for j in idx]
    first = 0
    if type(rules[0]) is ClipNorm:  # its factor comes from every gradient, not just these
        if coef is not None:
            torch._foreach_mul_(updates, coef)
        first = 1
    for rule, state in zip(rules[first:], states[first:]):
        updates, _ = rule.update_(updates, _subset(state, idx, len(params)), ps)
    torch._foreach_sub_(ps, updates)


# -- the plans -----------------------------------------------------------------------------
class _FusedPlan(Plan):
    """The flow the plans share: check the tensors, compute the clip factor over all
    gradients, give small CPU tensors to the rules, launch the kernel per device and dtype."""

    kind: ClassVar[str]
    rules: tuple[Rule, ...]
    max_norm: float | None

    def _elementwise(self, states: tuple) -> list[Tensors]:
        """The per-parameter state tensors the kernel walks alongside the parameters."""
        raise NotImplementedError

    def _launch(self, params: list[torch.Tensor], grads: list[torch.Tensor], states: tuple, idx: list[int],
                device: torch.device, coef: torch.Tensor | None, write_grads: bool) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        clip = f"torch._foreach_norm (clip at {self.max_norm:g}) + " if self.max_norm is not None else ""
        return f"{clip}torch._fused_{self.kind}_"

    def __call__(self, params, grads, states, *, write_grads=False) -> bool:
        if not params:
            return True
        groups = _groups(self.kind, params, grads, *self._elementwise(states))
        if groups is None:
            return False
        coef = _clip_coef(self.max_norm, grads)
        serial: list[int] = []
        for (device, _), idx in groups.items():
            limit = _serial_numel(device)
            if limit:
                serial += [j for j in idx if params[j].numel() < limit]
                idx = [j for j in idx if params[j].numel() >= limit]
            if idx:
                self._launch(params, grads, states, idx, device, coef, write_grads)
        if serial:
            _rules_step(self.rules, states, params, grads, sorted(serial), coef)
        return True


def _picker(idx: list[int], n: int) -> Callable[[Tensors], list[torch.Tensor]]:
    if len(idx) == n:  # one device and dtype, no small tensors: the usual case
        return list
    return lambda seq: [seq[j] for j in idx]


@dataclasses.dataclass(frozen=True)
class FusedAdam(_FusedPlan):
    """Adam with optional clip, L2 (coupled) or decoupled weight decay, and learning rate.

    ``p -= lr * (adam(g') + decay * p)`` with ``g' = clip * g + l2 * p``: torch's AdamW kernel
    when ``decay`` is set (its ``lr * weight_decay`` is our ``lr * decay``), else its Adam
    kernel with ``weight_decay = l2``.
    """

    rules: tuple[Rule, ...]
    state_index: int
    lr: float          # adam's lr times scale_lr's
    b1: float
    b2: float
    eps: float
    weight_decay: float
    decoupled: bool
    max_norm: float | None

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "adamw" if self.decoupled else "adam"

    def _elementwise(self, states):
        _, mu, nu = states[self.state_index]
        return [mu, nu]

    def _launch(self, params, grads, states, idx, device, coef, write_grads):
        counts, mu, nu = states[self.state_index]
        pick = _picker(idx, len(params))
        counts = pick(counts)
        torch._foreach_add_(counts, 1)
        ps = pick(params)
        gs, grad_scale = _clipped(coef, ps, pick(grads), write_grads)
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        kernel(ps, gs, pick(mu), pick(nu), [], _steps_on(counts, device), lr=self.lr, beta1=self.b1, beta2=self.b2,
               weight_decay=self.weight_decay, eps=self.eps, amsgrad=False, maximize=False, grad_scale=grad_scale)


@dataclasses.dataclass(frozen=True)
class FusedSGD(_FusedPlan):
    """``p -= lr * v`` with ``v`` heavy-ball momentum of ``g' = clip * g + l2 * p`` (or ``g'``
    itself without momentum): torch's SGD kernel. Its buffers are our velocity state."""

    kind: ClassVar[str] = "sgd"
    rules: tuple[Rule, ...]
    state_index: int | None   # the momentum rule's state; None for plain descent
    lr: float
    rho: float
    dampening: float
    weight_decay: float
    max_norm: float | None

    def _elementwise(self, states):
        return [] if self.state_index is None else [states[self.state_index].velocity]

    def _launch(self, params, grads, states, idx, device, coef, write_grads):
        del device
        if self.state_index is None:
            self._run(params, grads, None, idx, coef, write_grads, is_first=False)
            return
        counts, velocity = states[self.state_index]
        counts = [counts[j] for j in idx]
        torch._foreach_add_(counts, 1)
        # torch's kernel starts all its buffers at once (is_first_step); ours start per
        # parameter (one thawed late starts late), so split by whose first step it is.
        first = [t == 1 for t in torch.stack(counts).tolist()]
        for is_first in (True, False):
            part = [j for j, f in zip(idx, first) if f == is_first]
            if part:
                self._run(params, grads, velocity, part, coef, write_grads, is_first=is_first)

    def _run(self, params, grads, velocity, idx, coef, write_grads, *, is_first: bool) -> None:
        pick = _picker(idx, len(params))
        ps = pick(params)
        gs, grad_scale = _clipped(coef, ps, pick(grads), write_grads)
        torch._fused_sgd_(ps, gs, [] if velocity is None else pick(velocity), weight_decay=self.weight_decay,
                          momentum=self.rho, lr=self.lr, dampening=self.dampening, nesterov=False, maximize=False,
                          is_first_step=is_first, grad_scale=grad_scale)


# -- reading a matched chain -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Parts:
    """A matched chain read by role: [clip_norm] [weight_decay] core [weight_decay] [scale_lr]."""

    core: int | None
    max_norm: float | None
    l2: float          # weight_decay before the core rule
    decay: float       # weight_decay after it
    scale: float       # scale_lr's (or sgd's) lr; 1.0 without one


def _parts(rules: tuple[Rule, ...], core: type[Rule] | None) -> _Parts:
    at = [type(r) for r in rules].index(core) if core is not None else len(rules)

    def first(kinds: tuple[type[Rule], ...], lo: int, hi: int) -> Any:
        return next((r for r in rules[lo:hi] if type(r) in kinds), None)

    clip, l2 = first((ClipNorm,), 0, at), first((WeightDecay,), 0, at)
    decay, scale = first((WeightDecay,), at + 1, len(rules)), first((ScaleLR, SGD), 0, len(rules))
    return _Parts(core=None if core is None else at, max_norm=clip.max_norm if clip else None,
                  l2=l2.decay if l2 else 0.0, decay=decay.decay if decay else 0.0,
                  scale=scale.lr if scale else 1.0)


def _build_adam(rules: tuple[Rule, ...]) -> Plan | None:
    parts = _parts(rules, Adam)
    adam = rules[parts.core]
    decoupled = parts.decay != 0.0
    if decoupled and adam.lr == 0.0:
        return None  # the kernel ties the decay to lr; with adam's lr at 0 it can't be expressed
    return FusedAdam(rules=rules, state_index=parts.core, lr=adam.lr * parts.scale, b1=adam.b1, b2=adam.b2,
                     eps=adam.eps, weight_decay=parts.decay / adam.lr if decoupled else parts.l2,
                     decoupled=decoupled, max_norm=parts.max_norm)


def _build_momentum(rules: tuple[Rule, ...]) -> Plan | None:
    parts = _parts(rules, Momentum)
    mom = rules[parts.core]
    if mom.rho == 0.0:
        return None  # torch's kernel keeps no buffer without momentum; our velocity state must still follow
    return FusedSGD(rules=rules, state_index=parts.core, lr=mom.lr * parts.scale, rho=mom.rho,
                    dampening=mom.dampening, weight_decay=parts.l2, max_norm=parts.max_norm)


def _build_descent(rules: tuple[Rule, ...]) -> Plan | None:
    parts = _parts(rules, None)
    return FusedSGD(rules=rules, state_index=None, lr=parts.scale, rho=0.0, dampening=0.0, weight_decay=parts.l2,
                    max_norm=parts.max_norm)


# The patterns, each also with clip_norm in front. adamw(...) is (Adam, WeightDecay, ScaleLR).
_FAMILIES: dict[Builder, list[tuple[type[Rule], ...]]] = {
    _build_adam: [(Adam,), (Adam, ScaleLR), (Adam, WeightDecay, ScaleLR), (WeightDecay, Adam, ScaleLR)],
    _build_momentum: [(Momentum,), (Momentum, ScaleLR), (WeightDecay, Momentum, ScaleLR)],
    _build_descent: [(SGD,), (ScaleLR,), (WeightDecay, SGD), (WeightDecay, ScaleLR)],
}


def _register_families() -> None:
    for builder, patterns in _FAMILIES.items():
        for pattern in patterns:
            register_lowering(*pattern)(builder)
            register_lowering(ClipNorm, *pattern)(builder)


_register_families()
