"""Data: built-in offline data sets, images from disk, splits and loaders."""

from torchdeck.data import _digits  # noqa: F401  (registers "digits")
from torchdeck.data._base import DATASETS, ImageDataset, available, load, register_dataset, seeded_split
from torchdeck.data._folders import (FITS, IMAGE_EXTENSIONS, ImageFiles, ImageMaskFiles, SkippedFilesWarning,
                                     image_folder, image_mask_folder, read_image, read_mask)
from torchdeck.data._image_csv import image_csv
from torchdeck.data._loader import TensorLoader
from torchdeck.data._loaders import MAX_WORKERS, default_num_workers, loader
from torchdeck.data._shapes import SHAPE_CLASSES, ShapesDataset
from torchdeck.data._splits import SPLITS, TRAIN_VALUES, VALID_VALUES, column_split, random_split, stratified_split
from torchdeck.data._tabular import (MISSING_STRINGS, NA_CATEGORY, Table, TabularDataset, TabularEncoding,
                                     read_csv)

__all__ = ["DATASETS", "ImageDataset", "available", "load", "register_dataset", "seeded_split", "TensorLoader",
           "SHAPE_CLASSES", "ShapesDataset", "MISSING_STRINGS", "NA_CATEGORY", "Table", "TabularDataset",
           "TabularEncoding", "read_csv",
           "FITS", "IMAGE_EXTENSIONS", "ImageFiles", "ImageMaskFiles", "SkippedFilesWarning", "image_folder",
           "image_mask_folder", "read_image", "read_mask", "image_csv", "MAX_WORKERS", "default_num_workers",
           "loader", "SPLITS", "TRAIN_VALUES", "VALID_VALUES", "column_split", "random_split",
           "stratified_split"]
