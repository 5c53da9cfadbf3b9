"""What the augmentation preview runs on: a built-in photo or an uploaded image (each with a
synthetic shape as mask, corner keypoints and box, so misalignment shows), or the current
task's own training samples with whatever targets its data set holds."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import cv2
import numpy as np

from torchdeck import augment as A

__all__ = ["Frame", "shape_targets", "photo_frames", "upload_frames", "task_frames", "decode_upload",
           "TARGET_READERS"]


@dataclasses.dataclass(frozen=True)
class Frame:
    """One input sample: image H×W×C uint8, and optional targets in its frame."""

    image: np.ndarray
    mask: np.ndarray | None = None       # H×W labels
    keypoints: np.ndarray | None = None  # N×2 (x, y) pixel indices (top-left pixel centre is (0, 0))
    boxes: np.ndarray | None = None      # N×4 xyxy, continuous

    def items(self) -> dict[str, Any]:
        """Keyword items for ``pipe(**frame.items(), seed=...)``; targets as augment items, so
        the pipeline hands back visibility with the keypoints."""
        out: dict[str, Any] = {"image": self.image}
        if self.mask is not None:
            out["mask"] = self.mask
        if self.keypoints is not None:
            out["keypoints"] = A.Keypoints(self.keypoints)
        if self.boxes is not None:
            out["boxes"] = A.Boxes(self.boxes)
        return out


# An irregular quadrilateral (fractions of width, height), so that every flip, turn and shear
# changes how it looks: a symmetric shape would hide a mask that moved the wrong way.
_SHAPE = np.array([[0.30, 0.22], [0.74, 0.34], [0.62, 0.78], [0.20, 0.60]])


def shape_targets(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask H×W uint8 with the shape as label 1, its 4 corners as N×2 keypoints, its box 1×4):
    the corners are the polygon's vertices, the box the hull of the mask's pixels."""
    corners = _SHAPE * [width, height] - 0.5  # continuous fractions -> pixel indices
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    ys, xs = np.nonzero(mask)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float64)
    return mask, corners, box


def _with_shape(image: np.ndarray) -> Frame:
    mask, kp, box = shape_targets(*image.shape[:2])
    return Frame(image, mask, kp, box)


def photo_frames(side: int = 224) -> tuple[list[Frame], str]:
    """The built-in photo (``A.sample_photo``) at side×side with the synthetic shape."""
    img, where = A.sample_photo(side)
    return [_with_shape(img)], where


_FORMATS = "PNG, JPEG, BMP, TIFF or WebP"


def decode_upload(content: bytes, name: str) -> np.ndarray:
    """Bytes of an image file -> H×W×3 uint8 RGB; a file that is no image is refused by name."""
    buf = np.frombuffer(bytes(content), np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ValueError(f"upload: {name!r} ({buf.size} bytes) is not an image OpenCV can read; "
                         f"allowed: {_FORMATS}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def upload_frames(content: bytes, name: str, side: int = 224) -> tuple[list[Frame], str]:
    """An uploaded image, centre-cropped to a square and resized to side×side, with the shape."""
    img = decode_upload(content, name)
    h, w = img.shape[:2]
    k = min(h, w)
    y0, x0 = (h - k) // 2, (w - k) // 2
    img = img[y0:y0 + k, x0:x0 + k]
    if k != side:
        img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if k > side else cv2.INTER_LINEAR)
    return [_with_shape(np.ascontiguousarray(img))], f"upload {name!r} ({w}×{h})"


def _valid_rows(a: np.ndarray) -> np.ndarray:
    a = a.reshape(-1, a.shape[-1])
    return a[np.isfinite(a).all(axis=1)].astype(np.float64)


def _shape_points(data: Any, i: int) -> np.ndarray:
    # The shapes data set gives continuous coordinates (pixel (i, j) covers [j, j+1)); the
    # augment items take pixel indices, half a pixel less.
    return np.concatenate([_valid_rows(data.centres[i]), _valid_rows(data.corners[i])]) - 0.5


# Frame field -> (the data set attributes it needs, how to read sample i). A data set with
# other targets gets a reader here; one without any shows images only.
TARGET_READERS: dict[str, tuple[tuple[str, ...], Callable[[Any, int], np.ndarray]]] = {
    "mask": (("masks",), lambda d, i: np.asarray(d.masks[i])),
    "keypoints": (("centres", "corners"), _shape_points),
    "boxes": (("boxes",), lambda d, i: _valid_rows(np.asarray(d.boxes[i]))),
}


def task_frames(task: Any, n: int = 8) -> tuple[list[Frame], str]:
    """The first ``n`` training images of the task's data set, with the targets it holds."""
    data = task.data
    images = getattr(data, "images", None)
    if images is None or np.asarray(images).ndim != 4:
        raise ValueError(f"source: the task's data set {getattr(data, 'name', '?')!r} has no images to augment; "
                         "allowed: image data sets (digits, shapes, folders)")
    idx = np.asarray(data.train_idx)[:n]
    readers = {k: fn for k, (attrs, fn) in TARGET_READERS.items() if all(hasattr(data, a) for a in attrs)}
    frames = [Frame(np.ascontiguousarray(images[i]), **{k: fn(data, int(i)) for k, fn in readers.items()})
              for i in idx]
    held = ", ".join(readers) or "no targets"
    return frames, f"task data {getattr(data, 'name', '?')!r} ({held})"
