"""``small_convnet``: a small multi-stage CNN that trains dense tasks in seconds on a CPU.

``small_cnn`` has one downsampling, so its receptive field (about 10 pixels) cannot tell a
square's middle from a triangle's; this one halves the resolution at each of its stages,
so a 32 px input's last map sees the whole image, and a U-Net decoder gets a skip at
every scale.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from torchdeck.models._base import register_backbone
from torchdeck.models._encoder import POOLS, PooledEncoder

__all__ = ["small_convnet"]


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_backbone("small_convnet")
def small_convnet(in_channels: int, widths: Sequence[int] = (8, 16, 32, 64), pool: str = "avg"
                  ) -> tuple[PooledEncoder, int]:
    """Stages of two 3x3 conv blocks (conv, batch norm, ReLU); each stage after the first
    starts with a 2x max-pool. (B, C, H, W) -> (B, widths[-1]) pooled by ``pool``
    (``"avg"``, ``"max"``, ``"avgmax"``); as an encoder, maps at strides 1, 2, 4, ...
    """
    widths = list(widths) if isinstance(widths, (list, tuple)) else widths
    if not isinstance(widths, list) or not widths or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise ValueError(f"small_convnet: widths must be a non-empty list of positive integers, got {widths!r}")
    if pool not in POOLS:
        raise ValueError(f"small_convnet: pool must be one of {', '.join(map(repr, POOLS))}, got {pool!r}")
    stages, cin = [], in_channels
    for k, w in enumerate(widths):
        stages.append(nn.Sequential(*([nn.MaxPool2d(2)] if k else []), _conv(cin, w), _conv(w, w)))
        cin = w
    body = PooledEncoder(stages, in_channels, widths[-1], pool=pool)
    return body, body.out_features
