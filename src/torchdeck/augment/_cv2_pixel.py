"""OpenCV kernels for the pixel transforms that are not a per-channel lookup: saturation, hue,
grayscale (they mix channels), blur, noise and erasing. Images only; other item types have no
kernel here and pass through."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from torchdeck.augment._base import Options
from torchdeck.augment._items import Image
from torchdeck.augment._kernels import register_kernel
from torchdeck.augment._plan import ItemOp
from torchdeck.augment._rng import torch_generator

__all__ = ["saturation_image", "hue_image", "grayscale_image", "gaussian_blur_image", "gaussian_noise_image",
           "random_erasing_image"]


def _same_layout(item: Image, hwc: np.ndarray) -> Image:
    if item.layout == "hwc":
        return Image(hwc, "hwc")
    return Image(np.ascontiguousarray(hwc.transpose(2, 0, 1)), "chw")


def _with_rgb(item: Image, fn) -> Image:
    """Apply ``fn`` to the RGB part (H×W×3, contiguous); grey images are returned as they are, alpha
    is kept."""
    if item.channels == 1:
        return item
    x = item.hwc()
    rgb = fn(np.ascontiguousarray(x[:, :, :3]))
    out = rgb if item.channels == 3 else np.concatenate([rgb, x[:, :, 3:]], axis=2)
    return _same_layout(item, out)


def _clip(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.uint8 else np.clip(x, 0.0, 1.0, out=x)


@register_kernel("saturation", Image)
def saturation_image(item: Image, stage: ItemOp, options: Options) -> Image:
    f = stage.params.factor

    def blend(rgb: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        return _clip(cv2.addWeighted(rgb, f, grey, 1.0 - f, 0.0))
    return _with_rgb(item, blend)


@register_kernel("hue", Image)
def hue_image(item: Image, stage: ItemOp, options: Options) -> Image:
    shift = stage.params.shift

    def rotate(rgb: np.ndarray) -> np.ndarray:
        if rgb.dtype == np.uint8:  # hue as 0..255 ("FULL"): the turn is one lookup on that plane
            hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
            table = ((np.arange(256) + round(shift * 256)) % 256).astype(np.uint8)
            hsv[:, :, 0] = cv2.LUT(hsv[:, :, 0], table)
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # float: hue in degrees
        hsv[:, :, 0] = (hsv[:, :, 0] + shift * 360.0) % 360.0
        return _clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
    return _with_rgb(item, rotate)


@register_kernel("grayscale", Image)
def grayscale_image(item: Image, stage: ItemOp, options: Options) -> Image:
    return _with_rgb(item, lambda rgb: cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB))


@register_kernel("gaussian_blur", Image)
def gaussian_blur_image(item: Image, stage: ItemOp, options: Options) -> Image:
    sigma = stage.params.sigma
    k = stage.transform.kernel_for(sigma)
    blur = lambda a: cv2.GaussianBlur(a, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)  # noqa: E731
    if item.layout == "chw":
        return Image(np.stack([blur(p) for p in item.data]), "chw")
    out = blur(item.data)
    return Image(out if out.ndim == 3 else out[:, :, None], "hwc")


@register_kernel("gaussian_noise", Image)
def gaussian_noise_image(item: Image, stage: ItemOp, options: Options) -> Image:
    p = stage.params
    x = item.hwc()
    cc = 1 if item.channels == 1 else 3
    # H×W×C order from torch's CPU generator: the batched backend draws the very same numbers.
    noise = torch.randn((*x.shape[:2], cc), generator=torch_generator(p.seed)).numpy() * np.float32(p.std)
    out = x.copy()
    if x.dtype == np.uint8:
        out[:, :, :cc] = np.clip(np.rint(x[:, :, :cc] + noise * 255.0), 0, 255)
    else:
        out[:, :, :cc] = np.clip(x[:, :, :cc] + noise, 0.0, 1.0)
    return _same_layout(item, out)


@register_kernel("random_erasing", Image)
def random_erasing_image(item: Image, stage: ItemOp, options: Options) -> Image:
    p, value = stage.params, stage.transform.value
    out = item.data.copy()
    rows, cols = slice(p.top, p.top + p.height), slice(p.left, p.left + p.width)
    region = out[:, rows, cols] if item.layout == "chw" else out[rows, cols]
    if value == "random":
        # Drawn as height×width×channels whatever the layout (the batched backend draws the same).
        g, shape = torch_generator(p.seed), (p.height, p.width, item.channels)
        r = (torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) if out.dtype == np.uint8
             else torch.randn(shape, generator=g)).numpy()
        region[...] = r.transpose(2, 0, 1) if item.layout == "chw" else r
    else:
        v = np.asarray(value, dtype=np.float64)
        if v.size not in (1, item.channels):
            raise ValueError(f"RandomErasing: value has {v.size} numbers but the image has {item.channels} channels")
        region[...] = v[:, None, None] if (item.layout == "chw" and v.size > 1) else v
    return Image(out, item.layout)
