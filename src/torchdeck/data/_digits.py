"""scikit-learn's 8x8 handwritten digits: 1797 images, shipped with scikit-learn (offline)."""

from __future__ import annotations

import numpy as np

from torchdeck.data._base import ImageDataset, register_dataset, seeded_split


@register_dataset("digits")
def digits(valid_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """The digits with a fixed, seeded train/valid split (the split's seed, not the run's)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16; stretch them to the full uint8 range.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    train_idx, valid_idx = seeded_split(len(images), valid_fraction, seed)
    return ImageDataset("digits", images, bunch.target.astype(np.int64), tuple(str(c) for c in range(10)),
                        train_idx, valid_idx)
