"""k-means (k-means++ seeding + Lloyd iterations) in torch with bounded memory, or FAISS when installed.

Distances are computed block by block (``iter_sq_dists``), so an (n x k) matrix is never held whole: each block has
at most ``BLOCK_ELEMENTS`` entries. Used by the clustering scorers (000) and available to anyone who needs centres.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..errors import ThresherError
from .neighbors import BLOCK_ELEMENTS, check_k, faiss_module, feature_shape, iter_rows, load_rows, on_gpu


def _rows_per_block(k: int) -> int:
    return max(1, min(65536, BLOCK_ELEMENTS // max(1, k)))


def pairwise_sq_dists(x: Any, c: Any) -> torch.Tensor:
    """Squared Euclidean distances (n, k) between rows of ``x`` and ``c`` (float32, clamped at 0); one block."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    c = torch.as_tensor(np.asarray(c, dtype=np.float32)) if not isinstance(c, torch.Tensor) else c.float()
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    return d.clamp_min_(0.0)


def iter_sq_dists(
    x: Any, centres: Any, *, rows: int | None = None, what: str = "features", transform=None
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, block)`` of squared distances to ``centres`` for consecutive row blocks of ``x``.

    ``x`` may be memory-mapped; ``transform`` (e.g. L2 normalisation) is applied to each float32 block first.
    """
    c = torch.as_tensor(np.ascontiguousarray(centres, dtype=np.float32))
    c_sq = (c * c).sum(1)[None, :]
    with torch.inference_mode():
        for start, block in iter_rows(x, rows or _rows_per_block(len(c)), what):
            if transform is not None:
                block = transform(block)
            xb = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
            d = (xb * xb).sum(1, keepdim=True) - 2.0 * (xb @ c.T) + c_sq
            yield start, d.clamp_min_(0.0)


def assign(x: Any, centres: Any, *, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every row and its squared distance: (assignment int64 (n,), sq_dist float64 (n,))."""
    n, _ = feature_shape(x)
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    for start, d in iter_sq_dists(x, centres, rows=rows):
        v, i = d.min(1)
        labels[start : start + len(d)] = i.numpy()
        dist[start : start + len(d)] = v.double().numpy()
    return labels, dist


def kmeans(
    x: Any,
    k: int,
    *,
    iters: int = 50,
    seed: int = 0,
    n_init: int = 1,
    backend: str = "auto",
    tol: float = 1e-6,
    max_points_per_centre: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of ``x`` into ``k`` groups: (centres float32 (k, d), assignment int64 (n,)).

    Seeding is greedy k-means++ in torch for both backends; the Lloyd iterations then run in FAISS (``faiss.Kmeans``
    from those centroids) when backend is "auto" and faiss is importable, or "faiss"; "torch" forces ours (Lloyd,
    empty clusters re-seeded with the points farthest from their centres). ``n_init`` seeded restarts keep the lowest
    inertia. ``max_points_per_centre`` trains on a seeded subsample of k * that many rows (both backends), then
    assigns every row; None = all rows. Deterministic given ``seed``.
    """
    k = check_k(k, "kmeans")
    check_k(iters, "kmeans", "iters")
    check_k(n_init, "kmeans", "n_init")
    n, d = feature_shape(x, "kmeans input")
    if n == 0:
        raise ThresherError("kmeans: no rows to cluster")
    if k > n:
        raise ThresherError(f"kmeans: k={k} is larger than the number of rows ({n})")
    faiss = faiss_module(backend)
    x_np = load_rows(x, "kmeans input")
    train = x_np
    if max_points_per_centre is not None and n > k * max_points_per_centre:
        pick = np.sort(np.random.default_rng(seed).choice(n, k * max_points_per_centre, replace=False))
        train = x_np[pick]
    xt = torch.from_numpy(train)
    best: tuple[float, np.ndarray] | None = None
    for run in range(n_init):
        with torch.inference_mode():
            init = kmeans_plus_plus(xt, k, torch.Generator().manual_seed(int(seed) + run))
        if faiss is not None:
            centres, inertia = _faiss_lloyd(faiss, train, init.numpy(), iters=iters)
        else:
            centres, inertia = _lloyd(xt, init, iters=iters, tol=tol)
        if best is None or inertia < best[0]:
            best = (inertia, centres)
    centres = best[1]
    labels = _faiss_assign(faiss, x_np, centres) if faiss is not None else assign(x_np, centres)[0]
    return centres, labels


def kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007): 2 + log k candidates per step, keep the best."""
    n = len(x)
    trials = 2 + int(math.log(k))
    rows = _rows_per_block(trials)
    centres = torch.empty((k, x.shape[1]), dtype=x.dtype)
    first = int(torch.randint(n, (1,), generator=gen))
    centres[0] = x[first]
    closest = _min_sq_dist(x, centres[:1])
    for j in range(1, k):
        cum = torch.cumsum(closest.double(), 0)
        total = float(cum[-1])
        if total <= 0.0:  # every point already coincides with a centre: pick uniformly
            cand = torch.randint(n, (trials,), generator=gen)
        else:  # D^2 sampling by inverting the cumulative sum (no category limit, unlike multinomial)
            u = torch.rand(trials, generator=gen, dtype=torch.float64) * total
            cand = torch.searchsorted(cum, u, right=True).clamp_max_(n - 1)
        # potential (sum of squared distances) if each candidate were added; keep the lowest
        new_closest = torch.cat(
            [
                torch.minimum(closest[s : s + rows, None], pairwise_sq_dists(x[s : s + rows], x[cand]))
                for s in range(0, n, rows)
            ]
        )
        best = int(torch.argmin(new_closest.double().sum(0)))
        centres[j] = x[cand[best]]
        closest = new_closest[:, best].contiguous()
    return centres


def _min_sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    rows = _rows_per_block(len(c))
    return torch.cat([pairwise_sq_dists(x[s : s + rows], c).min(1).values for s in range(0, len(x), rows)])


def _assign_t(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = _rows_per_block(len(c))
    vals, idx = [], []
    for s in range(0, len(x), rows):
        v, i = pairwise_sq_dists(x[s : s + rows], c).min(1)
        vals.append(v)
        idx.append(i)
    return torch.cat(idx), torch.cat(vals)


def _lloyd(x: torch.Tensor, centres: torch.Tensor, *, iters: int, tol: float) -> tuple[np.ndarray, float]:
    """Lloyd steps from the given centres until assignments settle, inertia stalls or ``iters`` is reached."""
    k = len(centres)
    x64 = x.double()
    with torch.inference_mode():
        labels, dist = _assign_t(x, centres)
        prev_inertia = float(dist.double().sum())
        inertia = prev_inertia
        for _ in range(iters):
            counts = torch.bincount(labels, minlength=k)
            sums = torch.zeros((k, x.shape[1]), dtype=torch.float64).index_add_(0, labels, x64)
            centres = (sums / counts.clamp_min(1)[:, None].double()).float()
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):  # re-seed each empty cluster with one of the points farthest from its centre
                far = torch.argsort(dist, descending=True, stable=True)[: len(empty)]
                centres[empty] = x[far]
            new_labels, dist = _assign_t(x, centres)
            inertia = float(dist.double().sum())
            settled = torch.equal(new_labels, labels) and not len(empty)
            labels = new_labels
            if settled or abs(prev_inertia - inertia) <= tol * max(prev_inertia, 1e-30):
                break
            prev_inertia = inertia
    return centres.numpy(), inertia


def _faiss_lloyd(faiss: Any, x: np.ndarray, init: np.ndarray, *, iters: int) -> tuple[np.ndarray, float]:
    """FAISS Lloyd iterations from our k-means++ centres (so both backends start from the same seeds)."""
    k = len(init)
    # no subsampling inside FAISS (we subsample ourselves) and no warning about few points per centre
    opts = dict(niter=iters, verbose=False, min_points_per_centroid=1, max_points_per_centroid=max(1, -(-len(x) // k)))
    gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(x.shape[1], k, gpu=gpu, **opts)
    km.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    centres = np.ascontiguousarray(km.centroids, dtype=np.float32)
    _, dist = _faiss_search(faiss, x, centres)
    return centres, float(dist.sum())


def _faiss_search(faiss: Any, x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.IndexFlatL2(centres.shape[1])
    index.add(centres)
    index = on_gpu(faiss, index)
    labels = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), 65536):
        d, i = index.search(x[start : start + 65536], 1)
        labels[start : start + len(i)] = i[:, 0]
        dist[start : start + len(i)] = d[:, 0]
    return labels, dist


def _faiss_assign(faiss: Any, x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return _faiss_search(faiss, x, centres)[0]
