"""ONNX export (checked with onnxruntime) and import (our own converter to torch.fx)."""

from torchdeck.models._onnx._export import DEFAULT_ATOL, EXPORTERS, ExportCheckError, ExportReport, export_onnx
from torchdeck.models._onnx._import import ONNXImportInfo, UnsupportedOpError, import_onnx
from torchdeck.models._onnx._registry import OPS, OpConverter, register_op, supported_ops

# Public names under torchdeck.models, where "ops" alone would not say which.
register_onnx_op = register_op
supported_onnx_ops = supported_ops

__all__ = ["export_onnx", "ExportReport", "ExportCheckError", "EXPORTERS", "DEFAULT_ATOL", "import_onnx",
           "ONNXImportInfo", "UnsupportedOpError", "OPS", "OpConverter", "register_op", "supported_ops",
           "register_onnx_op", "supported_onnx_ops"]
