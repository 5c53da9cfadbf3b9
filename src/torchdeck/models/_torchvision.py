"""torchvision's classifiers as backbones (Metalhead.jl's model zoo): resnet18/34/50,
mobilenet_v3_small/large, efficientnet_b0, convnext_tiny, vit_b_16.

Each is built by torchvision with ``weights=None`` (nothing is downloaded), optionally loaded
from a local weights file while it still has torchvision's own parameter names (so the
files torchvision publishes load as they are), then cut: the classifier is dropped and the
body split into stages where the resolution drops (:func:`split_stages`, found by a dry run).
The result is a :class:`PooledEncoder`; a dense task reads the same stages as an
:class:`Encoder`.

torchvision is imported when a backbone is built, not when torchdeck is imported.
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import torch
from torch import nn

from torchdeck.models._base import WeightsReport, load_weights, register_backbone
from torchdeck.models._encoder import POOLS, Encoder, PooledEncoder, split_stages

__all__ = ["TORCHVISION_BACKBONES", "ViTGrid", "torchvision_weights_path"]


class ViTGrid(nn.Module):
    """A torchvision VisionTransformer's patch tokens as a feature map.

    (N, C, S, S) -> (N, D, S / p, S / p) for the one side ``S`` its position embedding was
    built for (``image_size``); the class token takes part in attention and is then dropped.
    Parameter names are torchvision's (``conv_proj``, ``class_token``, ``encoder``).
    """

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.encoder = vit.encoder
        self.image_size: int = vit.image_size
        self.patch_size: int = vit.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"vit: this model was built for {self.image_size}x{self.image_size} inputs, got {h}x{w}; "
                             f"build it with the backbone option image_size={h} (a multiple of {self.patch_size})")
        grid = self.conv_proj(x)
        gh, gw = grid.shape[-2:]
        tokens = torch.cat([self.class_token.expand(n, -1, -1), grid.flatten(2).transpose(1, 2)], dim=1)
        tokens = self.encoder(tokens)
        return tokens[:, 1:].transpose(1, 2).reshape(n, -1, gh, gw)


# family -> cut(torchvision model) -> the body without its classifier, as a Sequential
_CUTS: dict[str, Callable[[nn.Module], nn.Sequential]] = {
    "resnet": lambda m: nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4),
    "features": lambda m: m.features,  # mobilenet_v3, efficientnet, convnext: .features, then pool and classifier
    "vit": lambda m: nn.Sequential(ViTGrid(m)),
}


# backbone name (torchvision's builder name) -> its family, a key of _CUTS
TORCHVISION_BACKBONES: dict[str, str] = {
    "resnet18": "resnet", "resnet34": "resnet", "resnet50": "resnet",
    "mobilenet_v3_small": "features", "mobilenet_v3_large": "features", "efficientnet_b0": "features",
    "convnext_tiny": "features", "vit_b_16": "vit",
}


def torchvision_weights_path(name: str) -> str:
    """Where ``weights="imagenet"`` looks for ``name``'s default weights: the file torchvision
    itself would have cached, in torch hub's ``checkpoints`` folder. Nothing is downloaded."""
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _weights_file(name: str, weights: str | os.PathLike) -> str:
    import torchvision

    default = torchvision.models.get_model_weights(name).DEFAULT
    if weights == "imagenet":
        path = torchvision_weights_path(name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{name}: weights='imagenet' reads torchvision's {default} file from {path!r}, and it is not there. "
                f"torchdeck never downloads: copy the file (torchvision publishes it at {default.url}) to that path, "
                "or pass weights='path/to/file'")
        return path
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{name}: weights file not found: {path!r}; put a state dict of torchvision's {name} there (a "
            f".safetensors file or a torch.save'd dict, such as {os.path.basename(default.url)}) or fix the path "
            "(torchdeck never downloads weights)")
    return path


def _first_conv_for(body: nn.Module, in_channels: int, pretrained: bool) -> None:
    """Make the first convolution read ``in_channels`` channels.

    With pretrained weights the new kernel is the RGB kernels' mean, scaled by
    3 / in_channels, on every channel: a grey image then gives the first layer the response
    the pretrained RGB kernel gave it. Without pretrained weights it is a fresh layer.
    """
    for parent in body.modules():
        for child_name, conv in parent.named_children():
            if not isinstance(conv, nn.Conv2d):
                continue
            if conv.in_channels == in_channels:
                return
            new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size,  # type: ignore[arg-type]
                            stride=conv.stride, padding=conv.padding, dilation=conv.dilation,  # type: ignore[arg-type]
                            groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                            device=conv.weight.device, dtype=conv.weight.dtype)
            if pretrained:
                with torch.no_grad():
                    mean = conv.weight.mean(dim=1, keepdim=True) * (conv.in_channels / in_channels)
                    new.weight.copy_(mean.expand_as(new.weight))
                    if conv.bias is not None:
                        new.bias.copy_(conv.bias)  # type: ignore[union-attr]
            setattr(parent, child_name, new)
            return


def _positive_int(name: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {field} must be a positive integer, got {value!r}")
    return value


def _build(name: str, in_channels: int, *, weights: str | os.PathLike | None = None, pool: str = "avg",
           **torchvision_options: object) -> tuple[PooledEncoder, int]:
    import torchvision

    _positive_int(name, "in_channels", in_channels)
    if pool not in POOLS:
        raise ValueError(f"{name}: pool must be one of {', '.join(map(repr, POOLS))}, got {pool!r}")
    model = torchvision.models.get_model(name, weights=None, **torchvision_options)
    report: WeightsReport | None = None
    if weights is not None:
        report = load_weights(model, _weights_file(name, weights))
        if not report.loaded:
            raise ValueError(f"{name}: no tensor in {report.path!r} has a name of torchvision's {name} "
                             f"(the file has e.g. {report.unexpected[:3]}); a model saved by torchdeck loads with "
                             "models.load_weights(model, path) instead")
    body = _CUTS[TORCHVISION_BACKBONES[name]](model)
    _first_conv_for(body, in_channels, pretrained=weights is not None)
    native = getattr(model, "image_size", None)
    stages = split_stages(body, in_channels, size=native or 224)
    # the last stage's channels, from a dry run like the stages themselves
    channels = Encoder(stages, in_channels, native).feature_shapes()[-1].channels
    encoder = PooledEncoder(stages, in_channels, channels, pool=pool, native_size=native)
    encoder.weights_report = report
    return encoder, encoder.out_features


def _build_cnn(name: str, in_channels: int, weights: str | os.PathLike | None = None, pool: str = "avg"
               ) -> tuple[PooledEncoder, int]:
    return _build(name, in_channels, weights=weights, pool=pool)


def _build_vit(name: str, in_channels: int, weights: str | os.PathLike | None = None, pool: str = "avg",
               image_size: int = 224) -> tuple[PooledEncoder, int]:
    _positive_int(name, "image_size", image_size)
    # the position embedding has one row per patch; a pretrained file fixes it at 224 / 16 squared
    return _build(name, in_channels, weights=weights, pool=pool, image_size=image_size)


_DOC = """torchvision's {name} (weights=None), cut before its classifier.

(B, in_channels, H, W) -> (B, features), the last map pooled by ``pool`` ("avg", "max",
"avgmax"). ``weights``: a local file holding torchvision's {name} state dict (safetensors
or a torch state dict, read with weights_only=True), or "imagenet" for torchvision's own
file in torch hub's checkpoints folder; never downloaded. What was loaded, missing and
unexpected is in the returned module's ``weights_report``.{extra}"""

for _name, _family in TORCHVISION_BACKBONES.items():
    _vit = _family == "vit"
    _builder = functools.partial(_build_vit if _vit else _build_cnn, _name)
    _builder.__doc__ = _DOC.format(name=_name, extra=(
        "\n``image_size``: the one input side the model takes (a multiple of 16)." if _vit else ""))
    register_backbone(_name)(_builder)
