"""From what callers pass (numpy, torch, torchvision tv_tensors, our items) to items, and back
to the same kinds. Importers are found by (item kind, Python type) through the value's class
hierarchy, so a tv_tensors.Image meets its own importer before torch.Tensor's."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch
from torchvision import tv_tensors

from torchdeck.augment._items import Boxes, Image, Item, Keypoints, Mask
from torchdeck.augment._items3d import Volume, VolumeMask

__all__ = ["Sample", "read_sample", "KNOWN_KEYS"]

Size = tuple[int, int]
Restorer = Callable[[Item, Size], dict[str, Any]]
Importer = Callable[[Any, str, Any], tuple[Item, Restorer]]

# Keyword -> item kind; other keywords must hold an item or a tv_tensor (their type says the kind).
KNOWN_KEYS = {"image": "image", "mask": "mask", "keypoints": "keypoints", "boxes": "boxes", "volume": "volume",
              "volume_mask": "volume_mask"}
# Companions: they ride on another item (labels on boxes, visibility on keypoints).
_COMPANIONS = {"labels": "boxes", "visibility": "keypoints"}
_TV_KINDS: dict[type, str] = {tv_tensors.Image: "image", tv_tensors.Mask: "mask",
                              tv_tensors.BoundingBoxes: "boxes"}
if hasattr(tv_tensors, "KeyPoints"):  # torchvision >= 0.23
    _TV_KINDS[tv_tensors.KeyPoints] = "keypoints"

_IMPORTERS: dict[tuple[str, type], Importer] = {}


def _importer(kind: str, *types: type) -> Callable[[Importer], Importer]:
    def deco(fn: Importer) -> Importer:
        for t in types:
            _IMPORTERS[(kind, t)] = fn
        return fn
    return deco


def _find(kind: str, value: Any, name: str) -> Importer:
    for cls in type(value).__mro__:
        fn = _IMPORTERS.get((kind, cls))
        if fn is not None:
            return fn
    allowed = sorted({t.__name__ for (k, t) in _IMPORTERS if k == kind})
    raise ValueError(f"{name}: cannot read a {type(value).__name__} as {kind}; allowed: {', '.join(allowed)}")


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().as_subclass(torch.Tensor).cpu().numpy()


def _tensor(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(like.device)


def _checked(name: str, make: Callable[[], Item]) -> Item:
    try:
        return make()
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(name) else f"{name}: {msg}") from None


# --- items as they are -------------------------------------------------------------------------
def _own_item(value: Item, name: str, companion: Any) -> tuple[Item, Restorer]:
    return value, lambda item, size: {name: item}


for _kind, _cls in (("image", Image), ("mask", Mask), ("keypoints", Keypoints), ("boxes", Boxes),
                    ("volume", Volume), ("volume_mask", VolumeMask)):
    _importer(_kind, _cls)(_own_item)


# --- images ------------------------------------------------------------------------------------
@_importer("image", np.ndarray)
def _image_numpy(a: np.ndarray, name: str, companion: Any) -> tuple[Item, Restorer]:
    flat = a.ndim == 2
    item = _checked(name, lambda: Image(np.ascontiguousarray(a[:, :, None] if flat else a), "hwc"))

    def restore(out: Image, size: Size) -> dict[str, Any]:
        if out.layout == "chw":  # Normalize ran: a float C×H×W tensor, whatever came in
            return {name: torch.from_numpy(out.data)}
        return {name: out.data[:, :, 0] if flat else out.data}
    return item, restore


@_importer("image", torch.Tensor)
def _image_tensor(t: torch.Tensor, name: str, companion: Any) -> tuple[Item, Restorer]:
    if t.ndim not in (2, 3):
        raise ValueError(f"{name}: a tensor image must be C×H×W or H×W (one image at a time), got shape "
                         f"{tuple(t.shape)} dtype {t.dtype}")
    flat = t.ndim == 2
    a = _numpy(t)
    item = _checked(name, lambda: Image(np.ascontiguousarray(a[None] if flat else a), "chw"))
    wrap = tv_tensors.Image if isinstance(t, tv_tensors.Image) else (lambda x: x)

    def restore(out: Image, size: Size) -> dict[str, Any]:
        d = out.data if out.layout == "chw" else out.data.transpose(2, 0, 1)
        r = _tensor(d[0] if flat else d, t)
        return {name: wrap(r)}
    return item, restore


# --- masks -------------------------------------------------------------------------------------
@_importer("mask", np.ndarray)
def _mask_numpy(a: np.ndarray, name: str, companion: Any) -> tuple[Item, Restorer]:
    item = _checked(name, lambda: Mask(np.ascontiguousarray(a)))
    return item, lambda out, size: {name: out.data}


@_importer("mask", torch.Tensor)
def _mask_tensor(t: torch.Tensor, name: str, companion: Any) -> tuple[Item, Restorer]:
    item = _checked(name, lambda: Mask(np.ascontiguousarray(_numpy(t))))
    wrap = tv_tensors.Mask if isinstance(t, tv_tensors.Mask) else (lambda x: x)
    return item, lambda out, size: {name: wrap(_tensor(out.data, t))}


# --- keypoints ---------------------------------------------------------------------------------
def _visibility_key(name: str) -> str:
    return "visibility" if name == "keypoints" else f"{name}_visibility"


def _flags(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    return _numpy(v) if isinstance(v, torch.Tensor) else np.asarray(v)


@_importer("keypoints", np.ndarray, list, tuple)
def _keypoints_numpy(v: Any, name: str, visibility: Any) -> tuple[Item, Restorer]:
    a = np.asarray(v)
    if a.size == 0:
        a = a.reshape(0, 2)  # [] is no points
    item = _checked(name, lambda: Keypoints(a, _flags(visibility)))
    dtype = a.dtype if a.dtype.kind == "f" else np.float64
    as_list = isinstance(v, (list, tuple))

    def restore(out: Keypoints, size: Size) -> dict[str, Any]:
        xy = out.xy.astype(dtype)
        return {name: xy.tolist() if as_list else xy, _visibility_key(name): out.visible}
    return item, restore


@_importer("keypoints", torch.Tensor)
def _keypoints_tensor(t: torch.Tensor, name: str, visibility: Any) -> tuple[Item, Restorer]:
    tv = isinstance(t, tv_tensors.TVTensor)  # tv_tensors.KeyPoints: any [..., 2] shape
    shape = tuple(t.shape)
    a = _numpy(t).reshape(-1, 2) if tv and t.ndim >= 1 and shape[-1] == 2 else _numpy(t)
    flags = _flags(visibility)
    item = _checked(name, lambda: Keypoints(a, None if flags is None else flags.reshape(-1)))
    dtype = t.dtype if t.dtype.is_floating_point else torch.float64

    def restore(out: Keypoints, size: Size) -> dict[str, Any]:
        xy = _tensor(out.xy, t).to(dtype)
        vis = _tensor(out.visible, t)
        if tv:
            return {name: tv_tensors.KeyPoints(xy.reshape(shape), canvas_size=size),
                    _visibility_key(name): vis.reshape(shape[:-1])}
        return {name: xy, _visibility_key(name): vis}
    return item, restore


# --- boxes -------------------------------------------------------------------------------------
def _labels_key(name: str) -> str:
    return "labels" if name == "boxes" else f"{name}_labels"


def _labels(labels: Any) -> tuple[np.ndarray | None, Callable[[np.ndarray], Any]]:
    """Labels as numpy, and how to give the kept ones back in the kind that came in."""
    if labels is None:
        return None, lambda x: None
    if isinstance(labels, torch.Tensor):
        return _numpy(labels), lambda x: _tensor(x, labels)
    if isinstance(labels, (list, tuple)):
        return np.asarray(labels), lambda x: x.tolist()
    return np.asarray(labels), lambda x: x


def _boxes_restorer(name: str, back: Callable[[np.ndarray], Any], to_kind: Callable[[np.ndarray, Size], Any],
                    has_labels: bool) -> Restorer:
    def restore(out: Boxes, size: Size) -> dict[str, Any]:
        res = {name: to_kind(out.xyxy, size)}
        if has_labels:
            res[_labels_key(name)] = back(out.labels)
        return res
    return restore


@_importer("boxes", np.ndarray, list, tuple)
def _boxes_numpy(v: Any, name: str, labels: Any) -> tuple[Item, Restorer]:
    a = np.asarray(v)
    if a.size == 0:
        a = a.reshape(0, 4)
    lab, back = _labels(labels)
    item = _checked(name, lambda: Boxes(a, lab))
    dtype = a.dtype if a.dtype.kind == "f" else np.float64
    as_list = isinstance(v, (list, tuple))
    to_kind = (lambda b, size: b.astype(dtype).tolist()) if as_list else (lambda b, size: b.astype(dtype))
    return item, _boxes_restorer(name, back, to_kind, labels is not None)


_TV_BOX_FORMATS = {"XYXY": "xyxy", "XYWH": "xywh", "CXCYWH": "cxcywh"}


@_importer("boxes", torch.Tensor)
def _boxes_tensor(t: torch.Tensor, name: str, labels: Any) -> tuple[Item, Restorer]:
    from torchvision.ops import box_convert

    fmt = None
    plain = t.detach().as_subclass(torch.Tensor)
    if isinstance(t, tv_tensors.BoundingBoxes):
        fmt = t.format.name if hasattr(t.format, "name") else str(t.format)
        if fmt not in _TV_BOX_FORMATS:
            raise ValueError(f"{name}: bounding box format {fmt} is not supported; allowed: "
                             f"{', '.join(_TV_BOX_FORMATS)} (rotated boxes are not)")
        if fmt != "XYXY" and plain.ndim == 2 and plain.shape[-1] == 4:
            plain = box_convert(plain.double(), _TV_BOX_FORMATS[fmt], "xyxy")
    lab, back = _labels(labels)
    item = _checked(name, lambda: Boxes(_numpy(plain), lab))
    dtype = t.dtype if t.dtype.is_floating_point else torch.float64

    def to_kind(b: np.ndarray, size: Size) -> Any:
        r = _tensor(b, t)
        if fmt is None:
            return r.to(dtype)
        if fmt != "XYXY":
            r = box_convert(r, "xyxy", _TV_BOX_FORMATS[fmt])
        return tv_tensors.BoundingBoxes(r.to(dtype), format=fmt, canvas_size=size)
    return item, _boxes_restorer(name, back, to_kind, labels is not None)


# --- volumes -----------------------------------------------------------------------------------
@_importer("volume", np.ndarray)
def _volume_numpy(a: np.ndarray, name: str, companion: Any) -> tuple[Item, Restorer]:
    grey = a.ndim == 3  # D×H×W: one channel, given back without it
    item = _checked(name, lambda: Volume(np.ascontiguousarray(a[..., None] if grey else a), "dhwc"))

    def restore(out: Volume, size: Size) -> dict[str, Any]:
        if out.layout == "cdhw":  # Normalize ran: a float C×D×H×W tensor, whatever came in
            return {name: torch.from_numpy(np.ascontiguousarray(out.data))}
        return {name: out.data[..., 0] if grey else out.data}
    return item, restore


@_importer("volume", torch.Tensor)
def _volume_tensor(t: torch.Tensor, name: str, companion: Any) -> tuple[Item, Restorer]:
    if t.ndim not in (3, 4):
        raise ValueError(f"{name}: a tensor volume must be C×D×H×W or D×H×W (one volume at a time), got shape "
                         f"{tuple(t.shape)} dtype {t.dtype}")
    grey = t.ndim == 3
    a = _numpy(t)
    item = _checked(name, lambda: Volume(np.ascontiguousarray(a[None] if grey else a), "cdhw"))

    def restore(out: Volume, size: Size) -> dict[str, Any]:
        d = out.cdhw()
        return {name: _tensor(d[0] if grey else d, t)}
    return item, restore


@_importer("volume_mask", np.ndarray)
def _volume_mask_numpy(a: np.ndarray, name: str, companion: Any) -> tuple[Item, Restorer]:
    item = _checked(name, lambda: VolumeMask(np.ascontiguousarray(a)))
    return item, lambda out, size: {name: out.data}


@_importer("volume_mask", torch.Tensor)
def _volume_mask_tensor(t: torch.Tensor, name: str, companion: Any) -> tuple[Item, Restorer]:
    item = _checked(name, lambda: VolumeMask(np.ascontiguousarray(_numpy(t))))
    return item, lambda out, size: {name: _tensor(out.data, t)}


# --- a whole sample ----------------------------------------------------------------------------
@dataclasses.dataclass
class Sample:
    items: dict[str, Item]
    size: Size
    restorers: dict[str, Restorer]

    def restore(self, items: dict[str, Item], size: Size) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, fn in self.restorers.items():
            out.update(fn(items[name], size))
        return out


def _kind_of(name: str, value: Any) -> str:
    if name in KNOWN_KEYS:
        return KNOWN_KEYS[name]
    if isinstance(value, Item):
        return value.kind
    for cls in type(value).__mro__:
        if cls in _TV_KINDS:
            return _TV_KINDS[cls]
    raise ValueError(f"unknown item {name!r}: use one of {', '.join([*KNOWN_KEYS, *_COMPANIONS])}, seed, size, "
                     f"fuse, or pass an item (A.Image, A.Mask, A.Keypoints, A.Boxes, A.Volume, A.VolumeMask) or a tv_tensor under any name; "
                     f"got {type(value).__name__}")


def _dims(size: tuple[int, ...]) -> str:
    return "×".join(map(str, size)) + (" (height×width)" if len(size) == 2 else " (depth×height×width)")


def _frame(items: dict[str, Item], values: dict[str, Any], size: Any) -> Size:
    """All items must share one frame: images and masks by shape, tv_tensors by canvas_size."""
    frames: list[tuple[str, Size]] = []
    for name, item in items.items():
        if item.size is not None:
            frames.append((name, item.size))
        canvas = getattr(values[name], "canvas_size", None)
        if canvas is not None:
            frames.append((f"{name} (canvas_size)", (int(canvas[0]), int(canvas[1]))))
    if size is not None:
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ValueError(f"size must be (height, width) in pixels, got {size!r}")
        frames.append(("size", (int(size[0]), int(size[1]))))
    if not frames:
        raise ValueError("keypoints and boxes alone need the frame they live in: pass size=(height, width) "
                         "(or an image or mask)")
    first_name, first = frames[0]
    for name, s in frames[1:]:
        if s != first:
            raise ValueError(f"{name}: size {_dims(s)} does not match {first_name} {_dims(first)}")
    return first


def read_sample(values: dict[str, Any], size: Any) -> Sample:
    companions = {k: values.pop(k) for k in list(values) if k in _COMPANIONS}
    for k, v in companions.items():
        owner = _COMPANIONS[k]
        if values.get(owner) is None and v is not None:
            raise ValueError(f"{k} given without {owner}")
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        raise ValueError(f"nothing to augment: pass at least one of {', '.join(KNOWN_KEYS)}")
    items: dict[str, Item] = {}
    restorers: dict[str, Restorer] = {}
    for name, value in values.items():
        kind = _kind_of(name, value)
        companion = next((v for k, v in companions.items() if _COMPANIONS[k] == name), None)
        if companion is not None and isinstance(value, Item):
            raise ValueError(f"{name}: an A.{type(value).__name__} carries its own labels/visibility; "
                             f"do not pass them separately")
        items[name], restorers[name] = _find(kind, value, name)(value, name, companion)
    return Sample(items, _frame(items, values, size), restorers)
