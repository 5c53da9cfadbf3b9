"""Single-node ONNX graphs, one or more per converter, run by onnxruntime as the reference.

Each case is a tiny model built with ``onnx.helper``; ``Init`` marks an input given as an
initializer (a weight or a constant), anything else is a graph input fed at run time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

RNG = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def pos(*shape: int) -> np.ndarray:
    return (np.abs(RNG.standard_normal(shape)) + 0.1).astype(np.float32)


def i64(*values: Any) -> np.ndarray:
    """``i64(1, 2)`` is ``[1, 2]``; ``i64([[1], [2]])`` keeps the nesting it is given."""
    return np.array(values[0] if len(values) == 1 and isinstance(values[0], list) else values, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Init:
    value: np.ndarray


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    op: str
    inputs: tuple[Any, ...]  # np.ndarray (graph input), Init (initializer) or None (omitted)
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    opset: int = 20
    outputs: int = 1


def C(id: str, op: str, *inputs: Any, opset: int = 20, outputs: int = 1, **attrs: Any) -> Case:  # noqa: A002
    return Case(id, op, inputs, attrs, opset, outputs)


X4 = f32(2, 3, 6, 6)
TIES = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], dtype=np.int64)

CASES: list[Case] = [
    # binary, variadic, logic
    C("add_broadcast", "Add", f32(2, 3, 4), Init(f32(4))),
    C("sub", "Sub", f32(2, 3), f32(2, 3)),
    C("mul_scalar_init", "Mul", f32(2, 3), Init(np.array(0.5, dtype=np.float32))),
    C("div_float", "Div", f32(3, 4), pos(4)),
    C("div_int_truncates", "Div", i64(7, -7, 9, -9), i64(2, 2, -4, -4)),
    C("mod_int", "Mod", i64(7, -7, 5, -5), i64(3, 3, -3, -3)),
    C("mod_fmod", "Mod", f32(4) * 5, np.array([3, -3, 2, 1.5], dtype=np.float32), fmod=1),
    C("pow", "Pow", pos(3, 2), Init(np.array(2.0, dtype=np.float32))),
    C("max3", "Max", f32(2, 3), f32(3), f32(2, 1)),
    C("min2", "Min", f32(2, 3), f32(2, 3)),
    C("sum3", "Sum", f32(2, 3), f32(3), f32(2, 3)),
    C("mean2", "Mean", f32(2, 3), f32(2, 3)),
    C("equal", "Equal", i64(1, 2, 3), i64(1, 0, 3)),
    C("less", "Less", f32(5), f32(5)),
    C("greater", "Greater", f32(5), f32(5)),
    C("not", "Not", np.array([True, False, True])),
    C("where", "Where", np.array([[True, False], [False, True]]), f32(2, 2), f32(2)),
    # unary
    C("identity", "Identity", f32(3)),
    C("neg", "Neg", f32(3, 2)),
    C("abs", "Abs", f32(3, 2)),
    C("sqrt", "Sqrt", pos(3, 2)),
    C("reciprocal", "Reciprocal", pos(4)),
    C("exp", "Exp", f32(4)),
    C("log", "Log", pos(4)),
    C("erf", "Erf", f32(6)),
    C("floor", "Floor", f32(6) * 3),
    C("ceil", "Ceil", f32(6) * 3),
    # activations
    C("relu", "Relu", f32(2, 5)),
    C("leaky_relu", "LeakyRelu", f32(2, 5), alpha=0.2),
    C("prelu", "PRelu", f32(2, 3, 4), Init(pos(3, 1))),
    C("elu", "Elu", f32(2, 5), alpha=0.7),
    C("selu", "Selu", f32(2, 5)),
    C("sigmoid", "Sigmoid", f32(2, 5)),
    C("hard_sigmoid", "HardSigmoid", f32(2, 5) * 3, alpha=0.3, beta=0.4),
    C("hard_swish", "HardSwish", f32(2, 5) * 4),
    C("tanh", "Tanh", f32(2, 5)),
    C("softplus", "Softplus", f32(2, 5)),
    C("gelu", "Gelu", f32(2, 5)),
    C("gelu_tanh", "Gelu", f32(2, 5), approximate="tanh"),
    C("clip_inputs", "Clip", f32(3, 4), Init(np.array(-0.5, dtype=np.float32)), Init(np.array(0.3, dtype=np.float32))),
    C("clip_only_max", "Clip", f32(3, 4), None, Init(np.array(0.3, dtype=np.float32))),
    C("clip_attrs_opset6", "Clip", f32(3, 4), min=-0.2, max=0.1, opset=6),
    # softmax: the meaning of axis changed at opset 13
    C("softmax_13", "Softmax", f32(2, 3, 4), axis=1),
    C("softmax_11_coerced", "Softmax", f32(2, 3, 4), axis=1, opset=11),
    C("log_softmax_13", "LogSoftmax", f32(2, 3, 4)),
    C("log_softmax_11_coerced", "LogSoftmax", f32(2, 3, 4), axis=1, opset=11),
    # reductions: axes input from 18 (ReduceSum 13), attribute before
    C("reduce_mean_18", "ReduceMean", f32(2, 3, 4), Init(i64(1)), keepdims=0),
    C("reduce_mean_13_attr", "ReduceMean", f32(2, 3, 4), axes=[-1, 1], opset=13),
    C("reduce_mean_all", "ReduceMean", f32(2, 3, 4)),
    C("reduce_mean_noop", "ReduceMean", f32(2, 3), noop_with_empty_axes=1),
    C("reduce_sum_13", "ReduceSum", f32(2, 3, 4), Init(i64(0, 2)), opset=13),
    C("reduce_max", "ReduceMax", f32(2, 3, 4), Init(i64(2))),
    C("reduce_min", "ReduceMin", f32(2, 3, 4), keepdims=0),
    C("arg_max_last", "ArgMax", TIES, axis=1, select_last_index=1),
    C("arg_max_first", "ArgMax", TIES, axis=1, keepdims=0),
    C("arg_min", "ArgMin", TIES, axis=0),
    # convolutions
    C("conv", "Conv", X4, Init(f32(4, 3, 3, 3)), Init(f32(4)), pads=[1, 1, 1, 1]),
    C("conv_stride_dilation_group", "Conv", f32(1, 4, 9, 9), Init(f32(6, 2, 3, 3)), strides=[2, 2],
      dilations=[2, 2], group=2),
    C("conv_asymmetric_pads", "Conv", X4, Init(f32(2, 3, 2, 2)), pads=[0, 1, 1, 0]),
    C("conv_same_upper", "Conv", f32(1, 3, 7, 6), Init(f32(2, 3, 4, 3)), auto_pad="SAME_UPPER", strides=[2, 2]),
    C("conv_same_lower", "Conv", f32(1, 3, 7, 6), Init(f32(2, 3, 4, 3)), auto_pad="SAME_LOWER", strides=[2, 1]),
    C("conv_valid", "Conv", X4, Init(f32(2, 3, 3, 3)), auto_pad="VALID"),
    C("conv1d", "Conv", f32(2, 3, 10), Init(f32(4, 3, 3)), Init(f32(4)), pads=[2, 2], strides=[2]),
    C("conv3d", "Conv", f32(1, 2, 4, 4, 4), Init(f32(3, 2, 2, 2, 2))),
    C("conv_transpose", "ConvTranspose", f32(1, 4, 5, 5), Init(f32(4, 2, 3, 3)), Init(f32(2)), strides=[2, 2],
      pads=[1, 1, 1, 1], output_padding=[1, 1]),
    C("conv_transpose_asymmetric_group", "ConvTranspose", f32(1, 4, 4, 4), Init(f32(4, 1, 2, 2)), strides=[2, 2],
      pads=[0, 1, 1, 0], group=2),
    C("gemm_linear", "Gemm", f32(3, 5), Init(f32(4, 5)), Init(f32(4)), transB=1),
    C("gemm_general", "Gemm", f32(5, 3), Init(f32(5, 4)), Init(f32(1, 4)), transA=1, alpha=0.5, beta=2.0),
    C("gemm_no_c", "Gemm", f32(3, 5), f32(5, 2)),
    C("matmul_batched", "MatMul", f32(2, 3, 4), Init(f32(4, 5))),
    # pooling
    C("max_pool_ceil", "MaxPool", X4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    C("max_pool_asymmetric", "MaxPool", X4, kernel_shape=[2, 2], pads=[0, 1, 1, 0]),
    C("max_pool_dilated", "MaxPool", X4, kernel_shape=[2, 2], dilations=[2, 2]),
    C("max_pool_same_upper", "MaxPool", f32(1, 2, 7, 7), kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    C("max_pool_1d", "MaxPool", f32(2, 3, 9), kernel_shape=[3], strides=[2]),
    C("avg_pool_exclude_pad", "AveragePool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    C("avg_pool_include_pad", "AveragePool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
    C("avg_pool_asymmetric_include_pad", "AveragePool", X4, kernel_shape=[2, 2], pads=[1, 0, 0, 1],
      count_include_pad=1),
    C("avg_pool_strided", "AveragePool", X4, kernel_shape=[2, 2], strides=[2, 2]),
    C("global_average_pool", "GlobalAveragePool", X4),
    C("global_max_pool", "GlobalMaxPool", X4),
    # normalisation, dropout
    C("batch_norm", "BatchNormalization", X4, Init(pos(3)), Init(f32(3)), Init(f32(3)), Init(pos(3)), epsilon=1e-3),
    C("instance_norm", "InstanceNormalization", X4, Init(pos(3)), Init(f32(3))),
    C("layer_norm_last", "LayerNormalization", f32(2, 3, 4), Init(pos(4)), Init(f32(4))),
    C("layer_norm_axis1", "LayerNormalization", f32(2, 3, 4), Init(pos(3, 4)), axis=1, epsilon=1e-3),
    C("dropout_inference", "Dropout", f32(3, 4), Init(np.array(0.3, dtype=np.float32))),
    # pad and resize
    C("pad_constant", "Pad", X4, Init(i64(0, 0, 1, 2, 0, 0, 2, 1)), Init(np.array(1.5, dtype=np.float32))),
    C("pad_crop", "Pad", X4, Init(i64(0, 0, -1, 1, 0, 0, 0, -2))),
    C("pad_reflect", "Pad", X4, Init(i64(0, 0, 2, 1, 0, 0, 1, 2)), mode="reflect"),
    C("pad_edge", "Pad", X4, Init(i64(0, 0, 1, 0, 0, 0, 2, 1)), mode="edge"),
    C("pad_wrap", "Pad", X4, Init(i64(0, 0, 1, 2, 0, 0, 2, 1)), mode="wrap"),
    C("pad_axes_18", "Pad", X4, Init(i64(1, 2, 0, 1)), None, Init(i64(1, -1)), opset=18),
    C("pad_attrs_opset2", "Pad", X4, pads=[0, 0, 1, 1, 0, 0, 1, 1], value=-1.0, opset=2),
    C("resize_nearest_scales", "Resize", X4, None, Init(np.array([1, 1, 2, 3], dtype=np.float32)), mode="nearest",
      coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    C("resize_nearest_exact_sizes", "Resize", X4, None, None, Init(i64(2, 3, 4, 9)), mode="nearest",
      coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil"),
    C("resize_linear_half_pixel", "Resize", X4, None, Init(np.array([1, 1, 2, 2], dtype=np.float32)), mode="linear"),
    C("resize_linear_downscale", "Resize", X4, None, Init(np.array([1, 1, 0.5, 0.5], dtype=np.float32)),
      mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
    C("resize_linear_align_corners", "Resize", X4, None, None, Init(i64(2, 3, 11, 8)), mode="linear",
      coordinate_transformation_mode="align_corners"),
    C("resize_cubic", "Resize", X4, None, Init(np.array([1, 1, 2, 2], dtype=np.float32)), mode="cubic"),
    C("resize_axes_18", "Resize", X4, None, Init(np.array([2, 2], dtype=np.float32)), mode="nearest",
      coordinate_transformation_mode="asymmetric", nearest_mode="floor", axes=[2, 3], opset=18),
    C("resize_opset10", "Resize", X4, Init(np.array([1, 1, 2, 2], dtype=np.float32)), opset=10),
    # shapes, indexing, constants
    C("shape", "Shape", X4),
    C("shape_start_end", "Shape", X4, start=1, end=-1),
    C("size", "Size", X4),
    C("reshape_zero_and_infer", "Reshape", X4, Init(i64(0, -1, 4))),
    C("reshape_allowzero", "Reshape", f32(2, 0, 3), Init(i64(3, 0, 2)), allowzero=1),
    C("flatten_axis2", "Flatten", X4, axis=2),
    C("flatten_axis0", "Flatten", X4, axis=0),
    C("flatten_negative", "Flatten", X4, axis=-1),
    C("transpose_perm", "Transpose", X4, perm=[0, 2, 3, 1]),
    C("transpose_default", "Transpose", f32(2, 3, 4)),
    C("unsqueeze_13", "Unsqueeze", f32(3, 4), Init(i64(0, -1))),
    C("unsqueeze_11_attr", "Unsqueeze", f32(3, 4), axes=[1], opset=11),
    C("squeeze_axes", "Squeeze", f32(1, 3, 1, 4), Init(i64(-2))),
    C("squeeze_all", "Squeeze", f32(1, 3, 1, 4)),
    C("concat", "Concat", f32(2, 3), f32(2, 1), Init(f32(2, 2)), axis=-1),
    C("split_18_uneven", "Split", f32(7, 2), num_outputs=3, outputs=3, opset=18),
    C("split_13_sizes", "Split", f32(2, 6), Init(i64(1, 2, 3)), axis=1, outputs=3, opset=13),
    C("split_11_equal", "Split", f32(4, 6), axis=1, outputs=2, opset=11),
    C("gather_axis1_negative", "Gather", f32(3, 5, 2), i64([[0, -1], [4, 2]]), axis=1),
    C("gather_scalar", "Gather", f32(4, 3), Init(np.array(-2, dtype=np.int64))),
    C("gather_embedding", "Gather", Init(f32(6, 3)), i64([[1, 5, 0], [2, 2, 3]])),
    C("gather_elements", "GatherElements", f32(3, 4), i64([[0, 3], [1, -1], [2, 0]]), axis=1),
    C("slice_steps", "Slice", f32(6, 8), Init(i64(1, 0)), Init(i64(5, 8)), Init(i64(0, 1)), Init(i64(2, 3))),
    C("slice_negative_step", "Slice", f32(6, 8), Init(i64(-1)), Init(i64(-100)), Init(i64(1)), Init(i64(-2))),
    C("slice_to_end", "Slice", f32(4, 5), Init(i64(2)), Init(i64(2**63 - 1)), Init(i64(-1))),
    C("slice_opset9_attrs", "Slice", f32(4, 5), starts=[1], ends=[-1], axes=[1], opset=9),
    C("expand_both_ways", "Expand", f32(3, 1), Init(i64(2, 1, 4))),
    C("tile", "Tile", f32(2, 3), Init(i64(2, 1))),
    C("constant_of_shape", "ConstantOfShape", i64(2, 3),
      value=np.array([7], dtype=np.int64)),
    C("range_float", "Range", Init(np.array(0.5, dtype=np.float32)), Init(np.array(3.0, dtype=np.float32)),
      Init(np.array(0.75, dtype=np.float32))),
    C("range_int", "Range", Init(np.array(10, dtype=np.int64)), Init(np.array(1, dtype=np.int64)),
      Init(np.array(-3, dtype=np.int64))),
    C("cast_to_int32", "Cast", f32(5) * 4, to=6),
    C("cast_to_float16", "Cast", f32(5), to=10),
    C("cast_like", "CastLike", i64(1, 2, 3), Init(np.zeros(1, dtype=np.float64))),
    C("constant_floats", "Constant", value_floats=[1.0, 2.5]),
    C("constant_tensor", "Constant", value=np.arange(6, dtype=np.int64).reshape(2, 3)),
]
