"""The batched torch backend against the OpenCV path on the same plans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdeck import augment as A

B, SIDE = 6, 48
# Measured on these plans: geometry within 0.00197 (the OpenCV path's rounding to uint8, half a
# level), colour within 0.0064 (that rounding, plus float values kept between stages and the
# table a gamma goes through). The bounds leave a little room, no more.
HALF_LEVEL = 0.5 / 255 + 1e-4
PIPES = {
    "affine+crop": (A.Pipeline(A.FlipX(), A.Rotate(20), A.Zoom((0.9, 1.2)), A.RandomResizedCrop(32)), HALF_LEVEL),
    "perspective": (A.Pipeline(A.Perspective(), A.FlipY()), HALF_LEVEL),
    "fill": (A.Pipeline(A.Rotate(30), fill=100, mask_fill=9), HALF_LEVEL),
    "colour": (A.Pipeline(A.Maybe(A.Rotate(15)), A.Brightness(0.2), A.Contrast(0.3), A.Gamma()), 2.0 / 255),
}


def _batch():
    img = A.synthetic_photo(SIDE)
    images = np.stack([np.roll(img, 7 * i, axis=1) for i in range(B)])
    masks = (images[..., 0] // 64).astype(np.int64)  # 4 labels following the picture
    return images, masks


def _cpu(pipe, images, masks, seeds):
    outs = [pipe(image=images[i], mask=masks[i], seed=s) for i, s in enumerate(seeds)]
    x = np.stack([np.asarray(o["image"]) for o in outs])
    x = x.transpose(0, 3, 1, 2) / 255.0 if x.dtype == np.uint8 else x
    return x, np.stack([o["mask"] for o in outs])


def _agreement(name, device):
    pipe, tol = PIPES[name]
    images, masks = _batch()
    seeds = A.sample_seeds(11, B)
    x, m = A.apply_batch(pipe, torch.from_numpy(images).permute(0, 3, 1, 2).to(device),
                         torch.from_numpy(masks).to(device), seed=11)
    want_x, want_m = _cpu(pipe, images, masks, seeds)
    assert x.device.type == torch.device(device).type and m.dtype == torch.int64
    assert np.abs(x.cpu().numpy() - want_x).max() <= tol
    assert (m.cpu().numpy() == want_m).mean() >= 0.999  # nearest: only exact ties could differ


@pytest.mark.parametrize("name", list(PIPES))
def test_batch_agrees_with_the_opencv_path_on_the_same_plans(name):
    _agreement(name, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(PIPES))
def test_batch_agrees_on_cuda(name):
    _agreement(name, "cuda")


def test_normalize_at_the_end_gives_the_same_tensor():
    pipe = A.Pipeline(A.Rotate(15), A.Brightness(0.2), A.Normalize())
    images, masks = _batch()
    x, _ = A.apply_batch(pipe, torch.from_numpy(images).permute(0, 3, 1, 2), seed=2)
    want, _ = _cpu(pipe, images, masks, A.sample_seeds(2, B))
    # Normalised units: the warp's rounding to uint8 (half a level), scaled by brightness (up to
    # 1.2x) and by 1 / std. Measured 0.0103 here.
    assert np.abs(x.numpy() - want).max() <= 1.2 * HALF_LEVEL / min(A.IMAGENET_STD)


def test_seed_replays_and_plans_can_be_given():
    pipe = PIPES["affine+crop"][0]
    images = torch.from_numpy(_batch()[0]).permute(0, 3, 1, 2)
    a, _ = A.apply_batch(pipe, images, seed=5)
    b, _ = A.apply_batch(pipe, images, seed=5)
    c, _ = A.apply_batch(pipe, images, seed=6)
    plans = [pipe.plan((SIDE, SIDE), seed=s) for s in A.sample_seeds(5, B)]
    d, _ = A.apply_batch(pipe, images, plans=plans)
    assert torch.equal(a, b) and torch.equal(a, d) and not torch.equal(a, c)


def test_bad_batches_are_refused():
    # (an op without a batch kernel: test_torch_pixel.py)
    images = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"come out in different sizes .*fixed-size"):
        A.apply_batch(A.Scale((0.5, 2.0)), images, seed=0)
    with pytest.raises(ValueError, match=r"masks must be a B×H×W tensor of shape \(2, 16, 16\)"):
        A.apply_batch(A.FlipX(), images, torch.zeros(2, 8, 8), seed=0)
