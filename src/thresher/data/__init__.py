"""Data layer: datasets named by spec strings, transforms at a chosen resolution, batched loading."""

from .base import ImageDataset, BadImageLog
from .spec import open_dataset, DATASETS

__all__ = ["ImageDataset", "BadImageLog", "open_dataset", "DATASETS"]
