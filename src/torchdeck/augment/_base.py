"""The Transform base class and its three families.

The base class runs the flow and nobody overrides it (``__call__`` is final): read the items,
plan (sample every parameter once, from the seed), execute the plan with the per-item kernels,
hand back the same kinds that came in. A transform fills two hooks:

1. ``sample(size, rng) -> params``: draw its random parameters into a small frozen record;
2. what to do with them, by family:
   - ``Projective.matrix(params, size) -> (3×3, new size)``: fused into one warp per item;
   - ``Pointwise.value_map(params, values, mean)``: a per-channel function of the value, fused
     into one lookup table for uint8 images;
   - ``PixelOp``: per-item-type kernels registered under the transform's name (``_kernels``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from torchdeck._registry import Registry
from torchdeck.augment import _checks as C
from torchdeck.augment._plan import Plan, Planner
from torchdeck.augment._rng import Rng, make_rng

if TYPE_CHECKING:
    from torchdeck.augment._explain import Explanation

__all__ = ["TRANSFORMS", "register_transform", "Transform", "Projective", "Pointwise", "PixelOp", "Options",
           "INTERPOLATIONS", "BORDERS", "SKIP"]

TRANSFORMS = Registry("transform")

INTERPOLATIONS = ("nearest", "linear", "cubic")
BORDERS = ("constant", "reflect", "replicate")


class _Skip:
    """What ``sample`` returns when a transform with its own ``p`` does not run this time."""

    def __repr__(self) -> str:
        return "SKIP"

    def __reduce__(self) -> str:
        return "SKIP"


SKIP = _Skip()


def register_transform(cls: type["Transform"]) -> type["Transform"]:
    return TRANSFORMS.register(cls.name)(cls)


@dataclasses.dataclass(frozen=True)
class Options:
    """How the warp treats items; set on the ``Pipeline`` you call (a bare transform uses these)."""

    interpolation: str = "linear"  # images; masks are always nearest-neighbour
    border: str = "constant"       # what lies outside the input: constant | reflect | replicate
    fill: float | tuple[float, ...] = 0.0  # constant border for images, in their units (0..255 or 0..1)
    mask_fill: int = 0             # constant border for masks (e.g. an ignore label like 255)
    min_visibility: float = 0.0    # boxes keeping less than this fraction of their area are dropped
    antialias: bool = True         # prefilter when the warp shrinks by 2x or more (else it aliases)

    def __post_init__(self) -> None:
        o = "Pipeline"
        C.choice(o, "interpolation", self.interpolation, INTERPOLATIONS)
        C.choice(o, "border", self.border, BORDERS)
        fill = self.fill
        if isinstance(fill, (list, tuple)):
            if not 1 <= len(fill) <= 4:
                raise ValueError(f"{o}: fill must be a number or 1-4 numbers (one per channel), got {fill!r}")
            object.__setattr__(self, "fill", tuple(C.number(o, "fill", v) for v in fill))
        else:
            object.__setattr__(self, "fill", C.number(o, "fill", fill))
        C.integer(o, "mask_fill", self.mask_fill)
        object.__setattr__(self, "min_visibility", C.probability(o, "min_visibility", self.min_visibility))
        if not isinstance(self.antialias, bool):
            raise ValueError(f"{o}: antialias must be true or false, got {self.antialias!r}")


_DEFAULT_OPTIONS = Options()


def _spec_value(v: Any) -> Any:
    if isinstance(v, Transform):
        return v.to_spec()
    if isinstance(v, (tuple, list)):
        return [_spec_value(x) for x in v]
    return v


@dataclasses.dataclass(frozen=True)
class Transform:
    """Base class; see the module docstring for the flow and the hooks."""

    name: ClassVar[str] = ""
    # Fields that hold transforms (or lists of them), parsed recursively from specs.
    nested: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: __call__ is final; fill sample() and the family hook instead")

    # --- hooks ---------------------------------------------------------------------------
    def sample(self, size: tuple[int, int], rng: Rng) -> Any:
        """Draw this call's random parameters for a frame of ``size`` = (height, width)."""
        return None

    def _plan(self, planner: Planner, rng: Rng) -> None:
        raise NotImplementedError

    @property
    def options(self) -> Options:
        return _DEFAULT_OPTIONS

    # --- the flow ------------------------------------------------------------------------
    def __call__(self, _image: Any = None, /, *, seed: Any = None, size: Any = None, fuse: bool = True,
                 **items: Any) -> Any:
        """``pipe(image=img, mask=m, keypoints=kp, boxes=bx, labels=lb, seed=0)`` -> a dict with the
        same keys (plus ``visibility`` with keypoints), each of the kind that came in. ``pipe(img)``
        with one positional image returns just the image. ``seed``: an int, a torch.Generator, or
        None (one draw from torch's default generator). ``size`` = (height, width) is needed only
        when no image or mask gives the frame. ``fuse=False`` runs every step as its own warp or
        table (the reference the fused result is compared with)."""
        # Imported here, not at the top: the kernel modules import this one (Options).
        from torchdeck.augment._execute import execute
        from torchdeck.augment._io import read_sample

        alone = _image is not None and not items
        if _image is not None:
            if "image" in items:
                raise ValueError("image given twice (positionally and as image=)")
            items = {"image": _image, **items}
        sample = read_sample(items, size)
        plan = self._make_plan(sample.size, seed, fuse)
        out = sample.restore(execute(plan, sample.items, self.options), plan.size)
        return out["image"] if alone else out

    def plan(self, size: tuple[int, int], *, seed: Any = None, fuse: bool = True) -> Plan:
        """Sample everything for a frame of ``size`` = (height, width), or (depth, height, width)
        for volumes, without touching pixels: the stages (fused matrices with their output
        sizes, colour groups, other ops) any backend can execute."""
        size = tuple(size) if isinstance(size, list) else size
        if isinstance(size, tuple) and len(size) == 3:  # a volume's frame
            return self._make_plan(C.size3(type(self).__name__, "size", size), seed, fuse)
        return self._make_plan(C.size2(type(self).__name__, "size", size), seed, fuse)

    def _make_plan(self, size: tuple[int, int], seed: Any, fuse: bool) -> Plan:
        planner = Planner(size, fuse)
        self._plan(planner, make_rng(seed))
        return planner.finish()

    def explain(self, seed: Any = 0, *, fuse: bool = True, size: Any = None, repeat: int = 1,
                **items: Any) -> "Explanation":
        """Each step with its sampled parameters and times; runs on ``items`` (default: a 256×256
        synthetic photo-like RGB image), ``repeat`` times, keeping each stage's fastest (the
        first run pays for warm-up). ``fuse=False`` times every step on its own. Print it, or
        read ``.rows`` and ``.stages``."""
        from torchdeck.augment._explain import explain
        return explain(self, seed=seed, fuse=fuse, size=size, repeat=C.integer("explain", "repeat", repeat, minimum=1),
                       items=items)

    # --- plain data ----------------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        return {self.name: {f.name: _spec_value(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    @classmethod
    def from_fields(cls, **fields: Any) -> "Transform":
        """Build from spec fields (composites take their ``transforms`` list positionally)."""
        return cls(**fields)

    def describe(self, params: Any) -> dict[str, Any]:
        """Parameters as plain numbers for ``explain``."""
        if params is None:
            return {}
        if dataclasses.is_dataclass(params):
            return {k: _plain(v) for k, v in dataclasses.asdict(params).items()}
        return {"value": _plain(params)}


def _plain(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return round(float(v), 4) + 0.0  # no "-0.0"
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


@dataclasses.dataclass(frozen=True)
class Projective(Transform):
    """Geometry: fill ``matrix(params, size) -> (forward 3×3, new (height, width))`` in continuous
    coordinates (see ``_geometry``). All items move by it, in one fused warp."""

    dims: ClassVar[int] = 2  # 3: a volume transform (4×4 matrices, (depth, height, width) frames)

    def matrix(self, params: Any, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        raise NotImplementedError

    def _plan(self, planner: Planner, rng: Rng) -> None:
        planner.check_dims(self, self.dims)
        planner.start()
        p = self.sample(planner.size, rng)
        m, size = self.matrix(p, planner.size)
        planner.geometry(self, p, m, size)


@dataclasses.dataclass(frozen=True)
class Pointwise(Transform):
    """A colour change that is a function of each pixel's value per channel: fill
    ``value_map(params, values, mean) -> values`` on a C×N float64 array of 0..1 values (colour
    channels only; alpha is left alone). Consecutive ones fold into one lookup table on uint8.
    ``mean`` is the image's mean grey (0..1) at this point, for those that set ``needs_mean``."""

    needs_mean: ClassVar[bool] = False
    to_tensor: ClassVar[bool] = False  # Normalize: the group writes a float C×H×W tensor

    def value_map(self, params: Any, values: np.ndarray, mean: float) -> np.ndarray:
        raise NotImplementedError

    def line(self, params: Any, mean: float) -> tuple[float, float] | None:
        """``(scale, offset)`` when ``value_map`` is ``clip(scale·v + offset, 0, 1)`` with scale > 0:
        chains of such steps are kept as two exact numbers (no table to inspect for the mean)."""
        return None

    def _plan(self, planner: Planner, rng: Rng) -> None:
        planner.start()
        planner.values(self, self.sample(planner.size, rng))


@dataclasses.dataclass(frozen=True)
class PixelOp(Transform):
    """Any other change: kernels registered under ``(name, item type)`` in ``_kernels.KERNELS``;
    item types without a kernel pass through unchanged (a blur leaves masks alone)."""

    needs_unit_range: ClassVar[bool] = False  # refuses to run after Normalize

    def _plan(self, planner: Planner, rng: Rng) -> None:
        planner.start()
        p = self.sample(planner.size, rng)
        if p is SKIP:
            planner.note(self, None, applied=False)
        else:
            planner.item_op(self, p)
