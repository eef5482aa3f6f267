"""Where thresher looks for data and keeps caches: explicit path, then THRESHER_DATA, then ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Cache for decompressed arrays and downloads: ``THRESHER_CACHE`` or ``~/.cache/thresher``."""
    root = os.environ.get("THRESHER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "thresher")
    return Path(root)


def checkout_root() -> Path | None:
    """The source checkout holding this package (src layout), if thresher runs from one."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "thresher").is_dir():
            return parent
    return None


def data_roots(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for built-in datasets, in order: explicit, THRESHER_DATA, ../shared/data beside the checkout,
    then the cache's ``data/`` (where downloaded built-ins are converted)."""
    roots: list[Path] = []
    if explicit:
        roots.append(Path(explicit).expanduser())
    env = os.environ.get("THRESHER_DATA")
    if env:
        roots.append(Path(env).expanduser())
    base = checkout_root()
    if base is not None:
        roots.append((base.parent / "shared" / "data").resolve())
    roots.append(cache_dir() / "data")
    seen: set[Path] = set()
    unique = []
    for r in roots:
        if r not in seen:
            seen.add(r)
            unique.append(r)
    return unique
