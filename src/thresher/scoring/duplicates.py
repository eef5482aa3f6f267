"""Near-duplicates of target images in the pool (004 removed them), so no scorer can win by finding test images.

The default descriptor is the classic tiny-image one: RGB at 16x16, centred per image, cosine similarity. Measured
on tiny-imagenet-32 vs cifar10 train: the one true duplicate (the same photo) scores 0.982, the most similar
non-duplicate 0.973; embeddings of a small CNN put thousands of unrelated pairs above 0.95, so they are an option
(``descriptor: features``) for strong backbones only.
"""

from __future__ import annotations

import numpy as np

from ..data.base import ImageDataset
from ..data.loader import iterate_batches
from .neighbors import knn_similarity


def pixel_descriptors(
    ds: ImageDataset, indices: np.ndarray, size: int = 16, batch: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3*size*size) float32 tiny-image descriptors centred per image, and which images could be read at all."""
    out = np.zeros((len(indices), 3 * size * size), np.float32)
    readable = np.zeros(len(indices), bool)
    batches = [indices[i : i + batch] for i in range(0, len(indices), batch)]
    for k, (_, x, ok) in enumerate(iterate_batches(ds, batches, size)):
        rows = np.flatnonzero(ok) + k * batch
        v = x.float().reshape(len(x), -1)
        out[rows] = (v - v.mean(1, keepdim=True)).numpy()
        readable[rows] = True
    return out, readable


def near_duplicates(source_desc, target_desc, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Highest cosine similarity of each source row to any target row, and whether it reaches ``threshold``."""
    sim = knn_similarity(np.asarray(source_desc, np.float32), np.asarray(target_desc, np.float32), 1)[:, 0]
    return sim.astype(np.float64), sim >= threshold
