"""Pools of millions on one machine, and the engines past it (issue 8).

1. Scoring a memory-mapped pool of 1M and 5M x 256 synthetic float32 embeddings (clustered: 2,000 Gaussian blobs)
   against a 10,000-row target with the knn and cluster-min scorers, once with FAISS and once with the exact torch
   path, each in its own process: wall seconds, peak anonymous memory (RssAnon, what the process itself allocates;
   the memory map's file pages are the kernel's page cache and reclaimable) and peak RSS, and the agreement of the two
   paths (largest absolute score difference, and the share of the top 10% selected by both).
2. knn against a 200,000-row target, past the IVF threshold: FAISS IVF (default nlist and nprobe) against exact
   search for 100,000 pool rows (noisier blobs than in 1., so the approximation has something to miss): seconds,
   recall@10, the largest score difference and the top-10% overlap, next to the stated IVF_TOLERANCE.
3. Ray against local embedding throughput on 30,000 real images (tiny-imagenet-32 train, resnet18 at 32 px), the
   same store written by both.
Usage: python bench/scale.py [--scale 1.0] [--rows 1000000,5000000] [--skip-ray]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import POOL, Clock, parser
from _report import publish

DIM, TARGET_ROWS, BLOBS = 256, 10_000, 2_000


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Samples RssAnon and VmRSS every 20 ms in a thread; the peaks in MiB."""

    def __enter__(self) -> PeakMemory:
        self.anon = self.rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.anon = max(self.anon, _status_kib("RssAnon"))
            self.rss = max(self.rss, _status_kib("VmRSS"))
            self._stop.wait(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def make_pool(path: Path, rows: int, seed: int = 0, noise: float = 0.5) -> None:
    """A float32 .npy of ``rows`` x DIM clustered embeddings, written block by block (never whole in memory)."""
    rng = np.random.default_rng(seed)
    blobs = rng.standard_normal((BLOBS, DIM)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, DIM))
    for s in range(0, rows, 250_000):
        m = min(250_000, rows - s)
        out[s : s + m] = blobs[rng.integers(0, BLOBS, m)] + noise * rng.standard_normal((m, DIM), np.float32)
    out.flush()
    del out
    target = blobs[rng.integers(0, BLOBS // 10, TARGET_ROWS)] + noise * rng.standard_normal((TARGET_ROWS, DIM))
    np.save(path.with_suffix(".target.npy"), target.astype(np.float32))


def score_child(pool: str, method: str, backend: str, out: str) -> None:
    """In a fresh process: fit ``method`` on the target, score the memory-mapped pool; write scores and numbers."""
    import torch

    from thresher.scoring import SCORERS
    from thresher.scoring.base import Side

    torch.set_num_threads(2)
    x = np.load(pool, mmap_mode="r")
    t = np.load(Path(pool).with_suffix(".target.npy"))
    src = Side("pool", np.arange(len(x)).astype(str).astype(object), np.full(len(x), -1), features=x)
    tgt = Side("target", np.arange(len(t)).astype(str).astype(object), np.full(len(t), -1), features=t)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        scorer = SCORERS.create(method, backend=backend).fit(src, tgt)
        scores = scorer.score(src)
        seconds = time.perf_counter() - t0
    np.save(out, scores.astype(np.float32))
    Path(out).with_suffix(".json").write_text(
        json.dumps({"seconds": round(seconds, 1), "peak_anon_mib": mem.anon // 1024, "peak_rss_mib": mem.rss // 1024})
    )


def run_scoring(rows: int, tmp: Path) -> dict:
    pool = tmp / f"pool-{rows}.npy"
    make_pool(pool, rows)
    result: dict = {"rows": rows, "dim": DIM, "file_mib": round(pool.stat().st_size / 2**20)}
    for method in ("knn", "cluster-min"):
        per: dict = {}
        scores = {}
        for backend in ("faiss", "torch"):
            out = tmp / f"s-{rows}-{method}-{backend}.npy"
            subprocess.run([sys.executable, __file__, "--child", str(pool), method, backend, str(out)], check=True)
            per[backend] = json.loads(out.with_suffix(".json").read_text())
            scores[backend] = np.load(out)
        a, b = scores["faiss"], scores["torch"]
        k = max(1, len(a) // 10)
        top_a, top_b = np.argpartition(-a, k - 1)[:k], np.argpartition(-b, k - 1)[:k]
        per["max_abs_difference"] = float(np.abs(a - b).max())
        per["top10_overlap"] = round(len(np.intersect1d(top_a, top_b)) / k, 4)
        per["faiss_speedup"] = round(per["torch"]["seconds"] / max(per["faiss"]["seconds"], 1e-9), 2)
        result[method] = per
    pool.unlink()
    return result


def run_ivf(tmp: Path, queries: int, base: int) -> dict:
    """knn similarities of ``queries`` rows against a ``base``-row target: exact FAISS search against IVF."""
    from thresher.ops.neighbors import IVF_TOLERANCE, agreement, knn_similarity

    make_pool(tmp / "ivf-q.npy", queries, seed=1, noise=1.5)
    make_pool(tmp / "ivf-b.npy", base, seed=1, noise=1.5)  # the same blobs (same seed), other draws
    q, b = np.load(tmp / "ivf-q.npy", mmap_mode="r"), np.load(tmp / "ivf-b.npy")
    res: dict = {"queries": queries, "target_rows": base, "stated": IVF_TOLERANCE}
    got = {}
    for name, threshold in (("exact", 10**12), ("ivf", 100_000)):
        t0 = time.perf_counter()
        got[name] = knn_similarity(q, b, 10, backend="faiss", ivf_threshold=threshold, return_indices=True)
        res[f"{name}_seconds"] = round(time.perf_counter() - t0, 1)
    res.update({k: round(v, 4) for k, v in agreement(got["ivf"], got["exact"]).items()})
    res["ivf_speedup"] = round(res["exact_seconds"] / max(res["ivf_seconds"], 1e-9), 2)
    return res


def run_ray(tmp: Path, rows: int) -> dict:
    """Embed the same real images with the local engine and with a local 2-CPU Ray; images/s of each."""
    from thresher.config import build_config
    from thresher.embed import EmbedConfig, embed

    res: dict = {"images": rows}
    stores = {}
    for engine in ("local", "ray"):
        cfg = build_config(EmbedConfig, values={
            "data": {"spec": POOL, "subset": rows}, "backbone": "resnet18", "resolution": 32, "batch_size": 256,
            "shard_size": 4096, "runtime": {"progress": False, "engine": engine, "threads": 2},
        })  # fmt: skip
        if engine == "ray":
            from thresher.ray_engine import connect

            t0 = time.perf_counter()
            connect(None, 2)
            res["ray_start_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        stores[engine] = embed(cfg, tmp / f"embed-{engine}", log=lambda *_: None)
        res[f"{engine}_images_per_s"] = round(rows / (time.perf_counter() - t0), 1)
    a, b = (np.asarray(stores[e][:]) for e in ("local", "ray"))
    res["ray_over_local"] = round(res["ray_images_per_s"] / res["local_images_per_s"], 3)
    res["max_abs_difference"] = float(np.abs(a - b).max())
    return res


def table(result: dict) -> str:
    """The scoring measurements as a Markdown table (one row per pool size, method and path)."""
    rows = [
        "| pool rows | method | path | seconds | peak anonymous MiB | peak RSS MiB | top-10% overlap, FAISS vs torch |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in result["scoring"]:
        for m in ("knn", "cluster-min"):
            for backend, name in (("faiss", "FAISS"), ("torch", "exact torch")):
                p = r[m][backend]
                rows.append(
                    f"| {r['rows']:,} | {m} | {name} | {p['seconds']} | {p['peak_anon_mib']:,} | {p['peak_rss_mib']:,} "
                    f"| {r[m]['top10_overlap']} |"
                )
    return "\n".join(rows)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        score_child(*sys.argv[2:6])
        return
    ap = parser(__doc__, "multiply the pool sizes and the real images (bigger machines)")
    ap.add_argument("--rows", default="1000000,5000000")
    ap.add_argument("--ray-images", type=int, default=30_000)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-ivf", action="store_true")
    args = ap.parse_args()
    clock = Clock()
    result: dict = {"scoring": [], "ivf": None, "ray": None}
    scratch = Path(__file__).resolve().parent / "out"  # on disk (not a tmpfs), ignored by git
    scratch.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        for rows in (round(int(r) * args.scale) for r in args.rows.split(",")):
            result["scoring"].append(run_scoring(rows, Path(tmp)))
        if not args.skip_ivf:
            result["ivf"] = run_ivf(Path(tmp), round(100_000 * args.scale), round(200_000 * args.scale))
        if not args.skip_ray:
            result["ray"] = run_ray(Path(tmp), min(round(args.ray_images * args.scale), 30_000))
    lines = []
    for r in result["scoring"]:
        for m in ("knn", "cluster-min"):
            p = r[m]
            lines.append(
                f"{r['rows']:,} rows {m}: FAISS {p['faiss']['seconds']} s / peak anon {p['faiss']['peak_anon_mib']} "
                f"MiB, exact torch {p['torch']['seconds']} s / {p['torch']['peak_anon_mib']} MiB (the pool file is "
                f"{r['file_mib']} MiB), top-10% overlap {p['top10_overlap']}"
            )
    ivf = result["ivf"]
    if ivf:
        lines.append(
            f"knn of {ivf['queries']:,} rows against a {ivf['target_rows']:,}-row target: IVF {ivf['ivf_seconds']} s, "
            f"exact {ivf['exact_seconds']} s ({ivf['ivf_speedup']}x), recall@10 {ivf['recall']}, mean score "
            f"difference {ivf['mean_abs_score_difference']} (stated: <= "
            f"{ivf['stated']['mean_abs_score_difference']}; 99th percentile {ivf['p99_abs_score_difference']}, "
            f"largest {ivf['max_abs_score_difference']}), top-10% overlap {ivf['top10_overlap']} (stated: >= "
            f"{ivf['stated']['top10_overlap']})"
        )
    ray = result["ray"]
    if ray:
        lines.append(f"Ray embeds at {ray['ray_over_local']}x the local engine's images/s ({ray['images']:,} images)")
    publish(
        "scale",
        result,
        what=(
            "Issue 8: scoring memory-mapped pools of 1M and 5M x 256 synthetic embeddings against a 10,000-row "
            "target (knn and cluster-min; FAISS and the exact torch path, each in its own process; peak anonymous "
            "memory and peak RSS sampled every 20 ms); knn past the IVF threshold (100,000 rows against a 200,000-row "
            "target, FAISS IVF against exact); and Ray Data against local embedding on 30,000 real images "
            "(resnet18, 32 px, a local 2-CPU Ray)."
        ),
        reading="; ".join(lines) + ".",
        minutes=clock.minutes(),
        table=table(result),
    )


if __name__ == "__main__":
    main()
