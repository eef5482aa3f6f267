"""Near-duplicates of target images in the pool (004 removed them), so no scorer can win by finding test images.

The default descriptor is the classic tiny-image one: RGB at 16x16, centred per image, cosine similarity. Measured
on tiny-imagenet-32 vs cifar10 train: the one true duplicate (the same photo) scores 0.982, the most similar
non-duplicate 0.973; embeddings of a small CNN put thousands of unrelated pairs above 0.95, so they are an option
(``descriptor: features``) for strong backbones only.
"""

from __future__ import annotations

import numpy as np

from ..data.base import ImageDataset
from ..ops.neighbors import knn_similarity


class PixelDescriptors:
    """(n, 3*size*size) float32 tiny-image descriptors, centred per image, computed block by block when sliced.

    An array-like (``shape``, row slices, ``np.asarray``) so the pool is streamed through the kNN search and never
    held whole: a pool of 1M images would be 3 GB of descriptors.
    """

    def __init__(self, ds: ImageDataset, indices: np.ndarray, size: int = 16):
        self.ds, self.indices, self.size = ds, np.asarray(indices, np.int64), size
        self.shape = (len(self.indices), 3 * size * size)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("PixelDescriptors supports row slices only")
        idx = self.indices[rows]
        out = np.zeros((len(idx), self.shape[1]), np.float32)
        for lo in range(0, len(idx), 4096):
            x, ok = self.ds.load_batch(idx[lo : lo + 4096], self.size)
            v = x.float().reshape(len(x), -1)
            out[lo + np.flatnonzero(ok)] = (v - v.mean(1, keepdim=True)).numpy()
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def near_duplicates(source_desc, target_desc, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Highest cosine similarity of each source row to any target row, and whether it reaches ``threshold``."""
    sim = knn_similarity(source_desc, target_desc, 1)[:, 0]
    return sim.astype(np.float64), sim >= threshold
