"""Composition: Pipeline (in order), Maybe (with a probability), OneOf (one, by weight) and
SomeOf (n of them). Composites only choose; the planner fuses whatever runs, across their
boundaries too (a Maybe(Rotate) between two crops still makes one warp)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from torchdeck.augment import _checks as C
from torchdeck.augment._base import Options, Transform, register_transform
from torchdeck.augment._plan import Planner
from torchdeck.augment._rng import Rng

__all__ = ["Pipeline", "Maybe", "OneOf", "SomeOf"]


def _members(owner: str, transforms: Sequence[Any]) -> tuple[Transform, ...]:
    if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
        transforms = tuple(transforms[0])
    for i, t in enumerate(transforms):
        if not isinstance(t, Transform):
            raise ValueError(f"{owner}: transforms[{i}] must be a transform (A.Rotate(15), ...), "
                             f"got {type(t).__name__} {t!r}")
    return tuple(transforms)


def _inner_pipelines(t: Transform) -> list["Pipeline"]:
    found = [t] if isinstance(t, Pipeline) else []
    for field in t.nested:
        v = getattr(t, field)
        for inner in (v if isinstance(v, tuple) else (v,)):
            found += _inner_pipelines(inner)
    return found


@register_transform
@dataclasses.dataclass(frozen=True, init=False)
class Pipeline(Transform):
    """Transforms in order: ``Pipeline(A.Rotate(15), A.RandomResizedCrop(224), A.FlipX(), ...)``.
    The keyword options say how items are warped (see ``Options``); they hold for the whole
    pipeline you call, so a nested pipeline must leave them at their defaults."""

    name = "pipeline"
    nested = ("transforms",)
    transforms: tuple[Transform, ...]
    interpolation: str
    border: str
    fill: float | tuple[float, ...]
    mask_fill: int
    min_visibility: float
    antialias: bool

    def __init__(self, *transforms: Transform, interpolation: str = "linear", border: str = "constant",
                 fill: float | Sequence[float] = 0.0, mask_fill: int = 0, min_visibility: float = 0.0,
                 antialias: bool = True) -> None:
        members = _members("Pipeline", transforms)
        opts = Options(interpolation, border, tuple(fill) if isinstance(fill, list) else fill, mask_fill,
                       min_visibility, antialias)
        for t in members:
            for inner in _inner_pipelines(t):
                if inner.options != Options():
                    raise ValueError("Pipeline: a nested pipeline sets warp options "
                                     f"({inner.options}); set them on the outermost pipeline only")
        object.__setattr__(self, "transforms", members)
        for f in dataclasses.fields(Options):
            object.__setattr__(self, f.name, getattr(opts, f.name))
        object.__setattr__(self, "_options", opts)

    @classmethod
    def from_fields(cls, transforms: Sequence[Transform] = (), **options: Any) -> "Pipeline":
        return cls(*transforms, **options)

    @property
    def options(self) -> Options:
        return self._options

    def _plan(self, planner: Planner, rng: Rng) -> None:
        for t in self.transforms:
            t._plan(planner, rng)

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]


@dataclasses.dataclass(frozen=True)
class Chosen:
    chosen: tuple[int, ...]


@register_transform
@dataclasses.dataclass(frozen=True)
class Maybe(Transform):
    """Run ``transform`` with probability ``p``."""

    name = "maybe"
    nested = ("transform",)
    transform: Transform
    p: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.transform, Transform):
            raise ValueError(f"Maybe: transform must be a transform, got {type(self.transform).__name__}")
        object.__setattr__(self, "p", C.probability("Maybe", "p", self.p))

    def _plan(self, planner: Planner, rng: Rng) -> None:
        if rng.random() < self.p:
            self.transform._plan(planner, rng)
        else:
            planner.note(self.transform, None, applied=False)


def _weights(owner: str, weights: Any, n: int) -> tuple[float, ...] | None:
    if weights is None:
        return None
    if not isinstance(weights, (list, tuple)) or len(weights) != n:
        raise ValueError(f"{owner}: weights must be one number per transform ({n}), got {weights!r}")
    w = tuple(C.number(owner, "weights", v, minimum=0.0) for v in weights)
    if sum(w) <= 0:
        raise ValueError(f"{owner}: weights must not all be 0, got {weights!r}")
    return w


@register_transform
@dataclasses.dataclass(frozen=True, init=False)
class OneOf(Transform):
    """Run one of ``transforms``, chosen by ``weights`` (default: equally likely)."""

    name = "one_of"
    nested = ("transforms",)
    transforms: tuple[Transform, ...]
    weights: tuple[float, ...] | None

    def __init__(self, *transforms: Transform, weights: Sequence[float] | None = None) -> None:
        members = _members("OneOf", transforms)
        if not members:
            raise ValueError("OneOf: transforms must not be empty")
        object.__setattr__(self, "transforms", members)
        object.__setattr__(self, "weights", _weights("OneOf", weights, len(members)))

    @classmethod
    def from_fields(cls, transforms: Sequence[Transform] = (), **kw: Any) -> "OneOf":
        return cls(*transforms, **kw)

    def _plan(self, planner: Planner, rng: Rng) -> None:
        i = rng.pick(range(len(self.transforms)), self.weights)
        planner.note(self, Chosen((i,)))
        planner.depth += 1
        self.transforms[i]._plan(planner, rng)
        planner.depth -= 1


@register_transform
@dataclasses.dataclass(frozen=True, init=False)
class SomeOf(Transform):
    """Run ``n`` distinct members (an integer, or a (low, high) range drawn uniformly), in their
    listed order or shuffled with ``random_order``."""

    name = "some_of"
    nested = ("transforms",)
    transforms: tuple[Transform, ...]
    n: int | tuple[int, int]
    random_order: bool

    def __init__(self, *transforms: Transform, n: int | Sequence[int] = 1, random_order: bool = False) -> None:
        members = _members("SomeOf", transforms)
        lo_hi = (n, n) if isinstance(n, int) and not isinstance(n, bool) else n
        if (not isinstance(lo_hi, (list, tuple)) or len(lo_hi) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in lo_hi)
                or not 0 <= lo_hi[0] <= lo_hi[1] <= len(members)):
            raise ValueError(f"SomeOf: n must be an integer or a (low, high) pair with 0 <= low <= high <= "
                             f"{len(members)} (the number of transforms), got {n!r}")
        if not isinstance(random_order, bool):
            raise ValueError(f"SomeOf: random_order must be true or false, got {random_order!r}")
        object.__setattr__(self, "transforms", members)
        object.__setattr__(self, "n", lo_hi[0] if lo_hi[0] == lo_hi[1] else tuple(lo_hi))
        object.__setattr__(self, "random_order", random_order)

    @classmethod
    def from_fields(cls, transforms: Sequence[Transform] = (), **kw: Any) -> "SomeOf":
        return cls(*transforms, **kw)

    def _plan(self, planner: Planner, rng: Rng) -> None:
        lo, hi = (self.n, self.n) if isinstance(self.n, int) else self.n
        chosen = rng.sample(len(self.transforms), rng.integer(lo, hi))
        if not self.random_order:
            chosen.sort()
        planner.note(self, Chosen(tuple(chosen)))
        planner.depth += 1
        for i in chosen:
            self.transforms[i]._plan(planner, rng)
        planner.depth -= 1
