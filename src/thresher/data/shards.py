"""Shard patterns: brace expansion (``pool-{000000..000099}.tar``), globs and folders resolved to sorted files,
shared by the WebDataset (``wds:``) and Parquet (``parquet:``) dataset kinds."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from ..errors import ThresherError

MAX_EXPANSION = 1_000_000
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")
_CHAR_RANGE = re.compile(r"^([A-Za-z])\.\.([A-Za-z])$")


# --- bash-style brace expansion -------------------------------------------------------------------


def _matching_brace(s: str, i: int) -> int | None:
    """Index of the '}' closing the '{' at ``i``, or None when it is never closed."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return None


def _split_top_commas(inner: str) -> list[str]:
    """Split on commas that are not inside nested braces."""
    parts, depth, start = [], 0, 0
    for j, ch in enumerate(inner):
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            parts.append(inner[start:j])
            start = j + 1
    parts.append(inner[start:])
    return parts


def _numeric_range(lo_s: str, hi_s: str, step_s: str | None) -> list[str]:
    """``{lo..hi[..step]}``; a leading zero on either end pads every number to the wider end."""
    lo, hi = int(lo_s), int(hi_s)
    step = abs(int(step_s)) if step_s else 1
    step = step or 1
    if abs(hi - lo) // step + 1 > MAX_EXPANSION:
        raise ThresherError(f"brace range {{{lo_s}..{hi_s}}} expands to more than {MAX_EXPANSION} names")
    padded = any(len(s.lstrip("-")) > 1 and s.lstrip("-").startswith("0") for s in (lo_s, hi_s))
    width = max(len(lo_s), len(hi_s)) if padded else 0
    values = range(lo, hi + 1, step) if lo <= hi else range(lo, hi - 1, -step)
    return [f"{v:0{width}d}" for v in values]


def _alternatives(inner: str) -> list[str] | None:
    """What one brace group stands for, or None when not a brace expression (kept literally, as in bash)."""
    parts = _split_top_commas(inner)
    if len(parts) > 1:
        return parts
    if m := _RANGE.match(inner):
        return _numeric_range(*m.groups())
    if m := _CHAR_RANGE.match(inner):
        a, b = ord(m.group(1)), ord(m.group(2))
        return [chr(c) for c in (range(a, b + 1) if a <= b else range(a, b - 1, -1))]
    return None


def expand_braces(pattern: str) -> list[str]:
    """Expand bash braces: ``a{1..3}`` -> a1 a2 a3, ``{x,y}z`` -> xz yz, ``{08..10}`` -> 08 09 10; nests."""
    i = pattern.find("{")
    while i != -1:
        j = _matching_brace(pattern, i)
        alts = _alternatives(pattern[i + 1 : j]) if j is not None else None
        if alts is not None:
            prefix, suffix = pattern[:i], pattern[j + 1 :]
            out = [prefix + rest for alt in alts for rest in expand_braces(alt + suffix)]
            if len(out) > MAX_EXPANSION:
                raise ThresherError(f"pattern {pattern!r} expands to more than {MAX_EXPANSION} names")
            return out
        i = pattern.find("{", i + 1)
    return [pattern]


# --- shards and their index -----------------------------------------------------------------------


def resolve_shards(pattern: str, suffix: str = ".tar") -> list[Path]:
    """Shard files named by ``pattern`` (braces, globs expanded) or a folder's ``*SUFFIX``; all must exist."""
    names = expand_braces(pattern)
    if len(names) == 1 and Path(names[0]).expanduser().is_dir():
        folder = Path(names[0]).expanduser()
        shards = sorted(folder.glob(f"*{suffix}"))
        if not shards:
            raise ThresherError(f"no {suffix} shards in folder {folder}")
        return shards
    paths: list[Path] = []
    for name in names:
        p = Path(name).expanduser()
        if not p.exists() and any(c in name for c in "*[") and (hits := sorted(glob.glob(str(p)))):
            paths.extend(Path(h) for h in hits)
        else:
            paths.append(p)
    missing = [p for p in paths if not p.is_file()]
    if len(missing) == len(paths):
        raise ThresherError(f"no shard files match {pattern!r} (expanded to {len(paths)} path(s), e.g. {paths[0]})")
    if missing:
        raise ThresherError(
            f"{len(missing)} of {len(paths)} shards named by {pattern!r} are missing (first: {missing[0]})"
        )
    return list(dict.fromkeys(paths))  # same file named twice counts once
