"""Template captions (002's IN1K-Template-Captions; METHODS.md): a caption per image from its class's name through a
template such as "a photo of a {}.", for pools that come without text.

A class is named by every synonym its ``classes.txt`` line lists (the pool's ``wnid<TAB>goldfish, Carassius
auratus``): each image draws one synonym and one template by a hash of a seed and a key naming the image (the
``clip`` objective's: its position in the run), so an image gets the same caption in every epoch, process and resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

#: a short set of CLIP's ImageNet prompt templates (Radford et al. 2021), sized for small images
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a low resolution photo of a {}.",
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a photo of the small {}.",
    "a good photo of the {}.",
)


def synonyms(description: str) -> list[str]:
    """The names a class goes by: the comma-separated words of its description, in order, without repeats."""
    names = [w.strip() for w in description.split(",") if w.strip()]
    return list(dict.fromkeys(names)) or [description.strip()]


def check_templates(templates: Sequence[str]) -> list[str]:
    """Templates must each hold one ``{}`` where the class name goes."""
    out = list(templates)
    bad = [t for t in out if t.count("{}") != 1]
    if not out or bad:
        raise ValueError(f"each caption template needs exactly one {{}} for the class name, got {bad or out!r}")
    return out


def template_caption(names: Sequence[str], templates: Sequence[str], key: str, seed: int = 0) -> str:
    """One caption for the example ``key`` (its id) of a class called ``names``: a synonym and a template drawn by
    a hash of (seed, key), the same in every process."""
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "little")
    return templates[h % len(templates)].format(names[(h // len(templates)) % len(names)])


def class_prompts(description: str, templates: Sequence[str]) -> list[str]:
    """Every template filled with every synonym of a class: what zero-shot classification averages over."""
    return [t.format(name) for name in synonyms(description) for t in templates]
