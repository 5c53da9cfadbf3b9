"""The augmentation preview: what the grid draws is where the pipeline puts it (checked against
running the pipeline ourselves), the spec round trip, refusals in place, reseed and uploads."""

from __future__ import annotations

import asyncio
import datetime
import html

import cv2
import numpy as np
import pytest

from torchdeck import augment as A
from torchdeck.spec import Experiment
from torchdeck.widgets import StudioState
from torchdeck.widgets._augment_draw import BOX_COLOUR, KEYPOINT_COLOURS, MASK_ALPHA, MASK_COLOURS, DOT_RADIUS
from torchdeck.widgets._augment_panel import AugmentPanel, _Coalesced
from torchdeck.widgets._augment_sources import shape_targets
from torchdeck.widgets._augment_steps import addable_transforms

SIDE = 224
# The DESIGN's example pipeline (without normalize), built directly: the reference.
REFERENCE = A.Pipeline(A.Rotate(15), A.Zoom((0.9, 1.1)), A.RandomResizedCrop(SIDE, scale=(0.3, 1.0)), A.FlipX(0.5),
                       A.Brightness(0.2), A.Contrast(0.2))


def _build(panel: AugmentPanel) -> None:
    for name in ("rotate", "zoom", "random_resized_crop", "flip_x", "brightness", "contrast"):
        assert panel.add_step(name), panel.state.error
    panel.field(1, "scale").widgets[0].value = (0.9, 1.1)
    panel.field(2, "scale").widgets[0].value = (0.3, 1.0)


@pytest.fixture(scope="module")
def built() -> AugmentPanel:
    panel = AugmentPanel(StudioState())
    _build(panel)
    return panel


def _grid(panel: AugmentPanel) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(panel.image.value, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _tile(panel: AugmentPanel, grid: np.ndarray, i: int) -> np.ndarray:
    x, y = panel.layout_grid.origin(i)
    return grid[y:y + SIDE, x:x + SIDE]


def _reference(seed: int) -> dict:
    """The pipeline run by hand on the built-in photo with the shape, its corners and its box."""
    img = A.sample_photo(SIDE)[0]
    mask, kp, box = shape_targets(SIDE, SIDE)
    return REFERENCE(image=img, mask=mask, keypoints=A.Keypoints(kp), boxes=A.Boxes(box), seed=seed)


def test_the_panel_writes_the_pipeline_it_shows(built):
    assert A.transform_from_spec(built.state.spec.augment) == REFERENCE
    assert [r.kind[0] for r in built.rows.children] == ["rotate", "zoom", "random_resized_crop", "flip_x",
                                                        "brightness", "contrast"]


def test_keypoint_dots_sit_on_the_transformed_keypoints(built):
    grid = _grid(built)
    checked = 0
    for i in range(8):
        out = _reference(built.seed + i)
        tile = _tile(built, grid, i)
        xy, vis = out["keypoints"].xy, out["keypoints"].visible
        for k, ((x, y), v) in enumerate(zip(xy, vis)):
            c, r = int(round(x)), int(round(y))
            others = [j for j in range(len(xy)) if j != k and np.hypot(*(xy[j] - xy[k])) < 2 * DOT_RADIUS + 4]
            rim = DOT_RADIUS + 1
            if not v or others or not (rim <= r < SIDE - rim and rim <= c < SIDE - rim):
                continue
            # The dot is centred on the point: its colour reaches DOT_RADIUS each way, then its rim.
            for dr, dc in ((0, 0), (0, DOT_RADIUS), (0, -DOT_RADIUS), (DOT_RADIUS, 0), (-DOT_RADIUS, 0)):
                assert tuple(tile[r + dr, c + dc]) == KEYPOINT_COLOURS[k], (i, k, (x, y), (dr, dc))
            for dr, dc in ((0, rim), (0, -rim), (rim, 0), (-rim, 0)):
                assert tuple(tile[r + dr, c + dc]) == (0, 0, 0), (i, k, (x, y), (dr, dc))
            checked += 1
    assert checked >= 12, f"only {checked} keypoints were checked"


def _near_drawings(out: dict) -> np.ndarray:
    """Pixels a box outline or a keypoint dot may cover (left out of the mask comparison)."""
    near = np.zeros((SIDE, SIDE), np.uint8)
    for x1, y1, x2, y2 in out["boxes"].xyxy:
        cv2.rectangle(near, (int(round(x1)), int(round(y1))), (int(round(x2)) - 1, int(round(y2)) - 1), 1, 3)
    for x, y in out["keypoints"].xy:
        if abs(x) < 2 * SIDE and abs(y) < 2 * SIDE:
            cv2.circle(near, (int(round(x)), int(round(y))), DOT_RADIUS + 3, 1, -1)
    return near.astype(bool)


def test_mask_overlay_covers_exactly_the_transformed_mask(built):
    grid = _grid(built)
    area = 0
    for i in range(8):
        out = _reference(built.seed + i)
        tile = _tile(built, grid, i).astype(np.int32)
        img, fg = out["image"].astype(np.float64), out["mask"] > 0
        tinted = np.round((1 - MASK_ALPHA) * img + MASK_ALPHA * MASK_COLOURS[0]).astype(np.int32)
        expected = np.where(fg[..., None], tinted, img.astype(np.int32))
        keep = ~_near_drawings(out)
        # Where the tint hardly changes the pixel, tinted and untinted cannot be told apart.
        keep &= np.abs(tinted - img).max(-1) > 2
        assert np.abs(tile - expected)[keep].max() <= 1, i
        # ... and the drawn tint is the mask: tinted where it is set, untouched elsewhere.
        drawn = np.abs(tile - img.astype(np.int32)).max(-1) > 1
        assert np.array_equal(drawn[keep], fg[keep]), i
        area += int(fg.sum())
    assert area > 8 * 1000, "the masks are almost empty: the test checks nothing"


def test_boxes_are_drawn_on_the_transformed_box(built):
    grid = _grid(built)
    out = _reference(built.seed)
    x1, y1, x2, y2 = (int(round(v)) for v in out["boxes"].xyxy[0])
    tile = _tile(built, grid, 0)
    edge = tile[y1:y2, max(x1, 0)]
    assert (edge == BOX_COLOUR).all(axis=1).mean() > 0.8  # keypoint dots may sit on it


def test_timing_table_lists_every_step(built):
    ex = REFERENCE.explain(seed=built.seed)
    for r in ex.rows:
        assert f"<td>{r.name}</td>" in built.timing.value
    assert f"{len(ex.rows)} steps in {len(ex.stages)} stages" in built.timing.value


def test_spec_round_trip_rebuilds_the_rows():
    state = StudioState()
    panel = AugmentPanel(state)
    _build(panel)
    assert panel.set_probability(0, 0.5)
    panel.field(0, "degrees").widgets[0].value = (-25.0, 25.0)
    panel.options["border"].value = "reflect"
    assert panel.add_step("gamma")
    assert panel.move_step(6, -1)  # gamma before contrast
    assert panel.remove_step(6)    # and contrast gone
    want = A.Pipeline(A.Maybe(A.Rotate((-25, 25)), p=0.5), A.Zoom((0.9, 1.1)),
                      A.RandomResizedCrop(SIDE, scale=(0.3, 1.0)), A.FlipX(0.5), A.Brightness(0.2), A.Gamma(),
                      border="reflect")
    assert A.transform_from_spec(state.spec.augment) == want

    again = AugmentPanel(StudioState(Experiment.parse_yaml(state.spec.to_yaml())))
    assert [r.kind for r in again.rows.children] == [r.kind for r in panel.rows.children]
    for a, b in zip(again.rows.children, panel.rows.children):
        assert {k: f.value for k, f in a.fields.items()} == {k: f.value for k, f in b.fields.items()}
        assert a.probability.value == b.probability.value
    assert again.rows.children[0].probability.value == 0.5
    assert again.options["border"].value == "reflect"
    assert again.image.value == panel.image.value


def test_a_loaded_spec_replaces_the_rows_and_composites_are_read_only():
    state = StudioState()
    panel = AugmentPanel(state)
    assert state.edit(augment=[{"one_of": {"transforms": ["flip_x", "flip_y"]}}, {"rotate": {"degrees": 5}}])
    assert [r.kind[0] for r in panel.rows.children] == ["one_of", "rotate"]
    assert "edit in the spec" in panel.rows.children[0].text.value
    assert panel.move_step(0, +1)
    assert [next(iter(s)) for s in state.spec.augment["pipeline"]["transforms"]] == ["rotate", "one_of"]


def test_a_refused_value_is_explained_in_place_and_the_spec_keeps_its_pipeline(built):
    state = StudioState()
    panel = AugmentPanel(state)
    _build(panel)
    before, png = state.spec, panel.image.value
    size = panel.field(2, "size")
    size.widgets[0].value = "-3"
    assert "size must be a positive integer" in size.message.value and "-3" in size.message.value
    assert state.spec is before and "augment" in state.error
    assert panel.image.value == png
    size.widgets[0].value = "[224, 160"
    assert "not valid YAML" in size.message.value and state.spec is before
    size.widgets[0].value = "[200, 200]"  # a good value clears the message
    assert size.message.value == "" and state.spec.augment["pipeline"]["transforms"][2][
        "random_resized_crop"]["size"] == [200, 200]


def test_reseed_shows_other_samples_and_a_seed_always_the_same_ones(built):
    first = built.image.value
    built.reseed_button.click()
    assert built.seed == 8 and built.image.value != first
    assert "seeds 8–15" in built.seed_info.value
    built.seed = 0
    assert built.image.value == first


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_an_uploaded_png_is_what_the_grid_shows():
    panel = AugmentPanel(StudioState())  # no steps: the tiles are the source itself
    g = np.random.default_rng(1)
    img = g.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    data = _png(img)
    panel.upload.value = ({"name": "noise.png", "type": "image/png", "size": len(data), "content": memoryview(data),
                           "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert panel.source == "upload" and "noise.png" in panel.source_info.value
    tile = _tile(panel, _grid(panel), 3)
    mask, kp, box = shape_targets(SIDE, SIDE)
    far = ~_near_drawings({"boxes": A.Boxes(box), "keypoints": A.Keypoints(kp)}) & (mask == 0)
    assert np.array_equal(tile[far], img[far])


def test_a_corrupt_upload_is_refused_in_place_and_the_grid_stays():
    panel = AugmentPanel(StudioState())
    png = panel.image.value
    assert not panel.load_upload(b"\x89PNG\r\n\x1a\n but not really", "broken.png")
    assert "broken.png" in panel.source_info.value and "not an image" in panel.source_info.value
    assert panel.source == "photo" and panel.image.value == png
    panel.source_picker.value = "upload"  # nothing uploaded yet: refused, the photo stays
    assert panel.source == "photo" and panel.source_picker.value == "photo"
    assert "no image uploaded" in panel.source_info.value


def test_task_data_brings_its_masks_and_keypoints():
    spec = Experiment.from_dict({"task": {"name": "segmentation"}, "data": {"name": "shapes", "options": {"n": 24}}})
    state = StudioState(spec)
    panel = AugmentPanel(state)
    panel.source_picker.value = "task"
    assert panel.source == "task" and "mask, keypoints, boxes" in panel.source_info.value
    data = state.task().data
    i = int(data.train_idx[2])
    tile = _tile(panel, _grid(panel), 2)
    # The 64² image is enlarged 3.5×; the mask tint on pixel centres far from every drawing.
    s = SIDE / data.size
    pts = np.concatenate([data.centres[i], data.corners[i].reshape(-1, 2)])
    pts = pts[np.isfinite(pts).all(1)] * s
    edges = data.boxes[i][np.isfinite(data.boxes[i]).all(1)] * s
    seen = {0: 0, 1: 0}
    for (r, c) in [(r, c) for r in range(1, data.size - 1, 3) for c in range(1, data.size - 1, 3)]:
        x, y = int((c + 0.5) * s), int((r + 0.5) * s)
        if (np.hypot(*(pts - [x, y]).T) < 8).any() or (np.abs(edges - [x, y, x, y]) < 3).any():
            continue
        label = data.masks[i][r, c]
        want = data.images[i][r, c].astype(float)
        if label:
            want = np.round((1 - MASK_ALPHA) * want + MASK_ALPHA * MASK_COLOURS[label - 1])
        assert np.abs(tile[y, x] - want).max() <= 1, (r, c, label)
        seen[int(label > 0)] += 1
    assert seen[0] > 50 and seen[1] > 10, seen


def test_palette_lists_the_plain_transforms():
    names = addable_transforms()
    assert {"rotate", "random_resized_crop", "brightness", "normalize"} <= set(names)
    assert not {"pipeline", "maybe", "one_of", "some_of"} & set(names)
    assert all(getattr(A.TRANSFORMS[n], "dims", 2) == 2 for n in names)  # no volume transforms


def test_redraws_coalesce_inside_a_running_loop():
    calls = []
    c = _Coalesced(lambda: calls.append(1))

    async def burst() -> None:
        for _ in range(5):
            c.request()
        assert calls == []          # nothing drawn while the burst is handled
        await asyncio.sleep(0)
        assert calls == [1]          # then once

    asyncio.run(burst())
    c.request()                      # no loop: at once
    assert calls == [1, 1]


def test_the_studio_shows_the_panel_after_the_data_panel():
    from torchdeck.widgets import Studio

    studio = Studio()
    left = studio.children[3].children[0].children
    assert left[0] is studio.data_panel and left[1] is studio.augment_panel
    assert studio.augment_panel.add_step("flip_x") and studio.spec.augment is not None


def test_every_palette_transform_gets_inputs_that_show_its_spec():
    accepted = 0
    for name in addable_transforms():
        state = StudioState()
        panel = AugmentPanel(state, samples=1)
        if not panel.add_step(name):
            # The task may refuse a step on its data (normalize: the task normalises itself;
            # a crop larger than the digits): said in place, the spec keeps no augmentation.
            assert name.replace("_", "") in state.error.lower() and html.escape(state.error) == panel.message.value
            assert state.spec.augment is None and panel.rows.children == ()
            continue
        accepted += 1
        (args,) = state.spec.augment["pipeline"]["transforms"][0].values()
        row = panel.rows.children[0]
        assert set(row.fields) == set(args), name
        for field, value in args.items():
            assert row.fields[field].value == value, (name, field)
            assert row.fields[field].message.value == ""
    assert accepted >= 20
