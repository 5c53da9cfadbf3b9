"""Reading ONNX values as torch: element types, and configuration inputs as Python numbers.

A configuration input (a shape, axes, pads) reaches a converter either as a Python list (known
at import time, written into the traced graph) or as a tensor (computed while the model runs,
as a dynamic batch size is); these helpers accept both.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DTYPES", "torch_dtype", "ints", "floats", "scalar", "is_empty"]

# TensorProto.DataType -> torch dtype (the element types torch can hold).
DTYPES: dict[int, torch.dtype] = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
    9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16,
}


def torch_dtype(onnx_type: int, *, where: str) -> torch.dtype:
    if onnx_type not in DTYPES:
        import onnx
        known = onnx_type in onnx.TensorProto.DataType.values()
        name = onnx.TensorProto.DataType.Name(onnx_type) if known else onnx_type
        allowed = ", ".join(str(d).removeprefix("torch.") for d in DTYPES.values())
        raise ValueError(f"{where}: ONNX element type {name} has no torch equivalent; allowed: {allowed}")
    return DTYPES[onnx_type]


def _flat(value: Any) -> list[Any]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    return [value]


def ints(value: Any) -> list[int]:
    """A shape/axes/pads input as a list of ints (``[]`` for an empty one)."""
    return [int(v) for v in _flat(value)]


def floats(value: Any) -> list[float]:
    return [float(v) for v in _flat(value)]


def scalar(value: Any) -> Any:
    """A one-element input (Clip's bounds, Range's start) as a Python number."""
    flat = _flat(value)
    if len(flat) != 1:
        raise ValueError(f"expected a single value, got {len(flat)}: {flat[:8]}")
    return flat[0]


def is_empty(value: Any) -> bool:
    """ONNX marks an omitted optional input with an empty name or an empty tensor."""
    return value is None or len(_flat(value)) == 0
