"""Items in and out: numpy, torch and tv_tensors come back as what they were, moved alike; bad
input is refused with the item's name and the shape/dtype seen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from torchdeck import augment as A

IMG = A.synthetic_photo(48, seed=1)
MASK = (IMG[:, :, 0] > 120).astype(np.uint8) * 3
KP = np.array([[5.0, 7.0], [40.0, 10.0], [47.0, 47.0]])
BOXES = np.array([[2.0, 3.0, 20.0, 30.0], [30.0, 30.0, 46.0, 40.0]])
PIPE = A.Pipeline(A.Rotate(20), A.Zoom((0.9, 1.2)), A.FlipX(), A.RandomResizedCrop(32, scale=(0.5, 1.0)))


def test_numpy_in_numpy_out_with_companions():
    out = PIPE(image=IMG, mask=MASK, keypoints=KP.astype(np.float32), boxes=BOXES, labels=[4, 9], seed=0)
    assert set(out) == {"image", "mask", "keypoints", "visibility", "boxes", "labels"}
    assert out["image"].shape == (32, 32, 3) and out["image"].dtype == np.uint8
    assert out["mask"].shape == (32, 32) and out["mask"].dtype == np.uint8
    assert out["keypoints"].dtype == np.float32 and out["visibility"].dtype == bool
    assert isinstance(out["labels"], list) and len(out["labels"]) == len(out["boxes"])


def test_torch_and_tv_tensors_round_trip_and_agree_with_numpy():
    ref = PIPE(image=IMG, mask=MASK, keypoints=KP, boxes=BOXES, labels=np.array([4, 9]), seed=3)
    img_t = tv_tensors.Image(torch.from_numpy(IMG).permute(2, 0, 1))
    xywh = BOXES.copy()
    xywh[:, 2:] -= xywh[:, :2]
    out = PIPE(image=img_t, mask=tv_tensors.Mask(torch.from_numpy(MASK)),
               keypoints=tv_tensors.KeyPoints(torch.from_numpy(KP).float(), canvas_size=(48, 48)),
               boxes=tv_tensors.BoundingBoxes(torch.from_numpy(xywh).float(), format="XYWH", canvas_size=(48, 48)),
               labels=torch.tensor([4, 9]), seed=3)
    assert type(out["image"]) is tv_tensors.Image and out["image"].shape == (3, 32, 32)
    assert torch.equal(out["image"], torch.from_numpy(ref["image"]).permute(2, 0, 1))
    assert type(out["mask"]) is tv_tensors.Mask and np.array_equal(out["mask"].numpy(), ref["mask"])
    assert type(out["keypoints"]) is tv_tensors.KeyPoints and out["keypoints"].canvas_size == (32, 32)
    np.testing.assert_allclose(out["keypoints"].numpy(), ref["keypoints"], atol=1e-4)
    assert torch.equal(out["visibility"], torch.from_numpy(ref["visibility"]))
    b = out["boxes"]
    assert type(b) is tv_tensors.BoundingBoxes and b.format == tv_tensors.BoundingBoxFormat.XYWH
    assert b.canvas_size == (32, 32)
    back = b.numpy().astype(np.float64)
    back[:, 2:] += back[:, :2]
    np.testing.assert_allclose(back, ref["boxes"], atol=1e-4)
    assert torch.equal(out["labels"], torch.from_numpy(ref["labels"]))


def test_items_of_any_name_and_positional_image():
    out = PIPE(image=IMG, depth=A.Image(IMG[:, :, :1].astype(np.float32) / 255), hands=A.Keypoints(KP, [1, 0, 1]),
               seed=1)
    assert isinstance(out["depth"], A.Image) and out["depth"].data.shape == (32, 32, 1)
    assert isinstance(out["hands"], A.Keypoints) and out["hands"].visible[1] == False  # noqa: E712
    assert PIPE(IMG, seed=1).shape == (32, 32, 3)
    grey_t = torch.from_numpy(IMG[:, :, 0])
    assert PIPE(grey_t, seed=1).shape == (32, 32)
    # keypoints alone need their frame
    alone = A.FlipX(1.0)(keypoints=KP, size=(48, 48), seed=0)
    np.testing.assert_allclose(alone["keypoints"][:, 0], 47 - KP[:, 0])


def test_untouched_items_and_inputs_are_not_modified():
    img, mask = IMG.copy(), MASK.copy()
    A.Pipeline(A.Rotate(10), A.Brightness(0.3), A.RandomErasing(p=1.0))(image=img, mask=mask, seed=0)
    assert np.array_equal(img, IMG) and np.array_equal(mask, MASK)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image=IMG.astype(np.int32)), r"image: pixels must be uint8 \(0..255\) or float32 \(0..1\), got shape \(48, 48, 3\) dtype int32"),
    (dict(image=IMG.astype(np.float64)), r"image: .*dtype float64"),
    (dict(image=np.zeros((0, 5, 3), np.uint8)), r"image is empty: shape \(0, 5, 3\)"),
    (dict(image=np.zeros((4, 4, 2), np.uint8)), r"image must have 1, 3 or 4 channels .*shape \(4, 4, 2\)"),
    (dict(image=torch.zeros(2, 3, 4, 4)), r"image: a tensor image must be C×H×W or H×W .*shape \(2, 3, 4, 4\)"),
    (dict(image=IMG, mask=MASK[:40]), r"mask: size 40×48 \(height×width\) does not match image 48×48"),
    (dict(image=IMG, mask=MASK.astype(np.float32)), r"mask: labels must be bool or integers .*dtype float32"),
    (dict(image=IMG, keypoints=np.zeros((3, 3))), r"keypoints must be an N×2 array of \(x, y\) numbers, got shape \(3, 3\)"),
    (dict(image=IMG, keypoints=np.array([[1.0, np.nan]])), r"keypoints: coordinates must be finite, got NaN/inf at rows \[0\]"),
    (dict(image=IMG, boxes=np.zeros((2, 3))), r"boxes must be an N×4 array .*shape \(2, 3\)"),
    (dict(image=IMG, boxes=np.array([[5.0, 5, 2, 9]])), r"boxes must be xyxy with x1 <= x2 and y1 <= y2; rows \[0\]"),
    (dict(image=IMG, boxes=BOXES, labels=[1, 2, 3]), r"labels: need one per box \(2\)"),
    (dict(image=IMG, labels=[1]), r"labels given without boxes"),
    (dict(keypoints=KP), r"keypoints and boxes alone need the frame"),
    (dict(image=IMG, extra=np.zeros(3)), r"unknown item 'extra'"),
    (dict(image=IMG, keypoints=tv_tensors.KeyPoints(torch.zeros(2, 2), canvas_size=(10, 10))),
     r"keypoints \(canvas_size\): size 10×10 \(height×width\) does not match image 48×48"),
    (dict(image=IMG, seed="a"), r"seed must be an int, a torch.Generator or None"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PIPE(**kwargs)


@pytest.mark.parametrize("make, message", [
    (lambda: A.Rotate("a lot"), r"Rotate: degrees must be a number or a \(low, high\) pair of numbers, got 'a lot'"),
    (lambda: A.Rotate((10, -10)), r"Rotate: degrees must be \(low, high\) with low <= high"),
    (lambda: A.FlipX(p=1.5), r"FlipX: p must be <= 1.0, got 1.5"),
    (lambda: A.Zoom((0, 2)), r"Zoom: scale must be > 0.0, got 0"),
    (lambda: A.RandomResizedCrop(0), r"RandomResizedCrop: size must be a positive integer or a \(height, width\) pair"),
    (lambda: A.RandomResizedCrop(32, scale=(0.5, 2.0)), r"RandomResizedCrop: scale must be <= 1.0, got 2.0"),
    (lambda: A.Pipeline(A.Rotate(), border="wrap"), r"Pipeline: border must be one of 'constant', 'reflect', 'replicate', got 'wrap'"),
    (lambda: A.Pipeline(A.Rotate(), "flip"), r"Pipeline: transforms\[1\] must be a transform"),
    (lambda: A.Maybe(A.Rotate(), p=-1), r"Maybe: p must be >= 0.0, got -1"),
    (lambda: A.SomeOf(A.Rotate(), A.FlipX(), n=3), r"SomeOf: n must be an integer or a \(low, high\) pair with 0 <= low <= high <= 2"),
    (lambda: A.OneOf(A.Rotate(), weights=[1, 2]), r"OneOf: weights must be one number per transform \(1\)"),
    (lambda: A.GaussianBlur(kernel_size=4), r"GaussianBlur: kernel_size must be an odd positive integer"),
    (lambda: A.Normalize(std=0), r"Normalize: std must be > 0.0, got 0"),
    (lambda: A.Pipeline(A.Pipeline(A.Rotate(), border="reflect")), r"Pipeline: a nested pipeline sets warp options"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
