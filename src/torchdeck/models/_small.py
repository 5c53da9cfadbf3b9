"""Small built-in backbones that train in seconds on a CPU."""

from __future__ import annotations

from torch import nn

from torchdeck.models._base import register_backbone

__all__ = ["small_cnn", "mlp"]


def _positive_int(owner: str, field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {field} must be a positive integer, got {value!r}")


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_backbone("small_cnn")
def small_cnn(in_channels: int, width: int = 32) -> tuple[nn.Module, int]:
    """Three 3x3 conv blocks, one 2x downsampling, global average pooling.

    (B, C, H, W) -> (B, 2 * width); any H, W >= 2.
    """
    _positive_int("small_cnn", "width", width)
    body = nn.Sequential(_conv(in_channels, width), _conv(width, width), nn.MaxPool2d(2),
                         _conv(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return body, 2 * width


@register_backbone("mlp")
def mlp(in_channels: int, in_features: int = 64, hidden: int = 128) -> tuple[nn.Module, int]:
    """Flatten, then one hidden layer. (B, ...) with ``in_features`` values -> (B, hidden)."""
    del in_channels
    _positive_int("mlp", "in_features", in_features)
    _positive_int("mlp", "hidden", hidden)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(inplace=True)), hidden
