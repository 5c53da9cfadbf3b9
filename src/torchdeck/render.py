"""Pictures for people: a captioned grid of images as an RGB array or PNG bytes."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["grid_image", "to_png"]


def grid_image(images: np.ndarray, captions: list[str], *, columns: int = 8, scale: int = 4,
               caption_height: int = 14, pad: int = 4) -> np.ndarray:
    """Tile (N, H, W, C) uint8 images, each enlarged ``scale`` times (nearest neighbour, so
    pixels stay sharp) with its caption underneath. Returns (H', W', 3) uint8."""
    from PIL import Image, ImageDraw

    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"grid_image: images must be (N, H, W, C) uint8, got {images.shape} {images.dtype}")
    if len(captions) != len(images):
        raise ValueError(f"grid_image: {len(images)} images but {len(captions)} captions")
    n, h, w, c = images.shape
    if c == 1:
        images = np.repeat(images, 3, axis=-1)
    images = images[..., :3]
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    cell_w, cell_h = w * scale + pad, h * scale + caption_height + pad
    canvas = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, col = divmod(i, cols)
        x0, y0 = pad + col * cell_w, pad + r * cell_h
        tile = Image.fromarray(images[i]).resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(tile, (x0, y0))
        draw.text((x0 + 2, y0 + h * scale + 1), captions[i], fill=(20, 20, 20))
    return np.asarray(canvas)


def to_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
