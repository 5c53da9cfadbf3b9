"""The batched ItemOp kernels (blur, noise, erasing, hue, saturation, grayscale) against the
OpenCV per-sample path on the same plans.

Float32 images: the two paths compute the same formulas in float, and noise / random erasing
draw from the same torch generator (on the CPU), so they agree to float rounding (measured
<= 6.7e-6 here). uint8 images: the OpenCV path rounds to whole levels (blur in fixed point, hue
through 8-bit HSV), the batched path stays float; the bounds below are what was measured, with
a little room."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from torchdeck import augment as A

B, SIDE = 6, 48
SEED = 3  # its plans run each of blur, noise and erasing on some samples of "mixed", not all
LEVEL = 1.0 / 255
FLOAT_TOL = 5e-5

PIPES = {
    # name: (pipeline, bound on uint8 images; measured in brackets)
    "blur": (A.Pipeline(A.GaussianBlur((0.3, 3.0))), LEVEL + 1e-4),                       # 0.0038
    "blur_fixed_k": (A.Pipeline(A.GaussianBlur((0.5, 1.5), kernel_size=5)), LEVEL + 1e-4),  # 0.0030
    "noise": (A.Pipeline(A.GaussianNoise((0.02, 0.1))), 0.5 * LEVEL + 1e-4),               # 0.0020
    "erase": (A.Pipeline(A.RandomErasing(p=0.7, value=(10, 200, 30))), 1e-6),              # 0
    "erase_random": (A.Pipeline(A.RandomErasing(p=0.7, value="random")), 1e-6),            # 0
    # OpenCV's 8-bit HSV quantises the hue and the turn to 1/256 of the circle: up to 2 × 1/512 of a
    # turn, times 6 × 255 levels per turn at full saturation, plus the rounding of S and V.
    "hue": (A.Pipeline(A.Hue(0.5)), 8 * LEVEL),                                            # 0.0256 (6.5 levels)
    "saturation": (A.Pipeline(A.Saturation((0.0, 2.0))), LEVEL + 1e-4),                    # 0.0036
    "grayscale": (A.Pipeline(A.Grayscale(p=0.5)), 0.5 * LEVEL + 1e-4),                     # 0.0020
    "mixed": (A.Pipeline(A.Maybe(A.Rotate(20)), A.Maybe(A.GaussianBlur()), A.RandomResizedCrop(32),
                         A.Brightness(0.2), A.Maybe(A.GaussianNoise((0.05, 0.05))), A.Saturation(0.3),
                         A.RandomErasing(p=0.5, value="random")), 3 * LEVEL),            # 0.0078
    "one_of": (A.Pipeline(A.OneOf(A.GaussianBlur(), A.Hue(0.2), A.Rotate(10)), A.Resize(32)), 8 * LEVEL),  # 0.0172
}


def _batch(dtype=np.uint8):
    img = A.synthetic_photo(SIDE)
    images = np.stack([np.roll(img, 7 * i, axis=1) for i in range(B)])
    masks = (images[..., 0] // 64).astype(np.int64)
    return (images if dtype == np.uint8 else (images / 255.0).astype(np.float32)), masks


def _cpu(pipe, images, masks, seeds):
    outs = [pipe(image=images[i], mask=masks[i], seed=s) for i, s in enumerate(seeds)]
    x = np.stack([np.asarray(o["image"]) for o in outs]).transpose(0, 3, 1, 2)
    return (x / 255.0 if x.dtype == np.uint8 else x), np.stack([o["mask"] for o in outs])


def _compare(name, dtype, device="cpu"):
    pipe = PIPES[name][0]
    images, masks = _batch(dtype)
    x, m = A.apply_batch(pipe, torch.from_numpy(images).permute(0, 3, 1, 2).to(device),
                         torch.from_numpy(masks).to(device), seed=SEED)
    want_x, want_m = _cpu(pipe, images, masks, A.sample_seeds(SEED, B))
    assert np.array_equal(m.cpu().numpy(), want_m) or name in ("mixed", "one_of")
    return np.abs(x.cpu().numpy() - want_x).max()


@pytest.mark.parametrize("name", list(PIPES))
def test_float_batches_agree_with_the_opencv_path(name):
    assert _compare(name, np.float32) <= FLOAT_TOL


@pytest.mark.parametrize("name", list(PIPES))
def test_uint8_batches_agree_within_the_opencv_rounding(name):
    assert _compare(name, np.uint8) <= PIPES[name][1]


def test_the_batch_really_is_mixed():
    """The plans above do differ per sample (else the agreement would prove less)."""
    plans = [PIPES["mixed"][0].plan((SIDE, SIDE), seed=s) for s in A.sample_seeds(SEED, B)]
    ran = {name: [any(s.transform.name == name and s.applied and s.stage is not None for s in p.steps)
                  for p in plans] for name in ("gaussian_blur", "gaussian_noise", "random_erasing")}
    assert all(0 < sum(v) < B for v in ran.values()), ran


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["blur", "erase", "hue", "saturation", "grayscale"])
def test_deterministic_ops_agree_on_cuda(name):
    assert _compare(name, np.float32, "cuda") <= FLOAT_TOL


def _noise_residual(device):
    pipe = A.GaussianNoise((0.1, 0.1))
    flat = torch.full((8, 3, 64, 64), 0.5, device=device)
    x, _ = A.apply_batch(pipe, flat, seed=4)
    return (x - flat).cpu().numpy()


def test_noise_has_the_asked_spread_and_replays():
    d = _noise_residual("cpu")
    # 98304 draws of N(0, 0.1), none clipped at 0.5 +- 5 sigma: std within 1 % (the standard error
    # is 0.2 %), mean within 5 standard errors.
    assert abs(d.std() - 0.1) < 1e-3 and abs(d.mean()) < 5 * 0.1 / np.sqrt(d.size)
    assert np.array_equal(d, _noise_residual("cpu"))
    assert not np.array_equal(d[0], d[1])  # each sample its own draw


@pytest.mark.gpu
def test_noise_on_cuda_has_the_asked_spread():
    d = _noise_residual("cuda")  # CUDA's generator: other numbers, same distribution
    assert abs(d.std() - 0.1) < 1e-3 and abs(d.mean()) < 5 * 0.1 / np.sqrt(d.size)


def test_erasing_after_normalize_fills_in_tensor_units():
    pipe = A.Pipeline(A.Normalize(), A.RandomErasing(p=1.0, value=(1.0, -2.0, 3.0)))
    images, _ = _batch()
    x, _ = A.apply_batch(pipe, torch.from_numpy(images).permute(0, 3, 1, 2), seed=3)
    for i, s in enumerate(A.sample_seeds(3, B)):
        (e,) = [st.params for st in pipe.plan((SIDE, SIDE), seed=s).steps if st.transform.name == "random_erasing"]
        region = x[i, :, e.top:e.top + e.height, e.left:e.left + e.width]
        assert torch.equal(region, torch.tensor([1.0, -2.0, 3.0]).view(3, 1, 1).expand_as(region))


def test_float_input_is_not_written_into():
    images = torch.from_numpy(_batch(np.float32)[0]).permute(0, 3, 1, 2).contiguous()
    before = images.clone()
    A.apply_batch(A.Pipeline(A.GaussianBlur(), A.RandomErasing(p=1.0), A.Hue(0.2)), images, seed=0)
    assert torch.equal(images, before)


def test_grey_and_rgba_batches():
    """Colour-mixing ops leave grey images and alpha alone, as on the CPU path."""
    images, _ = _batch(np.float32)
    rgba = np.concatenate([images, np.full(images.shape[:3] + (1,), 0.25, np.float32)], axis=3)
    pipe = A.Pipeline(A.Hue(0.3), A.Saturation(0.5), A.GaussianNoise((0.05, 0.05)))
    x, _ = A.apply_batch(pipe, torch.from_numpy(rgba).permute(0, 3, 1, 2), seed=1)
    want, _ = _cpu(pipe, rgba, np.zeros(rgba.shape[:3], np.int64), A.sample_seeds(1, B))
    assert np.abs(x.numpy() - want).max() <= FLOAT_TOL and (x[:, 3] == 0.25).all()
    grey = torch.from_numpy(images[..., :1]).permute(0, 3, 1, 2)
    g, _ = A.apply_batch(A.Pipeline(A.Hue(0.3), A.Saturation(0.5), A.Grayscale()), grey, seed=1)
    assert torch.equal(g, grey)


@A.register_transform
@dataclasses.dataclass(frozen=True)
class _Posterize(A.PixelOp):
    """A PixelOp with a CPU kernel only (for the refusal below)."""

    name = "test_posterize_unbatched"


def test_an_op_without_a_batch_kernel_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"apply_batch: test_posterize_unbatched is not batched yet \(batched: "
                                         r".*gaussian_blur"):
        A.apply_batch(A.Pipeline(_Posterize()), torch.zeros(2, 3, 16, 16, dtype=torch.uint8), seed=0)


def test_frames_that_differ_around_a_per_sample_op_are_refused():
    # Scale draws a size per sample and the blur between keeps it from fusing with the resize.
    with pytest.raises(ValueError, match=r"come out in different sizes .*a batch is one tensor"):
        A.apply_batch(A.Pipeline(A.Scale((0.5, 2.0)), A.GaussianBlur(), A.Resize(16)),
                      torch.zeros(4, 3, 32, 32, dtype=torch.uint8), seed=0)


def test_erasing_value_with_the_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match="RandomErasing: value has 2 numbers but the image has 3 channels"):
        A.apply_batch(A.RandomErasing(p=1.0, value=(1, 2)), torch.zeros(2, 3, 16, 16), seed=0)
