"""ONNX Pad and Resize as ``F.pad`` and ``F.interpolate``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torchdeck.models._onnx._registry import register_op
from torchdeck.models._onnx._values import floats, ints, is_empty, scalar

__all__: list[str] = []

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register_op("Pad", config=(1, 2, 3))
def pad(x: torch.Tensor, pads_input: object = None, constant_value: object = None, axes_input: object = None, *,
        mode: str = "constant", pads: list[int] | None = None, value: float = 0.0) -> torch.Tensor:
    # Opset < 11 gives pads and value as attributes, later opsets as inputs (and axes from 18).
    if mode not in _PAD_MODES:
        raise ValueError(f"Pad: mode {mode!r} is not supported; allowed: {', '.join(_PAD_MODES)}")
    amounts = ints(pads_input) if not is_empty(pads_input) else list(pads or [])
    fill = value if is_empty(constant_value) else scalar(constant_value)
    axes = [a % x.dim() for a in ints(axes_input)] if not is_empty(axes_input) else list(range(x.dim()))
    if len(amounts) != 2 * len(axes):
        raise ValueError(f"Pad: {len(amounts)} pads for {len(axes)} axes; expected {2 * len(axes)}")
    per_axis = {a: (amounts[i], amounts[i + len(axes)]) for i, a in enumerate(axes)}
    padded = [a for a in range(x.dim()) if per_axis.get(a, (0, 0)) != (0, 0)]
    if not padded:
        return x
    # F.pad lists pairs from the last dimension backwards, down to the first padded one.
    flat = [p for a in range(x.dim() - 1, min(padded) - 1, -1) for p in per_axis.get(a, (0, 0))]
    if mode == "constant":
        return F.pad(x, flat, value=float(fill))
    if min(padded) < 2:
        raise ValueError(f"Pad: mode {mode!r} pads the batch or channel axis (pads {amounts}); "
                         "allowed: only spatial axes (2 and later) in that mode")
    return F.pad(x, flat, mode=_PAD_MODES[mode])


# (mode, coordinate_transformation_mode, nearest_mode) -> F.interpolate's mode and align_corners.
# nearest_mode only matters for "nearest"; "*" stands for any.
_RESIZE: dict[tuple[str, str, str], tuple[str, bool | None]] = {
    ("nearest", "asymmetric", "floor"): ("nearest", None),
    ("nearest", "half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("nearest", "pytorch_half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("linear", "half_pixel", "*"): ("linear", False),
    ("linear", "pytorch_half_pixel", "*"): ("linear", False),
    ("linear", "align_corners", "*"): ("linear", True),
    ("cubic", "half_pixel", "*"): ("cubic", False),
    ("cubic", "pytorch_half_pixel", "*"): ("cubic", False),
    ("cubic", "align_corners", "*"): ("cubic", True),
}
_BY_RANK = {"linear": {3: "linear", 4: "bilinear", 5: "trilinear"}, "cubic": {4: "bicubic"}}


def _interpolate(x: torch.Tensor, scales: list[float], sizes: list[int], mode: str, transform: str,
                 nearest_mode: str) -> torch.Tensor:
    key = (mode, transform, nearest_mode if mode == "nearest" else "*")
    if key not in _RESIZE:
        allowed = "; ".join(f"{m}/{t}" + (f"/{n}" if n != "*" else "") for m, t, n in _RESIZE)
        raise ValueError(f"Resize: mode {mode!r} with coordinate_transformation_mode {transform!r}"
                         f"{' and nearest_mode ' + repr(nearest_mode) if mode == 'nearest' else ''} is not supported; "
                         f"allowed: {allowed}")
    torch_mode, align = _RESIZE[key]
    if torch_mode in _BY_RANK:
        if x.dim() not in _BY_RANK[torch_mode]:
            raise ValueError(f"Resize: {mode} mode on a {x.dim()}-D input is not supported; "
                             f"allowed ranks: {sorted(_BY_RANK[torch_mode])}")
        torch_mode = _BY_RANK[torch_mode][x.dim()]
    if sizes:
        if list(sizes[:2]) != list(x.shape[:2]):
            raise ValueError(f"Resize: sizes {sizes} change the batch or channel axis of {tuple(x.shape)}")
        return F.interpolate(x, size=sizes[2:], mode=torch_mode, align_corners=align)
    if scales[:2] != [1.0, 1.0]:
        raise ValueError(f"Resize: scales {scales} change the batch or channel axis; allowed: 1.0 there")
    # The given scales (not the rounded sizes) place the samples, as in ONNX.
    return F.interpolate(x, scale_factor=scales[2:], mode=torch_mode, align_corners=align,
                         recompute_scale_factor=False)


@register_op("Resize", since=10, config=(1,))
def resize_10(x: torch.Tensor, scales: object, *, mode: str = "nearest") -> torch.Tensor:
    return _interpolate(x, floats(scales), [], mode, "asymmetric", "floor")


@register_op("Resize", since=11, config=(1, 2, 3))
def resize(x: torch.Tensor, roi: object = None, scales: object = None, sizes: object = None, *,
           antialias: int = 0, axes: list[int] | None = None, coordinate_transformation_mode: str = "half_pixel",
           cubic_coeff_a: float = -0.75, exclude_outside: int = 0, extrapolation_value: float = 0.0,
           keep_aspect_ratio_policy: str = "stretch", mode: str = "nearest",
           nearest_mode: str = "round_prefer_floor") -> torch.Tensor:
    del roi, extrapolation_value  # only used by tf_crop_and_resize, which is refused below
    if antialias or exclude_outside or cubic_coeff_a != -0.75 or keep_aspect_ratio_policy != "stretch":
        raise ValueError("Resize: antialias, exclude_outside, cubic_coeff_a other than -0.75 and "
                         f"keep_aspect_ratio_policy other than 'stretch' are not supported (got {antialias}, "
                         f"{exclude_outside}, {cubic_coeff_a}, {keep_aspect_ratio_policy!r})")
    scale_list = floats(scales) if not is_empty(scales) else []
    size_list = ints(sizes) if not is_empty(sizes) else []
    if axes:
        # Opset 18: scales/sizes name only some axes; the others keep their size.
        full_scales, full_sizes = [1.0] * x.dim(), list(x.shape)
        for i, a in enumerate(axes):
            if scale_list:
                full_scales[a % x.dim()] = scale_list[i]
            if size_list:
                full_sizes[a % x.dim()] = size_list[i]
        scale_list, size_list = (full_scales if scale_list else []), (full_sizes if size_list else [])
    return _interpolate(x, scale_list, size_list, mode, coordinate_transformation_mode, nearest_mode)
