"""ONNX ops that move data around: shapes, reshapes, indexing, concatenation, casts, constants.

With a dynamic batch, exporters compute shapes while the model runs (``Shape -> Gather ->
Concat -> Reshape``); these converters accept such shapes as tensors as well as lists.
"""

from __future__ import annotations

import math

import torch

from torchdeck.models._onnx._registry import register_op
from torchdeck.models._onnx._values import ints, is_empty, scalar, torch_dtype

__all__: list[str] = []

_INT64 = torch.int64


@register_op("Constant")
def constant(*, value: torch.Tensor | None = None, value_float: float | None = None,
             value_floats: list[float] | None = None, value_int: int | None = None,
             value_ints: list[int] | None = None) -> torch.Tensor:
    given = {k: v for k, v in [("value", value), ("value_float", value_float), ("value_floats", value_floats),
                               ("value_int", value_int), ("value_ints", value_ints)] if v is not None}
    if len(given) != 1:
        raise ValueError(f"Constant: exactly one value attribute expected, got {sorted(given) or 'none'}")
    (name, v), = given.items()
    if isinstance(v, torch.Tensor):
        return v
    return torch.tensor(v, dtype=torch.float32 if name.startswith("value_float") else _INT64)


@register_op("ConstantOfShape", config=(0,))
def constant_of_shape(shape: object, *, value: torch.Tensor | None = None) -> torch.Tensor:
    fill = value if value is not None else torch.zeros(1)
    return torch.full(ints(shape), fill.reshape(()).item(), dtype=fill.dtype, device=fill.device)


@register_op("Cast")
def cast(x: torch.Tensor, *, to: int, saturate: int = 1) -> torch.Tensor:
    del saturate  # only for float8 targets, which torch_dtype refuses
    return x.to(torch_dtype(to, where="Cast"))


@register_op("CastLike")
def cast_like(x: torch.Tensor, like: torch.Tensor, *, saturate: int = 1) -> torch.Tensor:
    del saturate
    return x.to(like.dtype)


@register_op("Shape")
def shape(x: torch.Tensor, *, start: int = 0, end: int | None = None) -> torch.Tensor:
    return torch.tensor(x.shape[start:end], dtype=_INT64, device=x.device)


@register_op("Size")
def size(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(x.numel(), dtype=_INT64, device=x.device)


@register_op("Reshape", config=(1,))
def reshape(x: torch.Tensor, shape: object, *, allowzero: int = 0) -> torch.Tensor:
    target = ints(shape)
    if not allowzero:
        # A 0 copies the input's size on that axis (unless allowzero says it means an empty axis).
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return x.reshape(target)


@register_op("Flatten")
def flatten(x: torch.Tensor, *, axis: int = 1) -> torch.Tensor:
    axis = axis % x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), -1)


@register_op("Transpose")
def transpose(x: torch.Tensor, *, perm: list[int] | None = None) -> torch.Tensor:
    return x.permute(perm if perm is not None else list(range(x.dim() - 1, -1, -1)))


@register_op("Unsqueeze", config=(1,))
def unsqueeze(x: torch.Tensor, axes_input: object = None, *, axes: list[int] | None = None) -> torch.Tensor:
    # Axes count in the output's rank; inserting in increasing order keeps them valid.
    wanted = ints(axes_input) if not is_empty(axes_input) else list(axes or [])
    rank = x.dim() + len(wanted)
    for a in sorted(a % rank for a in wanted):
        x = x.unsqueeze(a)
    return x


@register_op("Squeeze", config=(1,))
def squeeze(x: torch.Tensor, axes_input: object = None, *, axes: list[int] | None = None) -> torch.Tensor:
    wanted = ints(axes_input) if not is_empty(axes_input) else list(axes or [])
    if not wanted:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in wanted))


@register_op("Concat")
def concat(*xs: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.cat(xs, dim=axis)


@register_op("Split", config=(1,), outputs=None, output_count="num_outputs")
def split(x: torch.Tensor, split_input: object = None, *, axis: int = 0, num_outputs: int | None = None,
          split: list[int] | None = None) -> tuple[torch.Tensor, ...]:
    sizes = ints(split_input) if not is_empty(split_input) else list(split or [])
    if sizes:
        return tuple(torch.split(x, sizes, dim=axis))
    # Equal parts, the last one smaller when the axis does not divide evenly (opset 18's rule).
    return tuple(torch.split(x, math.ceil(x.shape[axis] / num_outputs), dim=axis))


def _normalised(index: torch.Tensor, size: int) -> torch.Tensor:
    return torch.where(index < 0, index + size, index)


@register_op("Gather")
def gather(x: torch.Tensor, indices: torch.Tensor, *, axis: int = 0) -> torch.Tensor:
    axis = axis % x.dim()
    flat = _normalised(indices.reshape(-1).long(), x.shape[axis])
    picked = x.index_select(axis, flat)
    return picked.reshape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1:]))


@register_op("GatherElements")
def gather_elements(x: torch.Tensor, indices: torch.Tensor, *, axis: int = 0) -> torch.Tensor:
    return torch.gather(x, axis, _normalised(indices.long(), x.shape[axis]))


def _slice_bounds(size: int, start: int, end: int, step: int) -> tuple[int, int]:
    """ONNX's clamping, which differs from Python's for negative steps."""
    start = start + size if start < 0 else start
    end = end + size if end < 0 else end
    if step > 0:
        return min(max(start, 0), size), min(max(end, 0), size)
    return min(max(start, 0), size - 1), min(max(end, -1), size - 1)


@register_op("Slice", config=(1, 2, 3, 4))
def slice_(x: torch.Tensor, starts_input: object = None, ends_input: object = None, axes_input: object = None,
           steps_input: object = None, *, starts: list[int] | None = None, ends: list[int] | None = None,
           axes: list[int] | None = None) -> torch.Tensor:
    # Opset < 10 gives starts/ends/axes as attributes, later opsets as inputs (plus steps).
    first = ints(starts_input) if not is_empty(starts_input) else list(starts or [])
    last = ints(ends_input) if not is_empty(ends_input) else list(ends or [])
    on = ints(axes_input) if not is_empty(axes_input) else list(axes or range(len(first)))
    steps = ints(steps_input) if not is_empty(steps_input) else [1] * len(first)
    for a, s, e, step in zip(on, first, last, steps):
        a = a % x.dim()
        s, e = _slice_bounds(x.shape[a], s, e, step)
        if step > 0:
            x = x[(slice(None),) * a + (slice(s, e, step),)]
        else:
            index = torch.arange(s, e, step, device=x.device)
            x = x.index_select(a, index)
    return x


@register_op("Expand", config=(1,))
def expand(x: torch.Tensor, shape: object) -> torch.Tensor:
    # Both ways: the target may have 1 where the input is larger (numpy broadcasting).
    return x.expand(torch.broadcast_shapes(x.shape, tuple(ints(shape))))


@register_op("Tile", config=(1,))
def tile(x: torch.Tensor, repeats: object) -> torch.Tensor:
    return x.repeat(ints(repeats))


@register_op("Range", config=(0, 1, 2))
def range_(start: object, limit: object, delta: object) -> torch.Tensor:
    device = next((v.device for v in (start, limit, delta) if isinstance(v, torch.Tensor)), None)
    values = [scalar(start), scalar(limit), scalar(delta)]
    dtype = torch.float32 if any(isinstance(v, float) for v in values) else _INT64
    return torch.arange(*values, dtype=dtype, device=device)
