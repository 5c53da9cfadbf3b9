"""Data: built-in offline data sets, splits and loaders."""

from torchdeck.data import _digits  # noqa: F401  (registers "digits")
from torchdeck.data._base import DATASETS, ImageDataset, available, load, register_dataset, seeded_split
from torchdeck.data._loader import TensorLoader
from torchdeck.data._shapes import SHAPE_CLASSES, ShapesDataset
from torchdeck.data._tabular import (MISSING_STRINGS, NA_CATEGORY, Table, TabularDataset, TabularEncoding,
                                     read_csv)

__all__ = ["DATASETS", "ImageDataset", "available", "load", "register_dataset", "seeded_split", "TensorLoader",
           "SHAPE_CLASSES", "ShapesDataset", "MISSING_STRINGS", "NA_CATEGORY", "Table", "TabularDataset",
           "TabularEncoding", "read_csv"]
