"""Composition, seeding, pickling, DataLoader workers, specs and explain."""

from __future__ import annotations

import collections
import pickle

import pytest
import torch
import yaml

from torchdeck import augment as A

IMG = A.synthetic_photo(40, seed=2)
PIPE = A.Pipeline(A.Affine(degrees=15, scale=(0.9, 1.1), shear=5, translate=0.1), A.RandomResizedCrop(24),
                  A.FlipX(), A.Maybe(A.Perspective(0.2), p=0.5), A.Brightness(0.2), A.Contrast(0.2),
                  A.OneOf(A.Hue(0.1), A.Saturation(0.3)), A.Normalize(), border="reflect")


def test_same_seed_same_output_and_generators():
    a, b = PIPE(IMG, seed=5), PIPE(IMG, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, PIPE(IMG, seed=6))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first = [PIPE(IMG, seed=g1) for _ in range(3)]
    again = [PIPE(IMG, seed=g2) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], first[1])  # a generator advances
    torch.manual_seed(0)
    x = PIPE(IMG)
    torch.manual_seed(0)
    assert torch.equal(x, PIPE(IMG))  # no seed: torch's default generator


def test_pickle_round_trip_gives_the_same_augmentation():
    clone = pickle.loads(pickle.dumps(PIPE))
    assert clone == PIPE and clone.options == PIPE.options
    assert torch.equal(clone(IMG, seed=9), PIPE(IMG, seed=9))


class _Same(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        return PIPE(IMG)  # the same image every time: only the seeding tells samples apart


def test_dataloader_workers_differ_and_replay():
    def run() -> torch.Tensor:
        torch.manual_seed(1)
        loader = torch.utils.data.DataLoader(_Same(), batch_size=4, num_workers=2, multiprocessing_context="fork")
        return torch.cat(list(loader))

    a, b = run(), run()
    assert torch.equal(a, b)  # replays from torch.manual_seed
    flat = a.reshape(len(a), -1)
    assert len({tuple(r[:50].tolist()) for r in flat}) == len(a)  # no two samples alike, across workers


def test_maybe_one_of_some_of_choose_as_declared():
    counts = collections.Counter()
    pipe = A.Pipeline(A.Maybe(A.FlipX(1.0), p=0.3), A.OneOf(A.Rot90(1), A.Rot90(2), weights=[3, 1]),
                      A.SomeOf(A.Brightness(0.1), A.Contrast(0.1), A.Gamma(), n=2))
    for seed in range(400):
        plan = pipe.plan((10, 12), seed=seed)
        applied = [s.transform.name for s in plan.steps if s.applied]
        counts["flip"] += "flip_x" in applied
        counts["rot1"] += any(s.transform == A.Rot90(1) for s in plan.steps if s.applied)
        colour = [n for n in applied if n in ("brightness", "contrast", "gamma")]
        assert len(colour) == 2 and colour == sorted(colour, key=["brightness", "contrast", "gamma"].index)
    assert 0.22 < counts["flip"] / 400 < 0.38 and 0.68 < counts["rot1"] / 400 < 0.82


def test_projective_steps_fuse_across_composites():
    pipe = A.Pipeline(A.Rotate(10), A.Maybe(A.Zoom(), p=1.0), A.OneOf(A.FlipX(1.0), A.FlipY(1.0)),
                      A.CenterCrop(8), A.Brightness(0.1), A.Maybe(A.Contrast(0.1), p=1.0), A.Normalize())
    plan = pipe.plan((20, 20), seed=0)
    assert [type(s).__name__ for s in plan.stages] == ["Warp", "Values"]
    assert plan.size == (8, 8) and len(plan.stages[0].steps) == 4
    assert [type(s).__name__ for s in pipe.plan((20, 20), seed=0, fuse=False).stages] == ["Warp"] * 4 + ["Values"] * 3


def _non_default(cls: type) -> A.Transform:
    examples = {
        A.Pipeline: lambda: A.Pipeline(A.Rotate(5), A.Normalize(mean=0.5, std=0.2), border="replicate", fill=[1, 2, 3],
                                       mask_fill=255, min_visibility=0.3, antialias=False, interpolation="cubic"),
        A.Maybe: lambda: A.Maybe(A.OneOf(A.FlipX(0.2), A.Rot90([1, 3]), weights=[1, 2]), p=0.7),
        A.OneOf: lambda: A.OneOf(A.Hue(0.1), A.Saturation((0.5, 1.5))),
        A.SomeOf: lambda: A.SomeOf(A.Gamma(), A.GaussianBlur(1.0, kernel_size=5), A.GaussianNoise(0.1), n=(1, 2),
                                   random_order=True),
        A.RandomErasing: lambda: A.RandomErasing(p=0.3, value="random"),
        A.Affine: lambda: A.Affine(degrees=(-5, 10), scale=(0.8, 1.2), shear=3, translate=(0.1, 0.2)),
    }
    if cls in examples:
        return examples[cls]()
    return cls()


@pytest.mark.parametrize("name", A.TRANSFORMS.names())
def test_spec_round_trip_through_yaml_for_every_transform(name):
    t = _non_default(A.TRANSFORMS[name])
    text = yaml.safe_dump(t.to_spec())
    back = A.transform_from_spec(yaml.safe_load(text))
    assert back == t and back.to_spec() == t.to_spec()
    size = (30, 30, 30) if getattr(t, "dims", 2) == 3 else (30, 30)  # volume transforms plan for volumes
    assert [s._replace(sample_us=0) for s in back.plan(size, seed=4).steps] == \
        [s._replace(sample_us=0) for s in t.plan(size, seed=4).steps]


def test_spec_short_forms_and_errors():
    pipe = A.transform_from_spec(["flip_x", {"rotate": {"degrees": 15}}, {"random_resized_crop": {"size": [24, 32]}}])
    assert pipe == A.Pipeline(A.FlipX(), A.Rotate(15), A.RandomResizedCrop((24, 32)))
    with pytest.raises(ValueError, match=r"augment\[1\]: unknown transform 'rotat'; allowed: .*rotate"):
        A.transform_from_spec(["flip_x", "rotat"])
    with pytest.raises(ValueError, match=r"augment\.maybe\.transform\.rotate: unknown argument 'deg'; allowed: degrees"):
        A.transform_from_spec({"maybe": {"transform": {"rotate": {"deg": 3}}}})
    with pytest.raises(ValueError, match=r"augment\[0\]\.Rotate: degrees must be a number"):
        A.transform_from_spec([{"rotate": {"degrees": "x"}}])


def test_explain_lists_steps_params_and_times():
    ex = PIPE.explain(seed=3, image=IMG)
    names = [r.name for r in ex.rows]
    assert names[:4] == ["affine", "random_resized_crop", "flip_x", "perspective"]
    affine = ex.rows[0]
    assert set(affine.params) == {"degrees", "scale", "shear", "x", "y"} and -15 <= affine.params["degrees"] <= 15
    assert affine.stage == 1 and all(s.ms >= 0 for s in ex.stages) and ex.total_ms > 0
    assert torch.equal(ex.output["image"], PIPE(IMG, seed=3))
    text = str(ex)
    assert "affine" in text and "warp" in text and "ms" in text
    default = A.Pipeline(A.Rotate(5), A.Resize(64)).explain(seed=0)  # on the built-in synthetic photo
    assert default.output["image"].shape == (64, 64, 3)
