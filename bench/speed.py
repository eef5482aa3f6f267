"""Speed of the large-pool pieces: k-means on 1M x 512 synthetic embeddings with FAISS against scikit-learn.

Both run Lloyd's algorithm for the same number of iterations, K centres, one initialisation, 2 threads, on the same
float32 data (clustered: 1,000 Gaussian blobs); reported: seconds of each, their ratio, and the k-means objective
(mean squared distance to the nearest centre) of each, so speed is not bought with a worse clustering. The other
speed ratios of issue 7 are measured by bench/score_throughput.py (scoring over embedding) and
bench/train_overhead.py (loop over a bare loop, drop-and-pick bookkeeping) in the same `make bench` run.
Usage: python bench/speed.py [--scale 1.0] [--n 1000000] [--dim 512] [--k 200] [--iters 20]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _report import publish


def objective(x: np.ndarray, centres: np.ndarray, block: int = 65536) -> float:
    """Mean squared distance of each row to its nearest centre, in blocks."""
    c2 = (centres**2).sum(1)
    total = 0.0
    for s in range(0, len(x), block):
        b = x[s : s + block]
        d = (b**2).sum(1)[:, None] - 2 * b @ centres.T + c2[None, :]
        total += float(np.maximum(d.min(1), 0).sum())
    return total / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the number of rows (bigger machines)")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import faiss
    from sklearn.cluster import KMeans

    faiss.omp_set_num_threads(args.threads)
    t_start = time.perf_counter()
    n = round(args.n * args.scale)
    rng = np.random.default_rng(0)
    blobs = rng.standard_normal((1000, args.dim)).astype(np.float32) * 3
    x = np.empty((n, args.dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        x[s : s + m] = blobs[rng.integers(0, 1000, m)] + rng.standard_normal((m, args.dim), np.float32)
    init = x[rng.choice(n, args.k, replace=False)].copy()

    t0 = time.perf_counter()
    km = faiss.Kmeans(args.dim, args.k, niter=args.iters, seed=0, verbose=False, max_points_per_centroid=n)
    km.train(x, init_centroids=init)
    t_faiss = time.perf_counter() - t0

    t0 = time.perf_counter()
    sk = KMeans(n_clusters=args.k, init=init, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd").fit(x)
    t_sk = time.perf_counter() - t0

    result = {
        "rows": n, "dim": args.dim, "k": args.k, "iterations": args.iters, "threads": args.threads,
        "seconds": {"faiss": round(t_faiss, 1), "sklearn": round(t_sk, 1)},
        "speedup_faiss_over_sklearn": round(t_sk / t_faiss, 2),
        "objective": {"faiss": round(objective(x, km.centroids), 3),
                      "sklearn": round(objective(x, sk.cluster_centers_.astype(np.float32)), 3)},
    }  # fmt: skip
    publish(
        "speed",
        result,
        what=(
            f"k-means (K={args.k}, {args.iters} Lloyd iterations, one shared initialisation, {args.threads} threads) "
            f"on {n:,} x {args.dim} synthetic float32 embeddings: FAISS against scikit-learn. Scoring over "
            "embedding time and the loop's overhead are in the score_throughput and train_overhead sections."
        ),
        reading=(
            f"FAISS is {result['speedup_faiss_over_sklearn']:.1f}x faster than scikit-learn "
            f"({result['seconds']['faiss']} s vs {result['seconds']['sklearn']} s) at objective "
            f"{result['objective']['faiss']} vs {result['objective']['sklearn']}."
        ),
        minutes=(time.perf_counter() - t_start) / 60,
    )


if __name__ == "__main__":
    main()
