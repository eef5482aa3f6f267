"""Source classes by name or id, and every class under an ancestor in a hierarchy (004 4.2's hand-picked subsets).

A hierarchy is a file of ``child parent`` lines (any depth) or a local WordNet ``data.noun`` (Debian's
``wordnet-base``), from which ImageNet-style ids (``n01234567``) resolve to their hypernyms.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ThresherError

WORDNET_CANDIDATES = (
    "/usr/share/wordnet/data.noun",  # Debian/Ubuntu wordnet-base
    "/usr/share/wordnet/dict/data.noun",
    "/usr/local/share/wordnet/data.noun",
    "/usr/local/WordNet-3.0/dict/data.noun",
)
_WNID = re.compile(r"^n\d{8}$")


def _as_items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, int | np.integer):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    raise ThresherError(f"expected a list of class names or ids, got {value!r}")


def _unknown_name(name: str, known: Sequence[str], what: str) -> ThresherError:
    close = difflib.get_close_matches(name, list(known), n=1)
    shown = ", ".join(list(known)[:5]) + (", ..." if len(known) > 5 else "")
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {shown})"
    return ThresherError(f"unknown {what} {name!r}{hint}")


def resolve_class_list(classes: Any, class_names: Sequence[str] | None) -> list[int]:
    """Class names and/or integer ids (a list, or a comma-separated string) -> sorted label ids (004 4.2)."""
    index = {name: i for i, name in reversed(list(enumerate(class_names or [])))}
    ids: list[int] = []
    for item in _as_items(classes):
        if isinstance(item, bool | np.bool_):
            raise ThresherError(f"class {item!r} is neither a name nor an id")
        if isinstance(item, int | np.integer):
            i = int(item)
        elif isinstance(item, str):
            text = item.strip()
            if text in index:
                i = index[text]
            elif re.fullmatch(r"-?\d+", text):
                i = int(text)
            elif class_names is None:
                raise ThresherError(f"class {text!r} given by name, but the source has no class names; give ids")
            else:
                raise _unknown_name(text, class_names, "class")
        else:
            raise ThresherError(f"class {item!r} is neither a name nor an id")
        if i < 0 or (class_names is not None and i >= len(class_names)):
            top_id = f" (the source has ids 0..{len(class_names) - 1})" if class_names is not None else ""
            raise ThresherError(f"class id {i} is out of range{top_id}")
        ids.append(i)
    if not ids:
        raise ThresherError("no classes given")
    return sorted(set(ids))


def read_hierarchy(path: str | Path) -> dict[str, set[str]]:
    """A hierarchy file: one ``child parent`` pair per line, whitespace separated; ``#`` comments -> child: parents."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresherError(f"cannot read hierarchy {path}: {exc.strerror or exc}") from None
    parents: dict[str, set[str]] = {}
    for no, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ThresherError(f"{path}:{no}: expected 'child parent', got {line!r}")
        parents.setdefault(parts[0], set()).add(parts[1])
    if not parents:
        raise ThresherError(f"hierarchy {path} has no 'child parent' lines")
    return parents


def find_wordnet(path: str | Path | None = None) -> Path:
    """Locate WordNet's ``data.noun``: ``path`` (the file or its folder), else the usual system places."""
    if path is not None:
        p = Path(path).expanduser()
        p = p / "data.noun" if p.is_dir() else p
        if not p.is_file():
            raise ThresherError(f"WordNet data.noun not found at {path}")
        return p
    for cand in WORDNET_CANDIDATES:
        if os.path.isfile(cand):
            return Path(cand)
    raise ThresherError(
        "WordNet ids need a hierarchy: give hierarchy=FILE (--hierarchy, lines 'child parent') or install a local "
        "WordNet (Debian/Ubuntu: apt-get install wordnet-base)"
    )


def wordnet_hierarchy(path: str | Path) -> dict[str, set[str]]:
    """Parse the hypernym pointers (``@``, ``@i``) of a WordNet ``data.noun`` -> wnid ``n%08d``: parent wnids."""
    p = Path(path)
    st = p.stat()
    return _wordnet_cached(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _wordnet_cached(path: str, size: int, mtime_ns: int) -> dict[str, set[str]]:
    parents: dict[str, set[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            if not line.strip() or line.startswith(" "):  # the licence header lines start with two spaces
                continue
            fields = line.split(" | ", 1)[0].split()
            try:
                offset, ss_type, w_cnt = fields[0], fields[2], int(fields[3], 16)
                p_at = 4 + 2 * w_cnt
                p_cnt = int(fields[p_at])
                pointers = fields[p_at + 1 : p_at + 1 + 4 * p_cnt]
            except (IndexError, ValueError):
                raise ThresherError(f"{path}:{no}: not a WordNet data line") from None
            if ss_type != "n" or len(pointers) != 4 * p_cnt:
                continue
            child = f"n{int(offset):08d}"
            for j in range(0, len(pointers), 4):
                symbol, target, pos = pointers[j], pointers[j + 1], pointers[j + 2]
                if symbol in ("@", "@i") and pos == "n":
                    parents.setdefault(child, set()).add(f"n{int(target):08d}")
    if not parents:
        raise ThresherError(f"{path} holds no noun hypernym pointers; is it WordNet's data.noun?")
    return parents


def classes_under(
    ancestor: str | Sequence[str],
    class_names: Sequence[str] | None,
    *,
    hierarchy: str | Path | None = None,
    wordnet: str | Path | None = None,
) -> list[int]:
    """Ids of the source classes that are, or have above them, any of the ancestors (004 4.2 hierarchy subsets)."""
    if not class_names:
        raise ThresherError("selecting by ancestor needs the source's class names (classes.txt)")
    wanted = [str(a) for a in _as_items(ancestor)]
    if hierarchy is not None:
        parents = read_hierarchy(hierarchy)
    elif all(_WNID.match(a) for a in wanted) and all(_WNID.match(n) for n in class_names):
        parents = wordnet_hierarchy(find_wordnet(wordnet))
    else:
        raise ThresherError(
            f"ancestor {', '.join(wanted)} needs hierarchy=FILE (--hierarchy, lines 'child parent'); only WordNet ids "
            "with WordNet-id class names resolve without one"
        )
    nodes = set(parents) | set().union(*parents.values()) | set(class_names)
    for a in wanted:
        if a not in nodes:
            raise _unknown_name(a, sorted(nodes), "ancestor (in neither the hierarchy nor the class names)")
    targets = set(wanted)
    out = []
    for i, name in enumerate(class_names):
        seen, stack = {name}, [name]
        while stack and not (seen & targets):
            for parent in parents.get(stack.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        if seen & targets:
            out.append(i)
    if not out:
        raise ThresherError(f"no source class lies under {', '.join(wanted)} in the hierarchy")
    return out
