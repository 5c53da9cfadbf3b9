"""Heads per task: a linear head (class or multi-label logits), a U-Net decoder built from an
encoder's feature shapes (segmentation), and keypoint heads.

Keypoints: on feature maps the head predicts one heatmap per keypoint and takes its
soft-argmax (the softmax-weighted mean position, "integral regression"), so a coordinate is
read where the evidence is and stays differentiable. A dense decoder keeps the spatial
layout that global pooling throws away; on shapes at 64 px this reaches sub-pixel error in a
few CPU seconds, where a linear regressor on pooled features stays near a pixel. On a
vector of features (no maps to read) the head regresses the coordinates directly.

Coordinates are normalised to [-1, 1] across the image (x first), -1 and 1 being the outer
edges of the border pixels (``align_corners=False``, as ``F.grid_sample``): the same target
at any input size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from torchdeck.models._encoder import FeatureShape

__all__ = ["linear_head", "vector_shapes", "UNetDecoder", "SoftArgmax2d", "HeatmapKeypoints", "CoordinateRegressor",
           "pixel_centres"]

Features = torch.Tensor | Sequence[torch.Tensor]


def _check_positive(owner: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {field} must be a positive integer, got {value!r}")
    return value


def linear_head(in_features: int, out_features: int, *, dropout: float = 0.0) -> nn.Module:
    """Logits from pooled features: (N, in_features) -> (N, out_features); optional dropout first."""
    _check_positive("linear_head", "in_features", in_features)
    _check_positive("linear_head", "out_features", out_features)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"linear_head: dropout must be in [0, 1), got {dropout!r}")
    linear = nn.Linear(in_features, out_features)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout else linear


def vector_shapes(in_features: int, size: int) -> list[FeatureShape]:
    """A pooled vector of ``in_features`` seen as a 1x1 feature map of a ``size`` input."""
    _check_positive("vector_shapes", "in_features", in_features)
    return [FeatureShape(in_features, 1, 1, size)]


def _as_maps(features: Features) -> list[torch.Tensor]:
    if isinstance(features, torch.Tensor):
        # a pooled vector (N, F) is a 1x1 map; a single map is a one-level pyramid
        return [features[..., None, None] if features.ndim == 2 else features]
    return list(features)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class UNetDecoder(nn.Module):
    """A U-Net decoder for an encoder's maps ``[x, f_1, ..., f_n]`` (input first).

    From the deepest map up, each level upsamples (bilinear) to the next shallower map's
    size, concatenates that map (the skip) and runs a 3x3 conv block whose width is the
    skip's channels, clamped to [min_width, max_width]. It stops at the shallowest map whose
    stride is at least ``final_stride`` (1: the input itself, so the last level crosses with
    the pixels); a 1x1 convolution then gives ``out_channels``, resized to ``out_size`` if given.

    (features) -> (N, out_channels, H / final_stride, W / final_stride), or ``out_size``.

    Args:
        shapes: the encoder's :meth:`~torchdeck.models.Encoder.feature_shapes`, input first
            (or :func:`vector_shapes` for a pooled vector).
    """

    def __init__(self, shapes: Sequence[FeatureShape], out_channels: int, *, final_stride: int = 1,
                 min_width: int = 8, max_width: int = 256, out_size: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        shapes = list(shapes)
        if not shapes or not all(isinstance(s, FeatureShape) for s in shapes):
            raise ValueError(f"UNetDecoder: shapes must be a non-empty list of FeatureShape, got {shapes!r}")
        _check_positive("UNetDecoder", "out_channels", out_channels)
        _check_positive("UNetDecoder", "final_stride", final_stride)
        _check_positive("UNetDecoder", "min_width", min_width)
        if isinstance(max_width, bool) or not isinstance(max_width, int) or max_width < min_width:
            raise ValueError(f"UNetDecoder: max_width must be an integer >= min_width ({min_width}), got {max_width!r}")
        self.deepest = len(shapes) - 1
        # skips from deep to shallow, those no finer than final_stride
        self.skips = [i for i in range(self.deepest - 1, -1, -1) if shapes[i].stride >= final_stride]
        blocks, channels = [], shapes[-1].channels
        for i in self.skips:
            width = min(max(shapes[i].channels, min_width), max_width)
            blocks.append(_block(channels + shapes[i].channels, width))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(channels, out_channels, 1)
        self.out_size = (None if out_size is None else (out_size, out_size) if isinstance(out_size, int)
                         else tuple(out_size))

    def forward(self, features: Features) -> torch.Tensor:
        maps = _as_maps(features)
        if len(maps) != self.deepest + 1:
            raise ValueError(f"UNetDecoder: built for {self.deepest + 1} feature maps, got {len(maps)}")
        x = maps[self.deepest]
        for block, i in zip(self.blocks, self.skips):
            skip = maps[i]
            x = block(torch.cat([_resize(x, skip.shape[-2:]), skip], dim=1))
        x = self.out(x)
        return x if self.out_size is None else _resize(x, self.out_size)


def pixel_centres(n: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Normalised coordinates of the centres of ``n`` cells spanning [-1, 1]: (2j + 1) / n - 1."""
    return (torch.arange(n, device=device, dtype=dtype) * 2 + 1) / n - 1


class SoftArgmax2d(nn.Module):
    """Heatmap logits (N, K, H, W) -> expected positions (N, K, 2), (x, y) in [-1, 1].

    A softmax over each map's H * W cells weighs the cells' centres (:func:`pixel_centres`).
    """

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        n, k, h, w = heatmaps.shape
        p = heatmaps.flatten(2).softmax(dim=-1).view(n, k, h, w)
        xs = pixel_centres(w, device=heatmaps.device, dtype=p.dtype)
        ys = pixel_centres(h, device=heatmaps.device, dtype=p.dtype)
        return torch.stack([(p.sum(dim=2) * xs).sum(dim=-1), (p.sum(dim=3) * ys).sum(dim=-1)], dim=-1)


class HeatmapKeypoints(nn.Module):
    """``keypoints`` heatmaps from a :class:`UNetDecoder` that stops at ``heatmap_stride``,
    then :class:`SoftArgmax2d`: (features) -> (N, keypoints, 2) in [-1, 1].

    The soft-argmax reads positions between cells, so a coarser map (stride 2 or 4) costs
    less and loses little.
    """

    def __init__(self, shapes: Sequence[FeatureShape], keypoints: int, *, heatmap_stride: int = 2) -> None:
        super().__init__()
        _check_positive("HeatmapKeypoints", "keypoints", keypoints)
        self.keypoints = keypoints
        self.decoder = UNetDecoder(shapes, keypoints, final_stride=heatmap_stride)
        self.soft_argmax = SoftArgmax2d()

    def forward(self, features: Features) -> torch.Tensor:
        return self.soft_argmax(self.decoder(features))


class CoordinateRegressor(nn.Module):
    """Keypoints regressed from a pooled vector: (N, in_features) -> (N, keypoints, 2), a
    linear layer then tanh (the targets lie in (-1, 1))."""

    def __init__(self, in_features: int, keypoints: int) -> None:
        super().__init__()
        _check_positive("CoordinateRegressor", "in_features", in_features)
        _check_positive("CoordinateRegressor", "keypoints", keypoints)
        self.keypoints = keypoints
        self.linear = nn.Linear(in_features, 2 * keypoints)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(features)).view(len(features), self.keypoints, 2)
