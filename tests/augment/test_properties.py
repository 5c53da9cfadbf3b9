"""Property tests over random pipelines and sizes: the declared output size, masks keep their
label set, keypoints keep their count and order, boxes stay inside the frame."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchdeck import augment as A

# (transform, how it changes the frame size) — the size rule is written here independently.
KEEP = lambda s: s  # noqa: E731
SHAPED = st.one_of(
    st.builds(lambda d: (A.Rotate(d), KEEP), st.floats(0, 180)),
    st.builds(lambda a, b: (A.Zoom((min(a, b), max(a, b))), KEEP), st.floats(0.3, 3), st.floats(0.3, 3)),
    st.builds(lambda x, y: (A.Shear(x, y), KEEP), st.floats(0, 40), st.floats(0, 40)),
    st.builds(lambda x: (A.Translate(x, x), KEEP), st.floats(0, 0.5)),
    st.builds(lambda d: (A.Perspective(d), KEEP), st.floats(0, 0.6)),
    st.builds(lambda d: (A.Affine(degrees=d, scale=(0.7, 1.3), shear=10, translate=0.2), KEEP), st.floats(0, 90)),
    st.builds(lambda p: (A.FlipX(p), KEEP), st.floats(0, 1)),
    st.builds(lambda p: (A.FlipY(p), KEEP), st.floats(0, 1)),
    st.builds(lambda k: (A.Rot90(k), (lambda s: s if k % 2 == 0 else (s[1], s[0]))), st.integers(0, 3)),
    st.builds(lambda h, w: (A.Resize((h, w)), lambda s: (h, w)), st.integers(1, 40), st.integers(1, 40)),
    st.builds(lambda h, w: (A.CenterCrop((h, w)), lambda s: (h, w)), st.integers(1, 40), st.integers(1, 40)),
    st.builds(lambda h, w: (A.RandomCrop((h, w)), lambda s: (h, w)), st.integers(1, 40), st.integers(1, 40)),
    st.builds(lambda h: (A.RandomResizedCrop(h), lambda s: (h, h)), st.integers(1, 40)),
    st.builds(lambda d: (A.PadDivisible(d), lambda s: (-(-s[0] // d) * d, -(-s[1] // d) * d)), st.integers(1, 16)),
    st.builds(lambda f: (A.Scale((f, f)), lambda s: (max(1, round(s[0] * f)), max(1, round(s[1] * f)))),
              st.floats(0.2, 2.0)),
    st.builds(lambda n: (A.ScaleKeepAspect(n), lambda s: (max(1, round(s[0] * n / min(s))), max(1, round(s[1] * n / min(s))))),
              st.integers(1, 12)),
)
COLOUR = st.sampled_from([A.Brightness(0.3), A.Contrast(0.3), A.Gamma(), A.Saturation(0.3), A.Hue(0.1),
                          A.GaussianBlur(), A.GaussianNoise(), A.RandomErasing(p=0.5), A.Grayscale(0.5)])


@st.composite
def cases(draw):
    steps = draw(st.lists(st.one_of(SHAPED, COLOUR.map(lambda t: (t, KEEP))), min_size=1, max_size=6))
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    border = draw(st.sampled_from(["constant", "reflect", "replicate"]))
    normalize = draw(st.booleans())
    dtype = draw(st.sampled_from([np.uint8, np.float32]))
    return steps, (h, w), border, normalize, dtype, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_pipelines_keep_their_promises(case):
    steps, (h, w), border, normalize, dtype, seed = case
    transforms = [t for t, _ in steps] + ([A.Normalize()] if normalize else [])
    pipe = A.Pipeline(*transforms, border=border, mask_fill=9)
    expected = (h, w)
    for _, rule in steps:
        expected = rule(expected)

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3)).astype(dtype)
    if dtype == np.float32:
        img /= 255
    mask = rng.choice(np.array([0, 2, 5, 7], np.int64), (h, w))
    kp = np.stack([rng.uniform(-0.5, w - 0.5, 7), rng.uniform(-0.5, h - 0.5, 7)], 1)
    corners = np.sort(np.stack([rng.uniform(0, w, (5, 2)), rng.uniform(0, h, (5, 2))], 2), axis=1)
    boxes = corners.reshape(5, 4)  # (x1, y1, x2, y2) with x1 <= x2, y1 <= y2
    labels = np.arange(10, 15)

    out = pipe(image=img, mask=mask, keypoints=kp, boxes=boxes, labels=labels, seed=seed)
    oh, ow = expected
    if normalize:
        assert tuple(out["image"].shape) == (3, oh, ow)
    else:
        assert out["image"].shape == (oh, ow, 3) and out["image"].dtype == dtype
    assert out["mask"].shape == (oh, ow) and out["mask"].dtype == mask.dtype
    assert set(np.unique(out["mask"])) <= {0, 2, 5, 7, 9}
    k, vis = out["keypoints"], out["visibility"]
    assert k.shape == (7, 2) and vis.shape == (7,)
    inside = (k[:, 0] >= -0.5) & (k[:, 0] < ow - 0.5) & (k[:, 1] >= -0.5) & (k[:, 1] < oh - 0.5)
    assert not (vis & ~inside).any()  # a visible point is in the frame
    b, lab = out["boxes"], out["labels"]
    assert len(b) == len(lab) and set(lab) <= set(labels) and list(lab) == sorted(lab)
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= ow).all() and (b[:, 3] <= oh).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    # the keypoints moved as the warp says, in order
    plan = pipe.plan((h, w), seed=seed)
    assert plan.size == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(SHAPED, min_size=1, max_size=5), st.integers(0, 1000))
def test_keypoints_follow_the_plan_matrix_in_order(steps, seed):
    pipe = A.Pipeline(*(t for t, _ in steps))
    kp = np.array([[1.0, 2.0], [10.5, 3.25], [0.0, 19.0], [15.0, 15.0]])
    out = pipe(keypoints=kp, size=(20, 16), seed=seed)
    plan = pipe.plan((20, 16), seed=seed)
    m = np.eye(3)
    for stage in plan.stages:
        m = stage.matrix @ m
    h = m @ np.c_[kp + 0.5, np.ones(len(kp))].T
    ahead = h[2] > 0
    np.testing.assert_allclose(out["keypoints"][ahead], (h[:2] / h[2]).T[ahead] - 0.5, atol=1e-6)
