"""Pools made of several sources (a data lake, issue 18): ``sources:`` followed by a JSON list of parts, each
``{name, spec, subset?, subset_seed?, exclude?}``, read as one pool. Ids are ``NAME:ID`` and classes ``NAME/CLASS``
(labels offset part by part), so every selection, manifest and report can say what share of it each source holds.

In a config, ``source`` may be that list itself: ``DataConfig`` turns it into this spec (``sources_spec``), so the
pool travels as one string through score tables and manifests like any other dataset. ``exclude`` names a dataset
whose images are removed from the part, compared pixel for pixel: a lake holding the full Fashion-MNIST training set
minus the images of the fashion-mnist target's training subset.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ThresherError
from .base import ImageDataset
from .loader import subset_indices
from .spec import DATASETS, absolute_spec, open_dataset
from .views import ConcatView

SCHEME = "sources"


class SourcePart(BaseModel):
    """One source of a pool of several (a plain model: the config layer reads this module, not the reverse)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the source's name: its ids' and classes' prefix")
    spec: str = Field(description="its dataset spec, e.g. builtin:tiny-imagenet-32:train")
    subset: int | None = Field(None, ge=1, description="a random subset of this many of its examples")
    subset_seed: int = 0
    exclude: str | None = Field(None, description="a dataset spec whose images (same pixels) are left out of it")


def parse_parts(parts: Sequence) -> list[SourcePart]:
    """Validated parts with unique names (a one-line error names the bad one)."""
    if not isinstance(parts, list | tuple) or not parts:
        raise ThresherError("a pool of several sources is a non-empty list of {name, spec} entries")
    out = []
    for k, part in enumerate(parts):
        try:
            out.append(SourcePart.model_validate(part))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "entry"
            raise ThresherError(f"source {k + 1} of the pool: {where}: {err['msg']}") from None
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ThresherError(f"the pool's sources need distinct names, got {names}")
    return out


def sources_spec(parts: Sequence) -> str:
    """The spec string of a pool made of ``parts`` (dicts), every relative path made absolute (the spec is read from
    score tables and manifests anywhere)."""
    parsed = parse_parts(list(parts))
    for p in parsed:
        p.spec, p.exclude = absolute_spec(p.spec), p.exclude and absolute_spec(p.exclude)
    doc = [p.model_dump(exclude_defaults=True) for p in parsed]
    return SCHEME + ":" + json.dumps(doc, separators=(",", ":"), sort_keys=True)


@functools.lru_cache(maxsize=8)
def _kept(spec: str, exclude: str, data_root: str | None, strict: bool) -> np.ndarray:
    """Which examples of ``spec`` have pixels not found in ``exclude``: hashed once per process (a study opens its
    pool several times, and the lake's part hashes 70,000 images)."""
    ds = open_dataset(spec, data_root=data_root, strict=strict)
    other = open_dataset(exclude, data_root=data_root, strict=strict)
    gone = set(_pixel_hashes(other, np.arange(len(other))))
    keep = np.array([h not in gone for h in _pixel_hashes(ds, np.arange(len(ds)))], dtype=bool)
    keep.flags.writeable = False
    return keep


def _pixel_hashes(ds: ImageDataset, indices: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(np.ascontiguousarray(ds.load(int(i))).tobytes(), digest_size=16).digest() for i in indices]


@DATASETS.register(SCHEME)
def open_sources(body: str, *, data_root: str | None = None, strict: bool = False) -> ImageDataset:
    try:
        parts = parse_parts(json.loads(body))
    except ValueError:
        raise ThresherError(f"{SCHEME}: expects a JSON list of {{name, spec}} entries, got {body[:80]!r}") from None
    pieces, classes, words = [], [], []
    for part in parts:
        ds = open_dataset(part.spec, data_root=data_root, strict=strict)
        idx = np.arange(len(ds))
        if part.exclude:  # first what is left out, then the subset of the rest: a subset of the size asked
            idx = idx[_kept(part.spec, part.exclude, data_root, strict)]
        idx = idx[subset_indices(len(idx), part.subset, part.subset_seed)]
        labels = ds.labels[idx]
        offset = len(classes)
        n_cls = max(ds.num_classes, int(labels.max()) + 1 if len(labels) else 0)
        names = list(ds.classes or [str(c) for c in range(n_cls)])
        classes += [f"{part.name}/{c}" for c in names]
        words += list(getattr(ds, "descriptions", None) or names)
        pieces.append((ds, idx, np.where(labels >= 0, labels + offset, -1)))
    view = ConcatView(pieces, [p.name for p in parts], classes=classes, spec=f"{SCHEME}:{body}")
    view.descriptions = words
    view.source_names = [p.name for p in parts]
    return view


def source_of(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """The source name of each id of a pool of several sources (``NAME:ID``)."""
    return np.array([str(i).split(":", 1)[0] for i in ids], dtype=object)


def source_shares(ids: Sequence[str] | np.ndarray, counts: np.ndarray | None = None) -> dict[str, float]:
    """Each source's share of a selection's draws (``counts``: draws per id, default one each)."""
    names = source_of(ids)
    w = np.ones(len(names)) if counts is None else np.asarray(counts, np.float64)
    total = w.sum() or 1.0
    return {str(n): round(float(w[names == n].sum() / total), 4) for n in sorted(set(names.tolist()))}


def format_shares(shares: dict[str, float]) -> str:
    return " · ".join(f"{name} {100 * v:.0f}%" for name, v in shares.items())
