"""Heads: the U-Net decoder built from feature shapes, soft-argmax against grid_sample's
coordinate convention, keypoint heads, encoders cut from plain Sequentials."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchdeck import models


def _encoder(widths=(4, 8, 16), seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return models.build_encoder("small_convnet", 3, widths=list(widths))


@pytest.mark.parametrize("side", [32, 36, 50])
def test_unet_output_has_the_input_size(side):
    # 36 -> 18 -> 9 -> 4 and 50 -> 25 -> 12 -> 6: sides that do not halve evenly still
    # come back to the input's, since the last level crosses with the input itself
    encoder = _encoder()
    shapes = encoder.feature_shapes(side)
    assert [(s.channels, s.height, s.stride) for s in shapes][:2] == [(3, side, 1), (4, side, 1)]
    decoder = models.UNetDecoder(shapes, 5)
    out = decoder(encoder(torch.randn(2, 3, side, side)))
    assert out.shape == (2, 5, side, side)


def test_every_skip_reaches_the_output():
    encoder = _encoder()
    decoder = models.UNetDecoder(encoder.feature_shapes(16), 2)
    features = [f.detach().requires_grad_() for f in encoder(torch.randn(2, 3, 16, 16))]
    decoder(features).square().sum().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features)
    # one block per skip, deep to shallow, widths from the skips' channels (at least 8)
    assert decoder.skips == [2, 1, 0]
    assert [b[0].out_channels for b in decoder.blocks] == [8, 8, 8]
    assert [b[0].in_channels for b in decoder.blocks] == [16 + 8, 8 + 4, 8 + 3]


def test_final_stride_stops_early():
    encoder = _encoder()
    decoder = models.UNetDecoder(encoder.feature_shapes(32), 1, final_stride=2)
    assert decoder(encoder(torch.randn(2, 3, 32, 32))).shape == (2, 1, 16, 16)


def test_a_pooled_vector_decodes_as_a_one_by_one_map():
    decoder = models.UNetDecoder(models.vector_shapes(16, 24), 3, out_size=24)
    assert decoder(torch.randn(4, 16)).shape == (4, 3, 24, 24)


def test_decoder_on_resnet_features():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = models.build_encoder("resnet18", 3)
    decoder = models.UNetDecoder(encoder.feature_shapes(32), 4, max_width=64)
    assert decoder(encoder(torch.randn(2, 3, 32, 32))).shape == (2, 4, 32, 32)
    assert max(b[0].out_channels for b in decoder.blocks) == 64


def test_soft_argmax_follows_grid_sample_coordinates():
    h, w = 5, 8
    image = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    for i, j in [(0, 0), (2, 5), (4, 7)]:
        heat = torch.full((1, 1, h, w), -1e4, dtype=torch.float64)
        heat[0, 0, i, j] = 0.0
        xy = models.SoftArgmax2d()(heat)
        expected = torch.tensor([(2 * j + 1) / w - 1, (2 * i + 1) / h - 1], dtype=torch.float64)
        torch.testing.assert_close(xy[0, 0], expected)
        # grid_sample (align_corners=False) reads that very pixel back at that coordinate
        sampled = F.grid_sample(image, xy.view(1, 1, 1, 2), align_corners=False)
        assert sampled.item() == pytest.approx(image[0, 0, i, j].item())
    # a flat map: the mean of the centres, the middle; two equal peaks: their midpoint
    assert models.SoftArgmax2d()(torch.zeros(2, 3, 4, 6)).abs().max() < 1e-6
    heat = torch.full((1, 1, 4, 4), -1e4)
    heat[0, 0, 0, 0] = heat[0, 0, 2, 2] = 0.0
    torch.testing.assert_close(models.SoftArgmax2d()(heat)[0, 0], torch.tensor([-0.25, -0.25]))  # (-0.75 + 0.25) / 2


def test_keypoint_heads():
    encoder = _encoder()
    head = models.HeatmapKeypoints(encoder.feature_shapes(32), 3, heatmap_stride=4)
    out = head(encoder(torch.randn(2, 3, 32, 32)))
    assert out.shape == (2, 3, 2) and out.abs().max() < 1
    assert head.decoder(encoder(torch.randn(1, 3, 32, 32))).shape == (1, 3, 8, 8)
    reg = models.CoordinateRegressor(16, 3)
    out = reg(torch.randn(5, 16) * 100)
    assert out.shape == (5, 3, 2) and out.abs().max() <= 1


def test_linear_head():
    assert isinstance(models.linear_head(8, 3), nn.Linear)
    head = models.linear_head(8, 3, dropout=0.5)
    assert isinstance(head[0], nn.Dropout) and head[1].out_features == 3


def test_split_stages_cuts_where_the_resolution_drops():
    body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 2))
    stages = models.split_stages(body, 1, size=16)
    assert [[type(m).__name__ for m in s] for s in stages] == [["Conv2d", "ReLU"], ["MaxPool2d", "Conv2d"],
                                                               ["Conv2d", "ReLU"]]
    encoder = models.as_encoder(body, 1)
    assert [(s.channels, s.height, s.stride) for s in encoder.feature_shapes(16)] == [(1, 16, 1), (4, 16, 1),
                                                                                     (8, 8, 2), (8, 4, 4)]
    # small_cnn is such a Sequential
    assert len(models.build_encoder("small_cnn", 1, width=4).stages) == 2


class _ReadsTheHost(nn.Module):
    """A stage the meta device cannot run (it reads a value), with batch-norm statistics."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.BatchNorm2d(5)

    def forward(self, x):
        if x.abs().max().item() > 1e6:
            raise AssertionError("unreachable on zeros")
        return self.bn(self.conv(x))


def test_shapes_of_stages_the_meta_device_cannot_run():
    stage = _ReadsTheHost().train()
    before = {k: v.clone() for k, v in stage.state_dict().items()}
    encoder = models.Encoder([stage], 3)
    assert [(s.channels, s.height, s.width, s.stride) for s in encoder.feature_shapes((12, 20))] == [
        (3, 12, 20, 1), (5, 6, 10, 2)]
    # run on real zeros, in eval mode: no batch-norm statistics moved, the training flag restored
    assert all(torch.equal(v, stage.state_dict()[k]) for k, v in before.items()) and stage.training


@pytest.mark.parametrize(("build", "pattern"), [
    (lambda: models.build_encoder("mlp", 1), r"backbone 'mlp': the backbone gives no feature maps .*Flatten"),
    (lambda: models.UNetDecoder([], 2), r"UNetDecoder: shapes must be a non-empty list of FeatureShape"),
    (lambda: models.UNetDecoder(models.vector_shapes(4, 8), 0), r"UNetDecoder: out_channels must be a positive"),
    (lambda: models.UNetDecoder(models.vector_shapes(4, 8), 2, min_width=16, max_width=8),
     r"max_width must be an integer >= min_width \(16\), got 8"),
    (lambda: models.UNetDecoder(_encoder().feature_shapes(8), 2)([torch.zeros(1, 3, 8, 8)]),
     r"UNetDecoder: built for 4 feature maps, got 1"),
    (lambda: models.linear_head(8, 3, dropout=1.0), r"linear_head: dropout must be in \[0, 1\), got 1.0"),
    (lambda: models.small_convnet(3, widths=[]), r"small_convnet: widths must be a non-empty list"),
    (lambda: models.small_convnet(3, pool="sum"), r"small_convnet: pool must be one of 'avg', 'max', 'avgmax'"),
    (lambda: _encoder().feature_shapes(0), r"feature_shapes: size must be a positive integer"),
    (lambda: _encoder().feature_shapes(3.5), r"or a \(height, width\) pair, got 3.5"),
    (lambda: models.as_encoder(nn.Linear(2, 2), 2), r"cannot read feature maps from a Linear"),
])
def test_bad_input(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()
