"""Models: backbones by name, backbone/head split, local weights."""

from torchdeck.models import _small  # noqa: F401  (registers the small backbones)
from torchdeck.models._base import (BACKBONES, Model, WeightsReport, available, build_backbone, load_weights,
                                    register_backbone)

__all__ = ["BACKBONES", "Model", "WeightsReport", "available", "build_backbone", "load_weights", "register_backbone"]
