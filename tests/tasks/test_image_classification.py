"""ImageClassification: encoding, decoding, loaders, show_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdeck import augment as A
from torchdeck import data, tasks
from torchdeck.spec import Experiment


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
    ({"augment": "flip"}, r"^augment: unknown transform 'flip'; allowed: .*flip_x"),
    ({"augment": ["flip_x", {"normalize": {"mean": [0.5], "std": [0.2]}}]},
     r"^image-classification: augment fails on a training image: augment must give uint8 images like its "
     r"input .*leave normalize out\), got Tensor torch.float32 \(1, 8, 8\)$"),
    ({"augment": "normalize"}, r"^image-classification: augment fails on a training image: Normalize: mean has 3 "),
])
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tasks.ImageClassification(data.load("digits"), **kwargs)
    with pytest.raises(ValueError, match=r"image-classification: data must be an ImageDataset, got list"):
        tasks.ImageClassification([])


# -- augmentation ---------------------------------------------------------------------------------
def _epoch(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_flip_always_gives_the_mirrored_training_images_and_leaves_valid_alone(task):
    flipped = tasks.ImageClassification(task.data, augment=A.FlipX(p=1.0))
    plain, aug = task.loaders(batch_size=50, seed=3), flipped.loaders(batch_size=50, seed=3)
    x_plain, y_plain = _epoch(plain["train"])
    x_aug, y_aug = _epoch(aug["train"])
    # Same generator, same order: the augmented epoch is the plain one mirrored, sample by sample
    # (a mirror is exact; the reference is the encoded training image reversed along x).
    assert torch.equal(y_aug, y_plain)
    assert torch.equal(x_aug, x_plain.flip(-1))
    assert torch.equal(_epoch(aug["valid"])[0], _epoch(plain["valid"])[0])


def test_augmented_training_images_differ_and_replay_from_the_seed(task):
    pipe = A.Pipeline(A.FlipX(), A.Rotate(10))
    aug = tasks.ImageClassification(task.data, augment=pipe)
    first, again, other = (aug.loaders(batch_size=64, seed=s) for s in (0, 0, 1))
    x1, y1 = _epoch(first["train"])
    x_plain, y_plain = _epoch(task.loaders(batch_size=64, seed=0)["train"])
    assert torch.equal(y1, y_plain)
    changed = (x1 - x_plain).abs().flatten(1).amax(dim=1) > 1e-3
    assert 0.9 < changed.float().mean().item() <= 1.0  # a rotation of up to 10° moves nearly every digit
    assert torch.equal(x1, _epoch(again["train"])[0])  # same seed: the same augmentations
    assert not torch.equal(x1, _epoch(other["train"])[0])
    x2, y2 = _epoch(first["train"])  # the next pass: new order and new augmentations
    assert not torch.equal(y2, y1) and sorted(y2.tolist()) == sorted(y1.tolist())
    assert torch.equal(_epoch(first["valid"])[0], _epoch(task.loaders(batch_size=64)["valid"])[0])


def test_each_training_sample_is_the_pipeline_applied_with_its_seed(task):
    """The loader's sample i equals ``pipe(image_i, seed=epoch_seed + i)`` encoded: the documented
    seeding, checked against the pipeline called directly."""
    pipe = A.Pipeline(A.Rotate(10), A.Brightness(0.2))
    aug = tasks.ImageClassification(task.data, augment=pipe)
    loader = aug.loaders(batch_size=32, seed=7)["train"]
    g = torch.Generator().manual_seed(7)
    order = torch.randperm(len(loader.images), generator=g)
    epoch_seed = int(torch.randint(2**63 - 1, (), generator=g, dtype=torch.int64))
    x, _ = next(iter(loader))
    images, _ = task.data.split("train")
    want = task.encode_inputs(np.stack([pipe(images[i], seed=epoch_seed + i) for i in order[:32].tolist()]))
    assert torch.equal(x, want)


def test_augment_output_of_another_size_is_resized_to_the_model_input(task):
    aug = tasks.ImageClassification(task.data, size=12, augment=[{"random_resized_crop": {"size": 6}}])
    x, _ = next(iter(aug.loaders(batch_size=10)["train"]))
    assert x.shape == (10, 1, 12, 12)
    mixed = tasks.ImageClassification(task.data, augment=[{"scale": {"factor": [0.5, 2.0]}}])
    with pytest.raises(ValueError, match=r"^image-classification: augment gives images of different sizes .*end it with resize"):
        next(iter(mixed.loaders(batch_size=64)["train"]))


def _fit(seed):
    spec = Experiment.from_dict({"seed": seed, "augment": ["flip_x", {"rotate": {"degrees": 10}}],
                                 "train": {"epochs": 3}})
    learner = spec.build()
    learner.fit()
    return learner


def test_augmented_training_reaches_high_accuracy_and_is_deterministic():
    a, b = _fit(0), _fit(0)
    assert a.history.epochs[-1]["valid_accuracy"] >= 0.9
    keep = ("train_loss", "valid_loss", "valid_accuracy")
    assert [[r[k] for k in keep] for r in a.history.epochs] == [[r[k] for k in keep] for r in b.history.epochs]
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
