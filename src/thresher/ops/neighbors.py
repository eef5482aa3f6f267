"""Exact (or IVF) top-k cosine similarity in bounded memory, and the row-chunk helpers shared by scorers and probes.

``knn_similarity`` uses FAISS (``IndexFlatIP``) when it is importable, else chunked torch matmul + top-k; both are
exact and agree to float32 rounding. Queries are read block by block, so a memory-mapped pool of 1M x 512 never has
more than one block in memory. Features may be any array-like with ``shape`` and row slicing (numpy array, memmap,
``EmbeddingStore``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..errors import ThresherError

BACKENDS = ("auto", "torch", "faiss")
# Elements of a (query block x base block) similarity matrix computed at once by the torch path (64 MB of float32).
BLOCK_ELEMENTS = 1 << 24
#: what the IVF path promises against exact search at the default nlist and nprobe (tests/test_realdata_scoring.py,
#: bench/scale.py): the mean |knn score - exact| (the score: the mean of the top-k cosine similarities), and the share
#: of the exact top 10% it selects too. Single queries far from every cluster can be off by more (see BENCHMARKS.md).
IVF_TOLERANCE = {"mean_abs_score_difference": 0.002, "top10_overlap": 0.98}


# ---------------------------------------------------------------------------------------------- shared helpers


def faiss_module(backend: str) -> Any | None:
    """The ``faiss`` module when ``backend`` asks for it ("auto": if importable; "faiss": required), else None."""
    if backend not in BACKENDS:
        raise ThresherError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return None
    try:
        import faiss
    except ImportError:
        if backend == "faiss":
            raise ThresherError(
                "backend 'faiss' requested but faiss is not installed; pip install 'thresher[faiss]'"
            ) from None
        return None
    return faiss


def feature_shape(features: Any, what: str = "features") -> tuple[int, int]:
    """(rows, dim) of a 2-D array-like, or a clear error."""
    shape = tuple(getattr(features, "shape", None) or np.shape(features))
    if len(shape) != 2:
        raise ThresherError(f"{what} must be a 2-D (rows x dim) array, got shape {shape}")
    return int(shape[0]), int(shape[1])


def check_finite(block: np.ndarray, what: str) -> None:
    """NaN or inf in features is a user error (a broken embedding run), reported in one line."""
    if not np.isfinite(block).all():
        bad = int((~np.isfinite(block)).any(axis=1).sum())
        raise ThresherError(f"{what} contain non-finite values (NaN or inf) in {bad} rows")


def iter_rows(features: Any, rows: int, what: str = "features") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` float32 C-contiguous, finite blocks of at most ``rows`` rows."""
    n, _ = feature_shape(features, what)
    rows = max(1, int(rows))
    for start in range(0, n, rows):
        block = np.ascontiguousarray(np.asarray(features[start : start + rows]), dtype=np.float32)
        if not block.flags.writeable:  # a read-only memory map: copy the block (torch needs writable memory)
            block = block.copy()
        check_finite(block, what)
        yield start, block


def load_rows(features: Any, what: str = "features") -> np.ndarray:
    """The whole array as a writable, finite float32 ndarray (a read-only memory map is copied: torch writes)."""
    x = np.ascontiguousarray(np.asarray(features), dtype=np.float32)
    if not x.flags.writeable:
        x = x.copy()
    check_finite(x, what)
    return x


def check_dims(source_dim: int, target_dim: int, who: str) -> None:
    if source_dim != target_dim:
        raise ThresherError(
            f"{who}: feature dimensions differ (source {source_dim}, target {target_dim}); embed both with one model"
        )


def check_k(k: int, who: str, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ThresherError(f"{who}: {name} must be an integer >= 1, got {k!r}")
    return int(k)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero); float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# ---------------------------------------------------------------------------------------------- kNN


def knn_similarity(
    queries: Any,
    base: Any,
    k: int,
    *,
    backend: str = "auto",
    chunk: int | None = None,
    ivf_threshold: int = 100_000,
    nlist: int | None = None,
    nprobe: int | None = None,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-k cosine similarities (n_queries, k), best first, float32; rows of both inputs are L2-normalised inside.

    Exact search, except with FAISS when ``len(base) > ivf_threshold``: then an ``IndexIVFFlat`` (``ivf_settings``)
    is trained on the base: approximate, more probes = better recall and slower, nprobe = nlist is exact; stated
    tolerance: IVF_TOLERANCE.
    ``chunk`` = query rows per block (default: bounded so a block's similarity matrix stays under 64 MB).
    ``return_indices`` adds the base row indices.
    """
    k = check_k(k, "knn_similarity")
    n_q, d_q = feature_shape(queries, "queries")
    n_b, d_b = feature_shape(base, "base")
    if n_b == 0:
        raise ThresherError("knn_similarity: the base set is empty")
    check_dims(d_q, d_b, "knn_similarity")
    if k > n_b:
        raise ThresherError(f"knn_similarity: k={k} is larger than the base set ({n_b} rows)")
    base_n = l2_normalize(load_rows(base, "base features"))
    faiss = faiss_module(backend)
    sims = np.empty((n_q, k), dtype=np.float32)
    idx = np.empty((n_q, k), dtype=np.int64) if return_indices else None
    if faiss is not None:
        index = _faiss_index(faiss, base_n, ivf_threshold, nlist, nprobe)
        rows = chunk or 65536
        for start, block in iter_rows(queries, rows, "query features"):
            d, i = index.search(l2_normalize(block), k)
            sims[start : start + len(block)] = d
            if idx is not None:
                idx[start : start + len(block)] = i
    else:
        base_t = torch.from_numpy(base_n)
        base_rows = min(n_b, max(k, BLOCK_ELEMENTS // 1024))  # base blocks of at most 16k rows
        rows = chunk or max(1, min(65536, BLOCK_ELEMENTS // base_rows))
        with torch.inference_mode():
            for start, block in iter_rows(queries, rows, "query features"):
                v, i = _torch_topk(torch.from_numpy(l2_normalize(block)), base_t, k, base_rows)
                sims[start : start + len(block)] = v.numpy()
                if idx is not None:
                    idx[start : start + len(block)] = i.numpy()
    return (sims, idx) if idx is not None else sims


def agreement(approx: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray]) -> dict:
    """How an approximate top-k search ``(sims, indices)`` agrees with the exact one, in IVF_TOLERANCE's terms
    (on the knn score, the mean of the k similarities), plus recall@k of the neighbours themselves."""
    (sa, ia), (se, ie) = approx, exact
    a, e = sa.astype(np.float64).mean(1), se.astype(np.float64).mean(1)
    top = max(1, len(a) // 10)
    kept = np.intersect1d(np.argsort(-a, kind="stable")[:top], np.argsort(-e, kind="stable")[:top])
    hits = [len(np.intersect1d(x, y)) for x, y in zip(ia, ie, strict=True)]
    diff = np.abs(a - e)
    return {
        "mean_abs_score_difference": float(diff.mean()),
        "p99_abs_score_difference": float(np.quantile(diff, 0.99)),
        "max_abs_score_difference": float(diff.max()),
        "top10_overlap": len(kept) / top,
        "recall": float(np.sum(hits) / ie.size),
    }


def _torch_topk(q: torch.Tensor, base: torch.Tensor, k: int, base_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of q @ base.T, merging per-block top-k so only (|q| x base_rows) is ever materialised."""
    best_v = best_i = None
    for b0 in range(0, len(base), base_rows):
        s = q @ base[b0 : b0 + base_rows].T
        v, i = torch.topk(s, min(k, s.shape[1]), dim=1)
        i = i + b0
        if best_v is None:
            best_v, best_i = v, i
        else:
            v, j = torch.topk(torch.cat([best_v, v], 1), k, dim=1)
            best_i = torch.gather(torch.cat([best_i, i], 1), 1, j)
            best_v = v
    return best_v, best_i


def ivf_settings(n_base: int, ivf_threshold: int, nlist: int | None = None, nprobe: int | None = None) -> dict | None:
    """The IVF index FAISS search uses for a base of ``n_base`` rows (None: exact search): ``nlist`` inverted lists
    (default 4 sqrt(n)) and ``nprobe`` visited per query (default 32, and at least 1/64 of the lists, so the share
    probed does not shrink without bound as the base grows)."""
    if n_base <= ivf_threshold:
        return None
    nlist = nlist or max(1, int(4 * math.sqrt(n_base)))
    return {"index": "ivf-flat", "nlist": nlist, "nprobe": min(nprobe or max(32, nlist // 64), nlist)}


def _faiss_index(faiss: Any, base_n: np.ndarray, ivf_threshold: int, nlist: int | None, nprobe: int | None) -> Any:
    n, d = base_n.shape
    ivf = ivf_settings(n, ivf_threshold, nlist, nprobe)
    if ivf is None:
        index = faiss.IndexFlatIP(d)
    else:
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, ivf["nlist"], faiss.METRIC_INNER_PRODUCT)
        index.train(base_n)
        index.nprobe = ivf["nprobe"]
    index.add(base_n)
    return on_gpu(faiss, index)


def on_gpu(faiss: Any, index: Any) -> Any:
    """The index moved to GPU 0 when this FAISS build has GPU support and a GPU is visible; else unchanged."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return index
    resources = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(resources, 0, index)
    gpu.referenced_resources = resources  # keep the GPU memory pool alive as long as the index
    return gpu
