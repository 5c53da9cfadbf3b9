"""ONNX layers: convolutions, dense products, pooling, normalisation, dropout.

Shapes: ``x`` is ``(N, C, *spatial)`` with 1 to 3 spatial dimensions.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from torchdeck.models._onnx._registry import register_op
from torchdeck.models._onnx._values import is_empty, scalar

__all__ = ["window_pads"]

_CONV: dict[int, Callable[..., torch.Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T: dict[int, Callable[..., torch.Tensor]] = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX_POOL: dict[int, Callable[..., torch.Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL: dict[int, Callable[..., torch.Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _by_rank(table: dict[int, Callable[..., torch.Tensor]], op: str, x: torch.Tensor) -> Callable[..., torch.Tensor]:
    n = x.dim() - 2
    if n not in table:
        raise ValueError(f"{op}: input of shape {tuple(x.shape)} has {n} spatial dimensions; allowed: 1, 2, 3")
    return table[n]


def window_pads(op: str, x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int],
                pads: list[int] | None, auto_pad: str) -> list[tuple[int, int]]:
    """``(begin, end)`` padding per spatial dimension, from explicit ``pads`` or ``auto_pad``."""
    n = x.dim() - 2
    if auto_pad == "NOTSET":
        p = list(pads) if pads else [0] * (2 * n)
        return list(zip(p[:n], p[n:]))
    if auto_pad == "VALID":
        return [(0, 0)] * n
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # Output size ceil(in / stride); the odd pixel of padding goes at the end for SAME_UPPER.
        pairs = []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            pairs.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
        return pairs
    raise ValueError(f"{op}: auto_pad {auto_pad!r} is not an ONNX mode; allowed: NOTSET, VALID, SAME_UPPER, SAME_LOWER")


def _native_or_padded(x: torch.Tensor, pairs: list[tuple[int, int]], value: float,
                      native_ok: bool) -> tuple[torch.Tensor, list[int]]:
    """Symmetric padding the torch op can do itself, else pad explicitly and tell the op 0."""
    if native_ok and all(b == e for b, e in pairs):
        return x, [b for b, _ in pairs]
    flat = [p for b, e in reversed(pairs) for p in (b, e)]  # F.pad lists the last dimension first
    return F.pad(x, flat, value=value), [0] * len(pairs)


def _defaults(x: torch.Tensor, values: list[int] | None, fill: int) -> list[int]:
    return list(values) if values else [fill] * (x.dim() - 2)


# -- convolutions ----------------------------------------------------------------------------
@register_op("Conv")
def conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *, auto_pad: str = "NOTSET",
         dilations: list[int] | None = None, group: int = 1, kernel_shape: list[int] | None = None,
         pads: list[int] | None = None, strides: list[int] | None = None) -> torch.Tensor:
    fn = _by_rank(_CONV, "Conv", x)
    strides, dilations = _defaults(x, strides, 1), _defaults(x, dilations, 1)
    kernel = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    x, padding = _native_or_padded(x, window_pads("Conv", x, kernel, strides, dilations, pads, auto_pad), 0.0, True)
    return fn(x, w, b, strides, padding, dilations, group)


@register_op("ConvTranspose")
def conv_transpose(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *, auto_pad: str = "NOTSET",
                   dilations: list[int] | None = None, group: int = 1, kernel_shape: list[int] | None = None,
                   output_padding: list[int] | None = None, output_shape: list[int] | None = None,
                   pads: list[int] | None = None, strides: list[int] | None = None) -> torch.Tensor:
    fn = _by_rank(_CONV_T, "ConvTranspose", x)
    if output_shape or auto_pad not in ("NOTSET", "VALID"):
        raise ValueError(f"ConvTranspose: output_shape / auto_pad {auto_pad!r} are not supported; "
                         "allowed: explicit pads (auto_pad NOTSET or VALID)")
    n = x.dim() - 2
    strides, dilations = _defaults(x, strides, 1), _defaults(x, dilations, 1)
    out_pad = _defaults(x, output_padding, 0)
    p = list(pads) if pads and auto_pad == "NOTSET" else [0] * (2 * n)
    pairs = list(zip(p[:n], p[n:]))
    if all(b_ == e for b_, e in pairs):
        return fn(x, w, b, strides, [b_ for b_, _ in pairs], out_pad, group, dilations)
    # Asymmetric pads crop the full output on each side.
    y = fn(x, w, b, strides, 0, out_pad, group, dilations)
    index = (slice(None), slice(None), *(slice(b_, y.shape[2 + i] - e) for i, (b_, e) in enumerate(pairs)))
    return y[index]


@register_op("Gemm")
def gemm(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, *, alpha: float = 1.0, beta: float = 1.0,
         transA: int = 0, transB: int = 0, broadcast: int = 1) -> torch.Tensor:  # noqa: N803  (ONNX's names)
    del broadcast  # opset < 7: always on for what torch exporters write
    if not transA and transB and alpha == 1.0 and beta == 1.0 and (c is None or c.dim() == 1):
        # What nn.Linear exports: the same kernel gives the same bits.
        return F.linear(a, b, c)
    y = (a.t() if transA else a) @ (b.t() if transB else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


@register_op("MatMul")
def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.matmul(a, b)


# -- pooling ---------------------------------------------------------------------------------
@register_op("MaxPool")
def max_pool(x: torch.Tensor, *, kernel_shape: list[int], auto_pad: str = "NOTSET", ceil_mode: int = 0,
             dilations: list[int] | None = None, pads: list[int] | None = None, storage_order: int = 0,
             strides: list[int] | None = None) -> torch.Tensor:
    del storage_order  # only orders the Indices output, which is not converted
    fn = _by_rank(_MAX_POOL, "MaxPool", x)
    strides, dilations = _defaults(x, strides, 1), _defaults(x, dilations, 1)
    pairs = window_pads("MaxPool", x, kernel_shape, strides, dilations, pads, auto_pad)
    # torch pads at most half the kernel itself; beyond that, -inf padding is the same thing.
    native = all(b <= k // 2 for (b, _), k in zip(pairs, kernel_shape))
    x, padding = _native_or_padded(x, pairs, -math.inf, native)
    return fn(x, kernel_shape, strides, padding, dilations, ceil_mode=bool(ceil_mode))


@register_op("AveragePool")
def average_pool(x: torch.Tensor, *, kernel_shape: list[int], auto_pad: str = "NOTSET", ceil_mode: int = 0,
                 count_include_pad: int = 0, dilations: list[int] | None = None, pads: list[int] | None = None,
                 strides: list[int] | None = None) -> torch.Tensor:
    fn = _by_rank(_AVG_POOL, "AveragePool", x)
    if any(d != 1 for d in _defaults(x, dilations, 1)):
        raise ValueError(f"AveragePool: dilations {dilations} are not supported; allowed: all 1")
    strides = _defaults(x, strides, 1)
    pairs = window_pads("AveragePool", x, kernel_shape, strides, [1] * len(strides), pads, auto_pad)
    native = all(b == e and b <= k // 2 for (b, e), k in zip(pairs, kernel_shape))
    if not native and not count_include_pad and any(b or e for b, e in pairs):
        raise ValueError(f"AveragePool: padding {pairs} (asymmetric or over half the kernel {kernel_shape}) "
                         "with count_include_pad=0 is not supported")
    x, padding = _native_or_padded(x, pairs, 0.0, native)
    return fn(x, kernel_shape, strides, padding, ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad))


@register_op("GlobalAveragePool")
def global_average_pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register_op("GlobalMaxPool")
def global_max_pool(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


# -- normalisation ---------------------------------------------------------------------------
@register_op("BatchNormalization", frozen=(3, 4))
def batch_normalization(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
                        var: torch.Tensor, *, epsilon: float = 1e-5, momentum: float = 0.9, training_mode: int = 0,
                        spatial: int = 1, is_test: int = 1, consumed_inputs: list[int] | None = None) -> torch.Tensor:
    del momentum, is_test, consumed_inputs  # only matter when updating statistics, which inference never does
    if training_mode or not spatial:
        raise ValueError(f"BatchNormalization: training_mode={training_mode}, spatial={spatial} are not supported; "
                         "allowed: inference with per-channel statistics (training_mode=0, spatial=1)")
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=epsilon)


@register_op("InstanceNormalization")
def instance_normalization(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, *,
                           epsilon: float = 1e-5) -> torch.Tensor:
    return F.instance_norm(x, weight=scale, bias=bias, eps=epsilon)


@register_op("LayerNormalization", since=17)
def layer_normalization(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None, *, axis: int = -1,
                        epsilon: float = 1e-5, stash_type: int = 1) -> torch.Tensor:
    del stash_type  # the precision of the statistics; torch computes them in the input's type or better
    shape = x.shape[axis % x.dim():]
    if scale.shape == shape and (bias is None or bias.shape == shape):
        return F.layer_norm(x, shape, scale, bias, epsilon)
    y = F.layer_norm(x, shape, None, None, epsilon) * scale  # ONNX lets scale/bias broadcast
    return y if bias is None else y + bias


@register_op("Dropout", config=(1, 2))
def dropout(x: torch.Tensor, ratio_input: object = None, training_mode: object = None, *, seed: int | None = None,
            ratio: float = 0.5, is_test: int = 0) -> torch.Tensor:
    # Inference graphs only: an exported model's dropout is the identity.
    del ratio_input, seed, ratio, is_test
    if not is_empty(training_mode) and scalar(training_mode):
        raise ValueError("Dropout: training_mode=True is not supported; allowed: inference (training_mode False)")
    return x
