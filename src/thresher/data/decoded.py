"""Decode a dataset once, at one resolution, into a memory-mapped uint8 array that every later pass reads.

Scoring trains several models and embeds both sides with each (000, 004); for datasets whose reads decode files
(JPEG folders, tar shards, parquet) that would decode every image dozens of times. ``decode_once`` makes one pass
(resumable: killed, it continues from its last flushed block), records which images could be read at all, and
returns a dataset over the decoded pixels with the original ids, labels and classes. Datasets that already are
arrays (``npz``, built-ins) are returned as they are: slicing them decodes nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import ThresherError
from .base import ImageDataset
from .loader import data_identity, iterate_batches
from .npz import ArrayDataset

IMAGES = "images.npy"
READABLE = "readable.npy"
PROGRESS = "progress.json"


class DecodedDataset(ArrayDataset):
    """Row ``k`` is example ``indices[k]`` of ``original``, decoded at ``size`` x ``size`` (RGB)."""

    def __init__(
        self, images: np.ndarray, original: ImageDataset, indices: np.ndarray, size: int, path: Path | None = None
    ):
        super().__init__(images, original.labels[indices], classes=original.classes, spec=original.spec)
        self.original, self.original_indices, self.size, self.path = original, indices, size, path
        self.descriptions = getattr(original, "descriptions", None)
        if original.multilabels is not None:
            self.multilabels = original.multilabels[indices]
        if original.captions is not None:
            self.captions = original.captions[indices]
        self.source = f"{original.source or original.spec} (decoded at {size} px)"

    def _make_ids(self) -> np.ndarray:
        return self.original.ids[self.original_indices]

    def __getstate__(self) -> dict:
        """Pickled by the path of its memory map (to workers, Ray actors), not by a copy of every decoded image."""
        state = self.__dict__.copy()
        if self.path is not None:
            state["images"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.images is None:
            self.images = np.load(self.path, mmap_mode="r")

    def source_files(self) -> list[Path]:
        return self.original.source_files()

    def batch_targets(self, indices: np.ndarray, size: int) -> dict[str, list] | None:
        """The original's (dense targets are annotations, not pixels: nothing of them is decoded here)."""
        return self.original.batch_targets(self.original_indices[np.asarray(indices)], size)


def needs_decoding(ds: ImageDataset) -> bool:
    """Whether reading ``ds`` decodes files (array datasets are sliced, never decoded)."""
    if isinstance(ds, ArrayDataset):
        return False
    parts = getattr(ds, "parts", None)  # a ConcatView decodes when any of its parts does
    if parts is not None:
        return any(needs_decoding(p[0]) for p in parts)
    return True


def decode_once(
    ds: ImageDataset,
    indices: np.ndarray,
    size: int,
    folder: Path,
    *,
    num_workers: int = 0,
    batch: int = 1024,
    log=print,
    runtime=None,
) -> tuple[ImageDataset, np.ndarray, np.ndarray]:
    """``(dataset, rows, readable)``: where to read the examples ``indices`` of ``ds`` from, and which could be read.

    For an array dataset that is ``ds`` itself with ``rows = indices`` and every image readable. Otherwise the images
    are decoded once into ``folder`` (``rows`` = positions 0..n-1 of the cache); unreadable images are zeros there and
    flagged False in ``readable``. ``runtime`` (a RuntimeConfig) with ``engine: ray`` reads the images on Ray actors.
    """
    indices = np.asarray(indices, np.int64)
    if not needs_decoding(ds):
        return ds, indices, np.ones(len(indices), bool)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = _key(ds, indices, size)
    progress_file = folder / PROGRESS
    progress = json.loads(progress_file.read_text()) if progress_file.is_file() else {}
    n = len(indices)
    shape = (n, size, size, 3)
    if progress.get("key") != key or not (folder / IMAGES).is_file():
        for name in (IMAGES, READABLE, PROGRESS):
            (folder / name).unlink(missing_ok=True)
        _check_space(folder, n * size * size * 3)
        np.lib.format.open_memmap(folder / IMAGES, mode="w+", dtype=np.uint8, shape=shape).flush()
        np.lib.format.open_memmap(folder / READABLE, mode="w+", dtype=bool, shape=(n,)).flush()
        progress = {"key": key, "done": 0, "complete": False}
        atomic.write_json(progress_file, progress)
    if not progress["complete"]:
        images = np.lib.format.open_memmap(folder / IMAGES, mode="r+")
        readable = np.lib.format.open_memmap(folder / READABLE, mode="r+")
        start = int(progress["done"])
        if start:
            log(f"{ds.spec}: resuming the decoding pass at image {start} of {n}")
        else:
            log(f"{ds.spec}: decoding {n} images once at {size} px into {folder}")
        batches = [indices[i : i + batch] for i in range(start, n, batch)]
        flushed_at = start
        if runtime is not None and runtime.engine == "ray":
            from ..ray_engine import decode_batches

            stream = decode_batches(
                ds, batches, size, address=runtime.ray_address, actors=runtime.ray_actors, threads=runtime.threads
            )
        else:
            stream = iterate_batches(ds, batches, size, num_workers=num_workers)
        for k, (_, x, ok) in enumerate(stream):
            lo = start + k * batch
            rows = lo + np.flatnonzero(ok)
            images[rows] = x.permute(0, 2, 3, 1).numpy()
            readable[lo : lo + len(ok)] = ok
            done = lo + len(ok)
            if done - flushed_at >= 16 * batch or done == n:  # flush, then record: a kill never skips a block
                images.flush()
                readable.flush()
                atomic.write_json(progress_file, {"key": key, "done": done, "complete": done == n})
                flushed_at = done
        del images, readable
        if n == 0:
            atomic.write_json(progress_file, {"key": key, "done": 0, "complete": True})
    images = np.load(folder / IMAGES, mmap_mode="r")
    readable = np.array(np.load(folder / READABLE, mmap_mode="r"))
    return DecodedDataset(images, ds, indices, size, folder / IMAGES), np.arange(n, dtype=np.int64), readable


def _key(ds: ImageDataset, indices: np.ndarray, size: int) -> str:
    ident = json.dumps({"data": data_identity(ds, indices), "size": size}, sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()


def _check_space(folder: Path, nbytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise ThresherError(
            f"decoding the pool once needs {nbytes / 2**30:.1f} GiB in {folder} but only {free / 2**30:.1f} GiB "
            "is free; give --cache on a larger disk"
        )
