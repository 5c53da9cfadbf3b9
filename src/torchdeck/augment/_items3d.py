"""3-D items: a ``Volume`` (voxels, like an image with depth) and a ``VolumeMask`` (labels per
voxel). Their frame is (depth, height, width); the 3-D transforms move them by 4×4 matrices
(``_geometry3d``) in one fused warp per item (``_warp3d``)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from torchdeck.augment._items import IMAGE_DTYPES, MASK_DTYPES, Item, _shape

__all__ = ["Volume", "VolumeMask"]

_LAYOUTS = {"dhwc": (0, 1, 2, 3), "cdhw": (1, 2, 3, 0)}  # axes of (depth, height, width, channels)


@dataclasses.dataclass(eq=False)
class Volume(Item):
    """Voxels: ``data`` is D×H×W×C (``layout="dhwc"``, numpy's usual) or C×D×H×W (``"cdhw"``,
    torch's Conv3d layout), uint8 (0..255) or float32 (0..1, or any range for warps alone), with
    any number of channels (modalities)."""

    kind: ClassVar[str] = "volume"
    data: np.ndarray
    layout: str = "dhwc"

    def __post_init__(self) -> None:
        d = self.data
        if not isinstance(d, np.ndarray):
            raise ValueError(f"volume must be a numpy array here, got {type(d).__name__}")
        if self.layout not in _LAYOUTS:
            raise ValueError(f"volume: layout must be 'dhwc' or 'cdhw', got {self.layout!r}")
        if d.dtype not in IMAGE_DTYPES:
            raise ValueError(f"volume: voxels must be uint8 (0..255) or float32, got {_shape(d)}")
        if d.ndim != 4 or 0 in d.shape:
            raise ValueError(f"volume must be a non-empty D×H×W or D×H×W×C array (C×D×H×W for tensors), "
                             f"got {_shape(d)}")

    @property
    def size(self) -> tuple[int, int, int]:
        axes = _LAYOUTS[self.layout]
        return self.data.shape[axes[0]], self.data.shape[axes[1]], self.data.shape[axes[2]]

    @property
    def channels(self) -> int:
        return self.data.shape[_LAYOUTS[self.layout][3]]

    def cdhw(self) -> np.ndarray:
        """C×D×H×W (a view when it can be)."""
        return self.data if self.layout == "cdhw" else self.data.transpose(3, 0, 1, 2)


@dataclasses.dataclass(eq=False)
class VolumeMask(Item):
    """Labels per voxel: D×H×W, integer or bool; moved by nearest neighbour so no new label appears."""

    kind: ClassVar[str] = "volume_mask"
    data: np.ndarray

    def __post_init__(self) -> None:
        d = self.data
        if not isinstance(d, np.ndarray):
            raise ValueError(f"volume_mask must be a numpy array here, got {type(d).__name__}")
        if d.dtype not in MASK_DTYPES:
            raise ValueError(f"volume_mask: labels must be bool or integers "
                             f"({', '.join(t.name for t in MASK_DTYPES)}), got {_shape(d)}")
        if d.ndim != 3 or 0 in d.shape:
            raise ValueError(f"volume_mask must be a non-empty D×H×W array, got {_shape(d)}")

    @property
    def size(self) -> tuple[int, int, int]:
        return self.data.shape
