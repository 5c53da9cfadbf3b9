"""Models: backbones by name, backbone/head split, feature-map encoders, heads per task, local weights, ONNX.

The zoo: ``small_cnn``, ``mlp``, ``tabular_mlp``, ``small_convnet`` and torchvision's
resnet18/34/50, mobilenet_v3_small/large, efficientnet_b0, convnext_tiny and vit_b_16
(built with ``weights=None``; pretrained weights only from a local file).
"""

from torchdeck.models import _small  # noqa: F401  (registers the small backbones)
from torchdeck.models._base import (BACKBONES, Model, WeightsReport, available, build_backbone, load_weights,
                                    register_backbone)
from torchdeck.models._convnet import small_convnet
from torchdeck.models._encoder import (POOLS, PROBE_SIZE, Encoder, FeatureShape, PooledEncoder, as_encoder,
                                       build_encoder, split_stages)
from torchdeck.models._onnx import (ExportCheckError, ExportReport, ONNXImportInfo, UnsupportedOpError, export_onnx,
                                    import_onnx, register_onnx_op, supported_onnx_ops)
from torchdeck.models._heads import (CoordinateRegressor, HeatmapKeypoints, SoftArgmax2d, UNetDecoder, linear_head,
                                     pixel_centres, vector_shapes)
from torchdeck.models._torchvision import TORCHVISION_BACKBONES, ViTGrid, torchvision_weights_path

__all__ = ["BACKBONES", "Model", "WeightsReport", "available", "build_backbone", "load_weights", "register_backbone",
           "small_convnet", "POOLS", "PROBE_SIZE", "Encoder", "FeatureShape", "PooledEncoder", "as_encoder",
           "build_encoder", "split_stages", "CoordinateRegressor", "HeatmapKeypoints", "SoftArgmax2d", "UNetDecoder",
           "linear_head", "pixel_centres", "vector_shapes", "TORCHVISION_BACKBONES", "ViTGrid",
           "torchvision_weights_path"]
__all__ += ["export_onnx", "import_onnx", "ExportReport", "ExportCheckError", "ONNXImportInfo", "UnsupportedOpError",
            "register_onnx_op", "supported_onnx_ops"]
