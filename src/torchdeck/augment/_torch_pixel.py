"""Batched torch kernels for the ItemOp stages (blur, noise, erasing, hue, saturation, grayscale):
each takes the n×C×H×W float batch of the samples that run the op in this round, with one
``ItemOp`` (its sampled parameters) per sample, and returns a new tensor (never writes into x).

Same formulas as the OpenCV kernels (``_cv2_pixel``), on float values throughout: blur is one
separable depthwise convolution with a per-sample Gaussian zero-padded to the round's widest
(OpenCV's BORDER_REFLECT_101 by index, so any kernel size fits any image); noise and random
erasing draw from ``torch_generator(plan seed)`` exactly as the CPU path does, so on the CPU the
numbers are identical (CUDA's generator gives other numbers of the same distribution); hue goes
RGB -> HSV -> RGB in float (the CPU path's uint8 images use OpenCV's 8-bit HSV, a few levels off).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F

from torchdeck.augment._base import Options
from torchdeck.augment._kernels import register_batch_kernel
from torchdeck.augment._plan import ItemOp
from torchdeck.augment._rng import torch_generator
from torchdeck.augment._values import LUMA, colour_channels

__all__ = ["BatchContext", "gaussian_blur_batch", "gaussian_noise_batch", "random_erasing_batch", "hue_batch",
           "saturation_batch", "grayscale_batch"]


@dataclasses.dataclass(frozen=True)
class BatchContext:
    """What a batch kernel needs besides the pixels: the images' units as they came in (the CPU
    path's uint8 images take values in 0..255 and draw random erasing as integers) and whether
    Normalize already ran (then values are used as they are)."""

    options: Options
    uint8: bool
    normalized: bool

    @property
    def unit(self) -> float:
        return 1.0 if self.normalized or not self.uint8 else 255.0


def _column(values: Sequence[float], x: torch.Tensor) -> torch.Tensor:
    """One number per sample as an n×1×1×1 tensor for broadcasting."""
    return torch.tensor(values, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)


def _on_colour(x: torch.Tensor, fn) -> torch.Tensor:
    """``fn`` on the RGB channels (n×3×H×W); grey batches pass through, alpha is kept."""
    c = x.shape[1]
    if colour_channels(c) == 1:
        return x
    rgb = fn(x[:, :3])
    return rgb if c == 3 else torch.cat([rgb, x[:, 3:]], dim=1)


def _grey(rgb: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(dim=1, keepdim=True)


# --- blur -----------------------------------------------------------------------------------------
def _reflect101(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a row padded by ``radius`` on each side as OpenCV's BORDER_REFLECT_101 (and
    torch's "reflect") pads it, for any radius: reflection is periodic with period 2(n-1)."""
    i = torch.arange(-radius, n + radius, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def _gaussian_taps(sigmas: Sequence[float], sizes: Sequence[int], radius: int, like: torch.Tensor) -> torch.Tensor:
    """n×(2·radius+1): sample i's normalised Gaussian over its own kernel size, zero beyond it
    (so one convolution of the widest size serves every sample). cv2.getGaussianKernel's formula."""
    offs = torch.arange(-radius, radius + 1, dtype=torch.float64, device=like.device)
    sig = torch.tensor(sigmas, dtype=torch.float64, device=like.device)[:, None]
    half = torch.tensor([(k - 1) // 2 for k in sizes], dtype=torch.float64, device=like.device)[:, None]
    w = torch.exp(-offs**2 / (2.0 * sig**2)) * (offs.abs() <= half)
    return (w / w.sum(dim=1, keepdim=True)).to(like.dtype)


@register_batch_kernel("gaussian_blur")
def gaussian_blur_batch(x: torch.Tensor, stages: Sequence[ItemOp], ctx: BatchContext) -> torch.Tensor:
    n, c, h, w = x.shape
    sigmas = [st.params.sigma for st in stages]
    sizes = [st.transform.kernel_for(s) for st, s in zip(stages, sigmas)]
    r = (max(sizes) - 1) // 2
    taps = _gaussian_taps(sigmas, sizes, r, x).repeat_interleave(c, dim=0)  # (n·c)×K, per sample and channel
    planes = x.reshape(1, n * c, h, w)
    planes = planes.index_select(3, _reflect101(w, r, x.device))
    planes = F.conv2d(planes, taps.view(n * c, 1, 1, -1), groups=n * c)
    planes = planes.index_select(2, _reflect101(h, r, x.device))
    planes = F.conv2d(planes, taps.view(n * c, 1, -1, 1), groups=n * c)
    return planes.view(n, c, h, w)


# --- noise and erasing ------------------------------------------------------------------------------
@register_batch_kernel("gaussian_noise")
def gaussian_noise_batch(x: torch.Tensor, stages: Sequence[ItemOp], ctx: BatchContext) -> torch.Tensor:
    n, c, h, w = x.shape
    cc = colour_channels(c)
    # H×W×C per sample, from each plan's own seed: the CPU path's very numbers (on the CPU).
    noise = torch.stack([torch.randn((h, w, cc), generator=torch_generator(st.params.seed, x.device),
                                     device=x.device, dtype=torch.float32) for st in stages])
    noise = noise.permute(0, 3, 1, 2).to(x.dtype) * _column([st.params.std for st in stages], x)
    noisy = (x[:, :cc] + noise).clamp_(0.0, 1.0)
    return noisy if cc == c else torch.cat([noisy, x[:, cc:]], dim=1)


def _erase_value(value: object, c: int, ctx: BatchContext, like: torch.Tensor) -> torch.Tensor:
    v = torch.tensor(value if isinstance(value, tuple) else (value,), dtype=like.dtype, device=like.device)
    if v.numel() not in (1, c):
        raise ValueError(f"RandomErasing: value has {v.numel()} numbers but the image has {c} channels")
    return (v / ctx.unit).expand(c)


@register_batch_kernel("random_erasing")
def random_erasing_batch(x: torch.Tensor, stages: Sequence[ItemOp], ctx: BatchContext) -> torch.Tensor:
    n, c, h, w = x.shape
    value = stages[0].transform.value
    if value != "random" and all(st.transform.value == value for st in stages):
        # One masked fill for the whole round: each sample's rectangle from its parameters.
        ps = [st.params for st in stages]
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)

        def col(name: str) -> torch.Tensor:
            return torch.tensor([getattr(p, name) for p in ps], device=x.device).view(n, 1, 1)
        top, left, eh, ew = col("top"), col("left"), col("height"), col("width")
        inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
        return torch.where(inside[:, None], _erase_value(value, c, ctx, x).view(1, c, 1, 1), x)
    out = x.clone()
    for i, st in enumerate(stages):  # random values (or mixed settings): a draw per sample
        p, v = st.params, st.transform.value
        region = out[i, :, p.top:p.top + p.height, p.left:p.left + p.width]
        if v != "random":
            region[...] = _erase_value(v, c, ctx, x).view(c, 1, 1)
            continue
        g, shape = torch_generator(p.seed, x.device), (p.height, p.width, c)
        if ctx.uint8 and not ctx.normalized:  # as the CPU path on uint8: whole levels 0..255
            r = torch.randint(0, 256, shape, generator=g, device=x.device, dtype=torch.uint8).to(x.dtype) / 255.0
        else:
            r = torch.randn(shape, generator=g, device=x.device, dtype=torch.float32).to(x.dtype)
        region[...] = r.permute(2, 0, 1)
    return out


# --- colour that mixes channels -----------------------------------------------------------------------
@register_batch_kernel("saturation")
def saturation_batch(x: torch.Tensor, stages: Sequence[ItemOp], ctx: BatchContext) -> torch.Tensor:
    f = _column([st.params.factor for st in stages], x)
    return _on_colour(x, lambda rgb: (rgb * f + _grey(rgb) * (1.0 - f)).clamp_(0.0, 1.0))


@register_batch_kernel("grayscale")
def grayscale_batch(x: torch.Tensor, stages: Sequence[ItemOp], ctx: BatchContext) -> torch.Tensor:
    return _on_colour(x, lambda rgb: _grey(rgb).expand(-1, 3, -1, -1))


def _rotate_hue(rgb: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """RGB (0..1) -> HSV, hue turned by ``shift`` (fractions of the circle, n×1×1×1), -> RGB."""
    r, g, b = rgb.unbind(dim=1)
    v, top = rgb.max(dim=1)
    delta = v - rgb.min(dim=1).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(top == 0, ((g - b) / safe).remainder(6.0),
                    torch.where(top == 1, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    s = torch.where(v > 0, delta / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    h = (h / 6.0 + shift[:, 0]).remainder(1.0) * 6.0
    # The standard sector formula, written without a branch: channel k = v - v·s·clamp(...)
    # with k's offset on the circle (red 5, green 3, blue 1; torchvision's and OpenCV's result).
    out = []
    for offset in (5.0, 3.0, 1.0):
        k = (offset + h).remainder(6.0)
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=1).clamp_(0.0, 1.0)


@register_batch_kernel("hue")
def hue_batch(x: torch.Tensor, stages: Sequence[ItemOp], ctx: BatchContext) -> torch.Tensor:
    shift = _column([st.params.shift for st in stages], x)
    return _on_colour(x, lambda rgb: _rotate_hue(rgb, shift))

