"""``thresher pretrain``: the data of a TrainConfig (a dataset, a subset, a selection manifest) through the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.base import ImageDataset
from ..data.loader import open_data
from ..data.manifest import Manifest
from ..errors import ThresherError
from ..train.config import TrainConfig
from ..train.engine import train_on


def pretrain(cfg: TrainConfig, out: str | Path, *, force: bool = False, log=print) -> dict:
    """Run (or resume) a training run into ``out``; returns its summary (losses per epoch, cost)."""
    ds, indices = open_data(cfg.data)
    if cfg.manifest:
        indices = manifest_indices(cfg.manifest, ds, indices)
    return train_on(ds, indices, cfg, out, force=force, log=log)


def manifest_indices(folder: str | Path, ds: ImageDataset, allowed: np.ndarray) -> np.ndarray:
    """The training multiset of a selection manifest: dataset indices, each repeated ``count`` times (000, 004)."""
    manifest = Manifest.read(folder)
    positions, _, counts = manifest.resolve(ds.ids)
    outside = ~np.isin(positions, allowed)
    if outside.any():
        raise ThresherError(
            f"{int(outside.sum())} manifest ids are outside the data's subset (first: {manifest.ids[outside][0]}); "
            "drop the subset or select from the same data"
        )
    return np.repeat(positions, counts)
