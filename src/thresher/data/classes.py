"""Class files: ``classes.txt`` beside a dataset names its labels, line i naming label i (``name<TAB>description``
allowed, as the pool's ``wnid<TAB>words``); read by every dataset kind that stores labels as numbers."""

from __future__ import annotations

from pathlib import Path


def read_classes(folder: Path) -> tuple[list[str] | None, list[str] | None]:
    """``classes.txt`` (line i names label i; ``name<TAB>description`` allowed) -> names, descriptions."""
    f = folder / "classes.txt"
    if not f.is_file():
        return None, None
    names, desc = [], []
    for line in f.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        name, _, words = line.partition("\t")
        names.append(name.strip())
        desc.append(words.strip() or name.strip())
    return names, desc


def class_words(ds) -> list[str]:
    """The words naming each of a dataset's classes: its ``classes.txt`` description (the pool's WordNet words for
    a wnid) or else its name; what text models read for a class (zero-shot prompts, CLIP-score)."""
    return list(getattr(ds, "descriptions", None) or ds.classes or [])
