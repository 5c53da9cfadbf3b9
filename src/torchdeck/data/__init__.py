"""Data: built-in offline data sets, splits and loaders."""

from torchdeck.data import _digits  # noqa: F401  (registers "digits")
from torchdeck.data._base import DATASETS, ImageDataset, available, load, register_dataset, seeded_split
from torchdeck.data._loader import TensorLoader

__all__ = ["DATASETS", "ImageDataset", "available", "load", "register_dataset", "seeded_split", "TensorLoader"]
