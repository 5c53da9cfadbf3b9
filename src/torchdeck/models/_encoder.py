"""Backbones as stages of feature maps: what dense heads (a U-Net decoder, keypoint heatmaps) read.

An :class:`Encoder` runs its stages in order and returns every feature map, the input first,
so a decoder can cross with each resolution down to the pixels themselves. A
:class:`PooledEncoder` has the same stages (the same parameter names, so weights move
between the two) and returns the last map pooled to a vector: the classification backbone.

The feature shapes are never written down per architecture: :meth:`Encoder.feature_shapes`
runs the stages on a meta-device input (no memory, no arithmetic), and
:func:`split_stages` cuts any ``nn.Sequential`` body into stages where the resolution drops,
found the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from torchdeck.models._base import BACKBONES, WeightsReport

__all__ = ["FeatureShape", "Encoder", "PooledEncoder", "POOLS", "split_stages", "as_encoder", "build_encoder",
           "PROBE_SIZE"]

PROBE_SIZE = 224  # side of the probe input when none is asked for: every zoo model accepts it


@dataclasses.dataclass(frozen=True)
class FeatureShape:
    """One feature map an encoder gives for an input of a given size.

    ``stride`` is the input side over the map's side (1 for the input itself, 32 for a
    ResNet's last stage), rounded to an integer.
    """

    channels: int
    height: int
    width: int
    stride: int


# name -> fn(feature map (N, C, H, W)) -> (N, C') and C' as a function of C
POOLS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[int], int]]] = {
    "avg": (lambda f: f.mean(dim=(2, 3)), lambda c: c),
    "max": (lambda f: f.amax(dim=(2, 3)), lambda c: c),
    # fastai's concat pooling: the average says how much, the maximum says whether at all
    "avgmax": (lambda f: torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1), lambda c: 2 * c),
}


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode inside (no batch-norm statistics updated, no dropout); each flag restored after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _on_meta(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with every parameter and buffer swapped for a meta tensor of its shape."""
    state = {name: torch.empty_like(t, device="meta")
             for name, t in itertools.chain(module.named_parameters(), module.named_buffers())}
    return torch.func.functional_call(module, state, (x,), tie_weights=False, strict=False)


def _trace(modules: Sequence[nn.Module], in_channels: int, size: tuple[int, int],
           until: Callable[[nn.Module, torch.Size], bool] | None = None) -> list[torch.Size]:
    """Output shape of each module when they run in a chain from a (2, C, H, W) input,
    stopping after the first module for which ``until(module, its output shape)`` holds.

    On the meta device first (free at any size); a module that cannot run there (an op
    with no meta kernel, a host read of a value) is run on real zeros instead, in eval mode.
    """
    def run(device: str) -> list[torch.Size]:
        x = torch.zeros(2, in_channels, *size, device=device)
        shapes = []
        for m in modules:
            x = _on_meta(m, x) if device == "meta" else m(x)
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"{type(m).__name__} returns a {type(x).__name__}, not a tensor; an encoder's "
                                 "stages must each map a tensor to a tensor")
            shapes.append(x.shape)
            if until is not None and until(m, x.shape):
                break
        return shapes

    chain = nn.ModuleList(modules)
    with _eval_mode(chain), torch.no_grad():
        try:
            return run("meta")
        except (NotImplementedError, RuntimeError):
            # where the weights are (a model already moved to a GPU runs there)
            weights = next(itertools.chain(chain.parameters(), chain.buffers()), None)
            return run("cpu" if weights is None else str(weights.device))


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in pair):
        raise ValueError(f"feature_shapes: size must be a positive integer or a (height, width) pair, got {size!r}")
    return pair  # type: ignore[return-value]


class Encoder(nn.Module):
    """``x -> [x, f_1, ..., f_n]``: stage ``k`` maps ``f_{k-1}`` to ``f_k`` (``f_0 = x``).

    x: (N, C, H, W); f_k: (N, C_k, H / s_k, W / s_k) with non-decreasing strides s_k.

    Args:
        stages: the stages, in order.
        in_channels: channels of the input.
        native_size: the one input side the stages accept (a ViT's position embedding fixes
            it), or None for any.
    """

    def __init__(self, stages: Sequence[nn.Module], in_channels: int, native_size: int | None = None) -> None:
        super().__init__()
        if len(stages) == 0:
            raise ValueError("Encoder: stages must hold at least one module, got none")
        self.stages = nn.ModuleList(stages)
        self.in_channels = in_channels
        self.native_size = native_size
        self.weights_report: WeightsReport | None = None  # set by a builder that loaded weights

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        features = [x]
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def feature_shapes(self, size: int | Sequence[int] | None = None) -> list[FeatureShape]:
        """Shapes of ``forward``'s maps for a ``size`` input (default: the native size, else
        224), the input first; computed by a dry run, not looked up."""
        h, w = _size(size if size is not None else (self.native_size or PROBE_SIZE))
        shapes = [FeatureShape(self.in_channels, h, w, 1)]
        for s in _trace(list(self.stages), self.in_channels, (h, w)):
            if len(s) != 4:
                raise ValueError(f"Encoder: a stage gives a tensor of shape {tuple(s)}; stages must give feature "
                                 "maps (N, C, H, W)")
            shapes.append(FeatureShape(int(s[1]), int(s[2]), int(s[3]), max(1, round(h / int(s[2])))))
        return shapes


class PooledEncoder(Encoder):
    """The same stages, the last map pooled: (N, C, H, W) -> (N, out_features).

    ``pool``: ``"avg"`` (global average), ``"max"`` or ``"avgmax"`` (both, concatenated).
    """

    def __init__(self, stages: Sequence[nn.Module], in_channels: int, out_channels: int, *, pool: str = "avg",
                 native_size: int | None = None) -> None:
        super().__init__(stages, in_channels, native_size)
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(map(repr, POOLS))}, got {pool!r}")
        self.pool = pool
        self.out_features = POOLS[pool][1](out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for stage in self.stages:
            x = stage(x)
        return POOLS[self.pool][0](x)

    def encoder(self) -> Encoder:
        """An :class:`Encoder` over these very stages (shared, not copied)."""
        enc = Encoder(list(self.stages), self.in_channels, self.native_size)
        enc.weights_report = self.weights_report
        return enc


def _is_global_pool(m: nn.Module) -> bool:
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    return isinstance(m, pools) and m.output_size in (1, (1, 1))


def split_stages(body: nn.Sequential, in_channels: int, *, size: int = PROBE_SIZE) -> list[nn.Sequential]:
    """Cut a sequential body into stages that each end where the next child lowers the
    resolution; a tail that pools globally or flattens (the classifier's side) is dropped.

    The children's output sizes come from a dry run on a ``size`` input. Raises ValueError
    when the body gives no feature map at all (an MLP).
    """
    children = list(body.children())

    def reads_vectors_from_here(child: nn.Module, shape: torch.Size) -> bool:
        return len(shape) != 4 or _is_global_pool(child)

    shapes = _trace(children, in_channels, (size, size), until=reads_vectors_from_here)
    stages: list[list[nn.Module]] = []
    current: list[nn.Module] = []
    height = size
    for child, shape in zip(children, shapes):
        if reads_vectors_from_here(child, shape):
            break
        if shape[2] < height and current:
            stages.append(current)
            current = []
        current.append(child)
        height = shape[2]
    if current:
        stages.append(current)
    if not stages:
        raise ValueError(f"the backbone gives no feature maps (its first layer, {type(children[0]).__name__}, "
                         "already leaves (N, C, H, W)); dense tasks need a convolutional backbone such as "
                         "small_convnet, small_cnn or resnet18" if children else "the backbone is empty")
    return [nn.Sequential(*s) for s in stages]


def as_encoder(module: nn.Module, in_channels: int) -> Encoder:
    """The feature-map view of a backbone: an :class:`Encoder` as is, a :class:`PooledEncoder`'s
    stages, or a plain ``nn.Sequential`` cut by :func:`split_stages`."""
    if isinstance(module, PooledEncoder):
        return module.encoder()
    if isinstance(module, Encoder):
        return module
    if isinstance(module, nn.Sequential):
        return Encoder(split_stages(module, in_channels), in_channels)
    raise ValueError(f"cannot read feature maps from a {type(module).__name__}: a backbone for a dense task must be "
                     "an Encoder, a PooledEncoder or an nn.Sequential")


def build_encoder(name: str, in_channels: int, **options: object) -> Encoder:
    """The registered backbone ``name`` as an :class:`Encoder` (all its feature maps)."""
    module, _ = BACKBONES.lookup(name)(in_channels, **options)
    try:
        return as_encoder(module, in_channels)
    except ValueError as e:
        raise ValueError(f"backbone {name!r}: {e}") from None
