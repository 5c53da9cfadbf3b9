"""Colour transforms against torchvision's functional ops (float images, the same formulas) and
the per-pixel arithmetic (uint8, rounded once), and the fused lookup table against the steps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torchvision.transforms.v2.functional as TF

from torchdeck import augment as A

PHOTO = A.synthetic_photo(64, seed=3)
FLOAT = PHOTO.astype(np.float32) / 255.0


def _tv(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _back(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("make, ref", [
    (lambda: A.Brightness((1.3, 1.3)), lambda t: TF.adjust_brightness(t, 1.3)),
    (lambda: A.Brightness((0.6, 0.6)), lambda t: TF.adjust_brightness(t, 0.6)),
    (lambda: A.Contrast((1.4, 1.4)), lambda t: TF.adjust_contrast(t, 1.4)),
    (lambda: A.Contrast((0.5, 0.5)), lambda t: TF.adjust_contrast(t, 0.5)),
    (lambda: A.Gamma((1.7, 1.7)), lambda t: TF.adjust_gamma(t, 1.7)),
    (lambda: A.Saturation((1.6, 1.6)), lambda t: TF.adjust_saturation(t, 1.6)),
    (lambda: A.Saturation((0.3, 0.3)), lambda t: TF.adjust_saturation(t, 0.3)),
    (lambda: A.Hue((0.2, 0.2)), lambda t: TF.adjust_hue(t, 0.2)),
    (lambda: A.Hue((-0.35, -0.35)), lambda t: TF.adjust_hue(t, -0.35)),
    (lambda: A.Grayscale(), lambda t: TF.rgb_to_grayscale(t, num_output_channels=3)),
    (lambda: A.GaussianBlur((1.5, 1.5), kernel_size=9), lambda t: TF.gaussian_blur(t, [9, 9], [1.5, 1.5])),
])
def test_float_colour_ops_match_torchvision(make, ref):
    ours = make()(FLOAT, seed=0)
    theirs = _back(ref(_tv(FLOAT)))
    assert ours.dtype == np.float32 and ours.shape == FLOAT.shape
    # float32 arithmetic in torchvision vs float64 / OpenCV here: 2e-4 is 1/20 of a uint8 level
    np.testing.assert_allclose(ours, theirs, atol=2e-3 if isinstance(make(), A.Hue) else 2e-4)


@pytest.mark.parametrize("factor", [0.55, 1.35])
def test_uint8_brightness_and_contrast_round_once(factor):
    x = PHOTO.astype(np.float64)

    def same(out: np.ndarray, exact: np.ndarray) -> None:
        ref = np.clip(np.rint(exact), 0, 255)
        tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-9  # x.5: float noise decides the rounding
        assert np.array_equal(out[~tie], ref[~tie]) and np.abs(out[tie] - ref[tie]).max(initial=0) <= 1

    same(A.Brightness((factor, factor))(PHOTO, seed=0), x * factor)
    mean = (x @ np.array([0.299, 0.587, 0.114])).mean()
    same(A.Contrast((factor, factor))(PHOTO, seed=0), mean + factor * (x - mean))


@pytest.mark.parametrize("first", [(0.7, 0.7), (1.4, 1.4)])
def test_contrast_after_brightness_uses_the_mean_at_its_step(first):
    # 1.4 clips the highlights, so the mean is not the table applied to the mean: the exact
    # (histogram) path must agree with doing it by hand in float.
    x = PHOTO.astype(np.float64) / 255
    b = np.clip(x * first[0], 0, 1)
    mean = (b @ np.array([0.299, 0.587, 0.114])).mean()
    ref = np.clip(np.rint(np.clip(mean + 1.3 * (b - mean), 0, 1) * 255), 0, 255)
    out = A.Pipeline(A.Brightness(first), A.Contrast((1.3, 1.3)))(PHOTO, seed=0)
    assert np.abs(out.astype(int) - ref).max() <= 1  # rint of float noise at .5 only


def test_normalize_is_torchvisions_to_float_then_normalize_in_one_lookup():
    out = A.Normalize()(PHOTO, seed=0)
    ref = TF.normalize(TF.to_dtype(_tv(PHOTO), torch.float32, scale=True), list(A.IMAGENET_MEAN), list(A.IMAGENET_STD))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 64, 64)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    # grey and RGBA need their own statistics
    grey = PHOTO[:, :, :1]
    g = A.Normalize(mean=0.5, std=0.25)(grey, seed=0)
    torch.testing.assert_close(g, torch.from_numpy((grey.transpose(2, 0, 1) / 255 - 0.5) / 0.25).float())
    with pytest.raises(ValueError, match="Normalize: mean has 3 values but the image has 4 channels"):
        A.Normalize()(np.dstack([PHOTO, PHOTO[:, :, :1]]), seed=0)


def test_fused_colour_group_equals_the_steps_within_rounding():
    """One table for brightness -> gamma -> contrast (rounded once) vs three passes (rounded three
    times): at most 2 levels apart; and the group runs as one stage."""
    pipe = A.Pipeline(A.Brightness(0.3), A.Gamma((0.7, 1.4)), A.Contrast(0.3))
    for seed in range(5):
        fused, steps = pipe(PHOTO, seed=seed), pipe(PHOTO, seed=seed, fuse=False)
        assert np.abs(fused.astype(int) - steps.astype(int)).max() <= 2
    assert [type(s).__name__ for s in pipe.plan((64, 64), seed=0).stages] == ["Values"]


def test_alpha_is_left_alone_and_grey_images_work():
    rgba = np.dstack([PHOTO, np.arange(64 * 64).reshape(64, 64, 1) % 256]).astype(np.uint8)
    pipe = A.Pipeline(A.Brightness((1.5, 1.5)), A.Contrast((0.5, 0.5)), A.Saturation((0.2, 0.2)), A.Hue((0.1, 0.1)),
                      A.GaussianNoise((0.05, 0.05)))
    out = pipe(rgba, seed=0)
    assert np.array_equal(out[:, :, 3], rgba[:, :, 3]) and not np.array_equal(out[:, :, :3], rgba[:, :, :3])
    grey = PHOTO[:, :, 0]
    g = pipe(grey, seed=0)
    assert g.shape == grey.shape and g.dtype == np.uint8


def test_noise_and_erasing():
    noisy = A.GaussianNoise((0.1, 0.1))(FLOAT, seed=1)
    d = noisy - FLOAT
    inner = (FLOAT > 0.35) & (FLOAT < 0.65)  # away from clipping
    assert abs(d[inner].std() - 0.1) < 0.01 and abs(d[inner].mean()) < 0.01
    erase = A.RandomErasing(p=1.0, value=(1, 2, 3))
    out = erase(PHOTO, seed=2)
    (e,) = [s.params for s in erase.plan((64, 64), seed=2).steps]
    region = out[e.top:e.top + e.height, e.left:e.left + e.width]
    assert (region == [1, 2, 3]).all()
    outside = np.ones((64, 64), bool)
    outside[e.top:e.top + e.height, e.left:e.left + e.width] = False
    assert np.array_equal(out[outside], PHOTO[outside])
    # after Normalize, in tensor units; masks untouched
    pipe = A.Pipeline(A.Normalize(), A.RandomErasing(p=1.0, value=0.0))
    res = pipe(image=PHOTO, mask=np.ones((64, 64), np.uint8), seed=2)
    assert (res["image"][:, e.top:e.top + e.height, e.left:e.left + e.width] == 0).all() and res["mask"].all()


def test_colour_after_normalize_is_refused():
    with pytest.raises(ValueError, match="brightness: colour changes need 0..1 values, but Normalize already ran"):
        A.Pipeline(A.Normalize(), A.Brightness(0.2))(PHOTO, seed=0)
    with pytest.raises(ValueError, match="hue: needs 0..1 values"):
        A.Pipeline(A.Normalize(), A.Hue(0.1))(PHOTO, seed=0)


def test_contrast_after_gamma_uses_the_exact_mean_and_tensors_agree():
    x = PHOTO.astype(np.float64) / 255
    g = x ** 1.6  # not a line: the mean comes from histograms
    mean = (g @ np.array([0.299, 0.587, 0.114])).mean()
    ref = np.clip(np.rint(np.clip(mean + 0.7 * (g - mean), 0, 1) * 255), 0, 255)
    pipe = A.Pipeline(A.Gamma((1.6, 1.6)), A.Contrast((0.7, 0.7)))
    out = pipe(PHOTO, seed=0)
    assert np.abs(out.astype(int) - ref).max() <= 1
    # C×H×W tensors take the per-plane path: the same numbers
    t = torch.from_numpy(PHOTO).permute(2, 0, 1)
    assert torch.equal(pipe(t, seed=0), torch.from_numpy(out).permute(2, 0, 1))
    norm = A.Pipeline(A.Brightness((1.3, 1.3)), A.Contrast((1.2, 1.2)), A.Normalize())
    torch.testing.assert_close(norm(t, seed=0), norm(PHOTO, seed=0))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["brightness", "contrast", "gamma"]), st.floats(0.2, 2.5)), min_size=1,
                max_size=5))
def test_any_chain_of_pointwise_steps_is_one_exact_table(chain):
    """Brightness/contrast chains are kept as one clipped line, others as a table; either way the
    result is the step-by-step float arithmetic (each step's mean taken at that step), rounded once."""
    make = {"brightness": lambda f: A.Brightness((f, f)), "contrast": lambda f: A.Contrast((f, f)),
            "gamma": lambda f: A.Gamma((f, f))}
    x = PHOTO.astype(np.float64) / 255
    for name, f in chain:
        if name == "brightness":
            x = np.clip(x * f, 0, 1)
        elif name == "contrast":
            m = (x @ np.array([0.299, 0.587, 0.114])).mean()
            x = np.clip(m + f * (x - m), 0, 1)
        else:
            x = x ** f
    exact = x * 255
    out = A.Pipeline(*(make[n](f) for n, f in chain))(PHOTO, seed=0).astype(np.float64)
    assert np.abs(out - exact).max() <= 0.5 + 1e-6  # rounded once, to the nearest level
