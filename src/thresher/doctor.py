"""``thresher doctor``: what a user needs to know before a long run (issue 15), gathered without touching the network.

Versions of thresher and the packages it runs on, the device and threads training will use, which built-ins are
present and where (read from file headers, nothing decoded), the cache and its free disk, and warnings for what would
stop or slow a run: a missing built-in with ``THRESHER_OFFLINE`` set, too little disk to obtain one, more threads
than CPUs, no FAISS.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path

from . import __version__
from .paths import cache_dir, data_roots

PACKAGES = ("torch", "torchvision", "numpy", "pillow", "pyarrow", "pydantic", "faiss", "ray", "timm", "datasets")
ENV = ("THRESHER_DATA", "THRESHER_CACHE", "THRESHER_OFFLINE", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
LOW_DISK = 1 << 30  # below this, obtaining a built-in (archive + converted copy) may not fit


def _version(name: str) -> str | None:
    """An installed distribution's version (FAISS ships as faiss-cpu or faiss-gpu), without importing it."""
    for dist in (f"{name}-cpu", f"{name}-gpu") if name == "faiss" else (name,):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _device() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "default": "cuda" if cuda else "cpu",
        "cuda": cuda,
        "cuda_build": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def _builtins(data_root: str | None) -> dict:
    from .data.builtin import BUILTINS, _debian_files, locate
    from .data.npz import array_shape

    out = {}
    for b in BUILTINS.values():
        splits = {}
        for split in b.splits:
            path = locate(b, split, data_root)
            if path is None and (deb := _debian_files(b, split)) is not None:
                path = deb[0]
            if path is None:
                splits[split] = None
                continue
            try:
                shape = list(array_shape(path)) if path.suffix in (".npz", ".npy") else None
            except Exception as exc:  # a damaged file is reported, not fatal: doctor must always answer
                shape = f"unreadable ({exc})"
            splits[split] = {"path": str(path), "shape": shape}
        out[b.name] = {"splits": splits, "present": all(splits.values()), "obtain": b.obtained}
    return out


def diagnose(*, data_root: str | None = None) -> dict:
    """The report as a dict (``thresher doctor --json`` prints it as is)."""
    cache = cache_dir()
    probe = cache
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    report = {
        "thresher": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "device": _device(),
        "environment": {k: os.environ.get(k) for k in ENV},
        "data_roots": [{"path": str(r), "exists": r.is_dir()} for r in data_roots(data_root)],
        "builtins": _builtins(data_root),
        "cache": {"path": str(cache), "free_bytes": free, "downloads": _downloads(cache)},
    }
    report["warnings"] = _warnings(report)
    return report


def _downloads(cache: Path) -> list[dict]:
    folder = cache / "downloads"
    if not folder.is_dir():
        return []
    return [{"path": str(p), "bytes": p.stat().st_size} for p in sorted(folder.rglob("*")) if p.is_file()]


def _warnings(r: dict) -> list[str]:
    out = []
    missing = [n for n, b in r["builtins"].items() if not b["present"]]
    if missing and r["environment"]["THRESHER_OFFLINE"]:
        out.append(
            f"THRESHER_OFFLINE is set and {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing: a run "
            "that needs one stops; run `thresher data download NAME` online, or --from an archive you have"
        )
    if missing and r["cache"]["free_bytes"] < LOW_DISK:
        out.append(
            f"only {r['cache']['free_bytes'] / 1e9:.2f} GB free in {r['cache']['path']}: obtaining a missing built-in "
            "may not fit; free space or set THRESHER_CACHE to a larger disk"
        )
    dev = r["device"]
    if dev["cpus_usable"] and dev["threads"] > dev["cpus_usable"]:
        out.append(
            f"torch uses {dev['threads']} threads on {dev['cpus_usable']} usable CPUs: set OMP_NUM_THREADS="
            f"{dev['cpus_usable']} to avoid oversubscription"
        )
    if not r["packages"]["faiss"]:
        out.append("FAISS is not installed: k-means and kNN run on torch (pip install 'thresher[faiss]', 2-20x faster)")
    for name, b in r["builtins"].items():
        for split, s in b["splits"].items():
            if s and isinstance(s["shape"], str):
                out.append(f"builtin {name}:{split} at {s['path']} is {s['shape']}")
    return out


def _device_line(dev: dict) -> str:
    if dev["cuda"]:
        return f"cuda ({', '.join(dev['gpus'])})"
    return "cpu" + (f" (torch built for CUDA {dev['cuda_build']}, no GPU visible)" if dev["cuda_build"] else "")


def format_diagnosis(r: dict) -> str:
    """The report as lines for a terminal."""
    dev = r["device"]
    pk = r["packages"]
    lines = [
        f"thresher {r['thresher']}  python {r['python']}  {r['platform']}",
        "packages: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v),
        "not installed: " + (", ".join(k for k, v in pk.items() if not v) or "-"),
        f"device: {_device_line(dev)}; threads {dev['threads']} (interop {dev['interop_threads']}) on "
        f"{dev['cpus_usable']} of {dev['cpus']} CPUs",
        "environment: " + (", ".join(f"{k}={v}" for k, v in r["environment"].items() if v) or "none set"),
        "data roots, in lookup order:",
        *(f"  {d['path']}{'' if d['exists'] else '  (absent)'}" for d in r["data_roots"]),
        "built-ins:",
    ]
    width = max(map(len, r["builtins"]))
    for name, b in r["builtins"].items():
        if not any(b["splits"].values()):
            lines.append(
                f"  {name:<{width}}  missing: obtained on first use or by `thresher data download {name}` "
                f"({b['obtain']})"
            )
            continue
        for split, s in b["splits"].items():
            if s is None:
                where = f"missing: `thresher data download {name}`"
            else:
                shape = s["shape"]
                size = f"{shape[0]:>7,} x {'x'.join(map(str, shape[1:]))}  " if isinstance(shape, list) else ""
                where = f"{size}{s['path']}"
            lines.append(f"  {name:<{width}}  {split:<5} {where}")
    cache = r["cache"]
    lines.append(f"cache: {cache['path']} ({cache['free_bytes'] / 1e9:.1f} GB free)")
    lines += [f"  {d['path']} ({d['bytes'] / 1e6:.0f} MB)" for d in cache["downloads"]]
    lines += [f"warning: {w}" for w in r["warnings"]] or ["no warnings"]
    return "\n".join(lines)
