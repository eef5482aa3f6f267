"""Data layer: datasets named by spec strings, transforms at a chosen resolution, batched loading.

The dataset kinds, one module each, registered in ``spec.DATASETS`` on import; this list is their roster.
"""

from . import builtin, coco, folder, hf, idx, masks, npz, parquet, sources, voc, wds  # noqa: F401  (the dataset kinds)
from .base import BadImageLog, ImageDataset
from .spec import DATASETS, open_dataset

__all__ = ["ImageDataset", "BadImageLog", "open_dataset", "DATASETS"]
