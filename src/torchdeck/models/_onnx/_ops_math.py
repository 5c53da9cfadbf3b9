"""Element-wise ONNX ops, activations, softmax and reductions.

ONNX broadcasting is numpy's, which is torch's, so binary ops map one to one.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from torchdeck.models._onnx._registry import register_op
from torchdeck.models._onnx._values import ints, is_empty, scalar

__all__: list[str] = []  # converters are reached through the registry


# -- binary and variadic ---------------------------------------------------------------------
@register_op("Add")
def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b


@register_op("Sub")
def sub(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a - b


@register_op("Mul")
def mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a * b


@register_op("Div")
def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # ONNX integer division truncates toward zero (as C does), torch's `//` floors.
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


@register_op("Mod")
def mod(a: torch.Tensor, b: torch.Tensor, *, fmod: int = 0) -> torch.Tensor:
    # fmod=0 takes the divisor's sign (Python's %), fmod=1 the dividend's (C's fmod).
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


@register_op("Pow")
def pow_(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The result keeps the base's type in ONNX; torch would promote an int base with a float exponent.
    return torch.pow(x, y).to(x.dtype)


@register_op("Max")
def max_(*xs: torch.Tensor) -> torch.Tensor:
    return functools.reduce(torch.maximum, xs)


@register_op("Min")
def min_(*xs: torch.Tensor) -> torch.Tensor:
    return functools.reduce(torch.minimum, xs)


@register_op("Sum")
def sum_(*xs: torch.Tensor) -> torch.Tensor:
    return functools.reduce(torch.add, xs)


@register_op("Mean")
def mean_(*xs: torch.Tensor) -> torch.Tensor:
    return functools.reduce(torch.add, xs) / len(xs)


@register_op("Equal")
def equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a == b


@register_op("Less")
def less(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a < b


@register_op("Greater")
def greater(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a > b


@register_op("Not")
def not_(x: torch.Tensor) -> torch.Tensor:
    return torch.logical_not(x)


@register_op("Where")
def where(condition: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.where(condition, x, y)


# -- unary -----------------------------------------------------------------------------------
@register_op("Identity")
def identity(x: torch.Tensor) -> torch.Tensor:
    return x


@register_op("Neg")
def neg(x: torch.Tensor) -> torch.Tensor:
    return -x


@register_op("Abs")
def abs_(x: torch.Tensor) -> torch.Tensor:
    return torch.abs(x)


@register_op("Sqrt")
def sqrt(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x)


@register_op("Reciprocal")
def reciprocal(x: torch.Tensor) -> torch.Tensor:
    return torch.reciprocal(x)


@register_op("Exp")
def exp(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x)


@register_op("Log")
def log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x)


@register_op("Erf")
def erf(x: torch.Tensor) -> torch.Tensor:
    return torch.erf(x)


@register_op("Floor")
def floor(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x)


@register_op("Ceil")
def ceil(x: torch.Tensor) -> torch.Tensor:
    return torch.ceil(x)


# -- activations -----------------------------------------------------------------------------
@register_op("Relu")
def relu(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x)


@register_op("LeakyRelu")
def leaky_relu(x: torch.Tensor, *, alpha: float = 0.01) -> torch.Tensor:
    return F.leaky_relu(x, alpha)


@register_op("PRelu")
def prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    # ONNX broadcasts the slope numpy-style; F.prelu wants one slope per channel.
    return torch.where(x >= 0, x, x * slope)


@register_op("Elu")
def elu(x: torch.Tensor, *, alpha: float = 1.0) -> torch.Tensor:
    return F.elu(x, alpha)


@register_op("Selu")
def selu(x: torch.Tensor, *, alpha: float = 1.67326319217681884765625,
         gamma: float = 1.05070102214813232421875) -> torch.Tensor:
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@register_op("Sigmoid")
def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


@register_op("HardSigmoid")
def hard_sigmoid(x: torch.Tensor, *, alpha: float = 0.2, beta: float = 0.5) -> torch.Tensor:
    return torch.clamp(alpha * x + beta, 0.0, 1.0)


@register_op("HardSwish", since=14)
def hard_swish(x: torch.Tensor) -> torch.Tensor:
    return F.hardswish(x)


@register_op("Tanh")
def tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


@register_op("Softplus")
def softplus(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x)


@register_op("Gelu", since=20)
def gelu(x: torch.Tensor, *, approximate: str = "none") -> torch.Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"Gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return F.gelu(x, approximate=approximate)


@register_op("Clip", config=(1, 2))
def clip(x: torch.Tensor, min_input: object = None, max_input: object = None, *,
         min: float | None = None, max: float | None = None) -> torch.Tensor:  # noqa: A002  (ONNX's names)
    # Opset < 11 gives the bounds as attributes, later opsets as optional inputs.
    low = min if is_empty(min_input) else scalar(min_input)
    high = max if is_empty(max_input) else scalar(max_input)
    return torch.clamp(x, low, high)


# -- softmax: opset 13 changed the meaning of `axis` -----------------------------------------
def _coerced_2d(fn, x: torch.Tensor, axis: int) -> torch.Tensor:
    # Before opset 13 the input is flattened to 2-D at `axis` and normalised over the second part.
    axis = axis % max(x.dim(), 1)
    shape = x.shape
    return fn(x.reshape(math.prod(shape[:axis]), -1), dim=1).reshape(shape)


@register_op("Softmax")
def softmax_1(x: torch.Tensor, *, axis: int = 1) -> torch.Tensor:
    return _coerced_2d(torch.softmax, x, axis)


@register_op("Softmax", since=13)
def softmax(x: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    return torch.softmax(x, dim=axis)


@register_op("LogSoftmax")
def log_softmax_1(x: torch.Tensor, *, axis: int = 1) -> torch.Tensor:
    return _coerced_2d(torch.log_softmax, x, axis)


@register_op("LogSoftmax", since=13)
def log_softmax(x: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    return torch.log_softmax(x, dim=axis)


# -- reductions: axes moved from an attribute to an input (ReduceSum at 13, the rest at 18) ---
def _reduce(fn, x: torch.Tensor, axes_input: object, axes: list[int] | None, keepdims: int,
            noop_with_empty_axes: int) -> torch.Tensor:
    dims = ints(axes_input) if not is_empty(axes_input) else list(axes or [])
    if not dims:
        if noop_with_empty_axes:
            return x
        dims = list(range(x.dim()))
    if x.dim() == 0:
        return x
    return fn(x, dim=dims, keepdim=bool(keepdims))


@register_op("ReduceMean", config=(1,))
def reduce_mean(x: torch.Tensor, axes_input: object = None, *, axes: list[int] | None = None, keepdims: int = 1,
                noop_with_empty_axes: int = 0) -> torch.Tensor:
    return _reduce(torch.mean, x, axes_input, axes, keepdims, noop_with_empty_axes)


@register_op("ReduceSum", config=(1,))
def reduce_sum(x: torch.Tensor, axes_input: object = None, *, axes: list[int] | None = None, keepdims: int = 1,
               noop_with_empty_axes: int = 0) -> torch.Tensor:
    return _reduce(torch.sum, x, axes_input, axes, keepdims, noop_with_empty_axes)


@register_op("ReduceMax", config=(1,))
def reduce_max(x: torch.Tensor, axes_input: object = None, *, axes: list[int] | None = None, keepdims: int = 1,
               noop_with_empty_axes: int = 0) -> torch.Tensor:
    return _reduce(torch.amax, x, axes_input, axes, keepdims, noop_with_empty_axes)


@register_op("ReduceMin", config=(1,))
def reduce_min(x: torch.Tensor, axes_input: object = None, *, axes: list[int] | None = None, keepdims: int = 1,
               noop_with_empty_axes: int = 0) -> torch.Tensor:
    return _reduce(torch.amin, x, axes_input, axes, keepdims, noop_with_empty_axes)


def _arg(fn, x: torch.Tensor, axis: int, keepdims: int, select_last_index: int) -> torch.Tensor:
    if select_last_index:
        # torch returns the first extreme; flipping finds the last one.
        flipped = fn(x.flip(axis), dim=axis, keepdim=bool(keepdims))
        return x.shape[axis] - 1 - flipped
    return fn(x, dim=axis, keepdim=bool(keepdims))


@register_op("ArgMax")
def arg_max(x: torch.Tensor, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> torch.Tensor:
    return _arg(torch.argmax, x, axis, keepdims, select_last_index)


@register_op("ArgMin")
def arg_min(x: torch.Tensor, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> torch.Tensor:
    return _arg(torch.argmin, x, axis, keepdims, select_last_index)
