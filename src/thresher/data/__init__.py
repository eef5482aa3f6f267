"""Data layer: datasets named by spec strings, transforms at a chosen resolution, batched loading."""

from .base import BadImageLog, ImageDataset
from .spec import DATASETS, open_dataset

__all__ = ["ImageDataset", "BadImageLog", "open_dataset", "DATASETS"]
