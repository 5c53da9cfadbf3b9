"""ImageClassification: encoding, decoding, loaders, show_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdeck import data, tasks


@pytest.fixture(scope="module")
def task():
    return tasks.get("image-classification")(data.load("digits"))


def test_registry():
    assert tasks.get("image-classification") is tasks.ImageClassification
    with pytest.raises(ValueError, match=r"unknown task 'detection'; allowed: image-classification"):
        tasks.get("detection")


def test_encode_inputs_shapes_and_normalisation(task):
    train_x, _ = task.data.split("train")
    x = task.encode_inputs(train_x)
    assert x.shape == (len(train_x), 1, 8, 8) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-4
    assert x.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    # The same affine map on the valid split: (pixel / 255 - mean) / std.
    valid_x, _ = task.data.split("valid")
    v = task.encode_inputs(valid_x[:3])
    flat = train_x.astype(np.float64) / 255.0
    expected = (valid_x[:3].astype(np.float64) / 255.0 - flat.mean()) / (flat.std() + 1e-6)
    np.testing.assert_allclose(v[:, 0].numpy(), expected[..., 0], rtol=1e-5, atol=1e-5)


def test_encode_resizes_to_size():
    t = tasks.ImageClassification(data.load("digits"), size=16)
    x = t.encode_inputs(t.data.images[:2])
    assert x.shape == (2, 1, 16, 16)


def test_encode_targets_and_decode(task):
    _, labels = task.data.split("valid")
    y = task.encode_targets(labels[:5])
    assert y.dtype == torch.int64 and y.tolist() == labels[:5].tolist()
    logits = torch.full((3, 10), -1.0)
    logits[0, 7] = logits[1, 0] = logits[2, 9] = 5.0
    assert task.decode(logits) == ["7", "0", "9"]


def test_loaders_hold_the_encoded_splits(task):
    loaders = task.loaders(batch_size=100, seed=0)
    assert set(loaders) == {"train", "valid"}
    xv = torch.cat([x for x, _ in loaders["valid"]])
    yv = torch.cat([y for _, y in loaders["valid"]])
    images, labels = task.data.split("valid")
    assert torch.equal(xv, task.encode_inputs(images)) and yv.tolist() == labels.tolist()
    assert sum(len(y) for _, y in loaders["train"]) == len(task.data.train_idx)


def test_show_batch_captions_are_the_labels(task):
    grid = task.show_batch(12)
    images, labels = task.data.split("train")
    assert grid.images.shape == (12, 8, 8, 1) and np.array_equal(grid.images, images[:12])
    assert grid.captions == [str(int(v)) for v in labels[:12]]
    valid = task.show_batch(5, split="valid")
    assert valid.captions == [str(int(v)) for v in task.data.split("valid")[1][:5]]


def test_show_results_marks_wrong_predictions(task):
    images, labels = task.data.split("valid")

    def always_three(x):
        out = torch.zeros(len(x), 10)
        out[:, 3] = 1.0
        return out

    grid = task.show_results(always_three, 10)
    assert grid.captions == ["3" if int(t) == 3 else f"3≠{int(t)}" for t in labels[:10]]


def test_head_loss_metrics_channels(task):
    assert task.input_channels() == 1
    head = task.head(64)
    assert isinstance(head, torch.nn.Linear) and head.out_features == 10
    assert task.metrics() == ("accuracy",)
    assert task.blocks == ("image", "label")


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"size": 1}, r"image-classification: size must be an integer >= 2 or null, got 1"),
    ({"augment": "flip"}, r"image-classification: augment is not supported yet"),
])
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tasks.ImageClassification(data.load("digits"), **kwargs)
    with pytest.raises(ValueError, match=r"image-classification: data must be an ImageDataset, got list"):
        tasks.ImageClassification([])
