"""Batched loading: fetch whole batches (uint8, square, base resolution), optionally in worker processes.

Workers only decode and resize; random augmentation runs on the batch afterwards (on the training device), from
a generator seeded by the step, so a resumed run sees exactly the augmentations it would have seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..errors import ThresherError, UnreadableImage
from .base import ImageDataset
from .spec import open_dataset


def subset_indices(n: int, subset: int | None, seed: int) -> np.ndarray:
    """All indices, or a sorted random subset of ``subset`` of them drawn with ``seed``."""
    if subset is None or subset >= n:
        if subset is not None and subset > n:
            raise ThresherError(f"subset of {subset} requested but the dataset has only {n} examples")
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=subset, replace=False)).astype(np.int64)


def open_data(cfg) -> tuple[ImageDataset, np.ndarray]:
    """The dataset and the example indices a ``DataConfig`` names (an empty dataset is an error)."""
    ds = open_dataset(cfg.spec, data_root=cfg.data_root, strict=cfg.strict)
    if len(ds) == 0:
        raise ThresherError(f"{cfg.spec} holds no images; check that the spec names the right file, folder or split")
    return ds, subset_indices(len(ds), cfg.subset, cfg.subset_seed)


def data_identity(ds: ImageDataset, indices: np.ndarray) -> dict:
    """What a run read: source files (path, size, mtime), example count and a hash of the ids used.

    Part of every fingerprint, so a run never resumes on other data (a regenerated file, another --data-root,
    a machine where a built-in resolves to a different copy).
    """
    files = []
    for f in ds.source_files():
        try:
            st = f.stat()
            files.append(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}")
        except OSError:
            files.append(str(f))
    ids = "\n".join(map(str, ds.ids[indices])).encode()
    return {
        "examples": len(ds),
        "used": len(indices),
        "ids_sha256": hashlib.sha256(ids).hexdigest(),
        "files_sha256": hashlib.sha256("\n".join(files).encode()).hexdigest(),
        "source": str(ds.source or ds.spec),
    }


class _BatchFetch(torch.utils.data.Dataset):
    """Map-style dataset whose item k is batch k (so workers fetch whole batches with vectorised reads)."""

    def __init__(self, ds: ImageDataset, batches: Sequence[np.ndarray], size: int, strict: bool):
        self.ds, self.batches, self.size, self.strict = ds, batches, size, strict

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        try:
            x, ok = self.ds.load_batch(self.batches[k], self.size, strict=self.strict)
        except UnreadableImage as exc:  # cross the process boundary as a message, raised again in the parent
            return k, None, str(exc)
        return k, x, torch.from_numpy(ok)


def iterate_batches(
    ds: ImageDataset,
    batches: Sequence[np.ndarray],
    size: int,
    *,
    num_workers: int = 0,
    strict: bool = False,
    pin_memory: bool = False,
) -> Iterator[tuple[np.ndarray, torch.Tensor, np.ndarray]]:
    """Yield ``(batch_indices, uint8 images of the ok ones (b,3,size,size), ok_mask)`` per batch, in order."""
    fetch = _BatchFetch(ds, batches, size, strict)
    if num_workers == 0:
        source = (fetch[k] for k in range(len(fetch)))
    else:
        source = iter(
            torch.utils.data.DataLoader(
                fetch,
                batch_size=None,
                shuffle=False,
                num_workers=num_workers,
                pin_memory=pin_memory,
                prefetch_factor=4,
                generator=torch.Generator().manual_seed(0),  # worker seeds never come from the global RNG
            )
        )
    for k, x, ok in source:
        if x is None:
            raise ThresherError(f"{ok} (stopped: --strict)")
        ok = ok.numpy() if isinstance(ok, torch.Tensor) else ok
        yield np.asarray(batches[k]), x, ok
