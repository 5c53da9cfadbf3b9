"""Backbones by name, the backbone/head split, and weights from local files."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import nn

from torchdeck._registry import Registry

__all__ = ["BACKBONES", "register_backbone", "available", "build_backbone", "Model", "load_weights", "WeightsReport"]

# name -> builder(in_channels, **options) -> (module, number of output features)
BACKBONES = Registry("backbone")
register_backbone = BACKBONES.register


def available() -> list[str]:
    return BACKBONES.names()


def build_backbone(name: str, in_channels: int, **options: Any) -> tuple[nn.Module, int]:
    return BACKBONES.lookup(name)(in_channels, **options)


class Model(nn.Module):
    """``head(backbone(x))`` with both parts reachable, so they can be frozen or given
    their own learning rates.

    The backbone gives a vector per sample (a classifier's head reads it) or, for a dense
    task, an :class:`~torchdeck.models.Encoder`'s list of feature maps (a U-Net decoder or a
    keypoint head reads them all).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@dataclasses.dataclass
class WeightsReport:
    path: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]

    def __str__(self) -> str:
        return (f"{self.path}: loaded {len(self.loaded)} tensors; missing {len(self.missing)}"
                f"{' ' + str(self.missing[:5]) if self.missing else ''}; unexpected {len(self.unexpected)}"
                f"{' ' + str(self.unexpected[:5]) if self.unexpected else ''}")


def load_weights(model: nn.Module, path: str | os.PathLike, *, strict: bool = False) -> WeightsReport:
    """Load weights from a local ``.safetensors`` file or a torch state dict (read with
    ``weights_only=True``). Never downloads. Returns what was loaded, missing and unexpected."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path!r}; put the file there or fix the path "
                                "(torchdeck never downloads weights)")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    own = model.state_dict()
    shape_mismatch = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if shape_mismatch:
        k = shape_mismatch[0]
        raise ValueError(f"{path}: tensor {k!r} has shape {tuple(state[k].shape)}, the model expects {tuple(own[k].shape)}")
    result = model.load_state_dict(state, strict=strict)
    return WeightsReport(path, [k for k in state if k in own], list(result.missing_keys), list(result.unexpected_keys))
