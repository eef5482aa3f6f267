"""The Manifest: the artefact between selection and pre-training (DESIGN.md, artefacts table; 000, 004 4.1/4.3).

A folder with ``manifest.parquet`` (``id`` string, ``weight`` float64, ``count`` int64, plus ``label`` int64 and
``score`` float64 when known) and ``manifest.json`` (provenance). The pre-training set is the multiset in which row
``i`` appears ``count[i]`` times. ``weight`` is the selector's weight of the example: for ``weighted`` the normalised
probability it was drawn with, for the modes that pick each example once ``1 / rows``. It is provenance, not a loss
weight to apply on top of the counts (004 4.1 found weighting the loss unstable).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import SCHEMA_VERSION, __version__, atomic
from ..errors import ThresherError
from ..runs import file_digest

PARQUET = "manifest.parquet"
JSON = "manifest.json"
FORMAT = "thresher.manifest"
_RESERVED = ("format", "schema_version", "thresher_version", "n_unique", "total_count")


#: sha256 of a file: the input hashes recorded in ``manifest.json`` (one implementation, shared with run folders)
file_sha256 = file_digest


def _first(items: Sequence[Any], k: int = 5) -> str:
    shown = ", ".join(repr(x) for x in list(items)[:k])
    return shown + (", ..." if len(items) > k else "")


@dataclass
class Manifest:
    """Selected example ids with weight and count per id, plus provenance ``meta`` (DESIGN.md; 004 4.3).

    ``meta`` is written as ``manifest.json``; by convention it holds ``source`` (spec), ``method`` (scorer),
    ``selection`` (mode, params, budget as given, resolved count, seed) and ``inputs`` (name -> sha256).
    """

    ids: np.ndarray
    weights: np.ndarray
    counts: np.ndarray
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=object)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        counts = np.asarray(self.counts)
        if counts.size and not np.issubdtype(counts.dtype, np.integer):
            raise ThresherError(f"manifest counts must be integers, got {counts.dtype}")
        self.counts = counts.astype(np.int64)
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.size and not np.issubdtype(labels.dtype, np.integer):
                raise ThresherError(f"manifest labels must be integers, got {labels.dtype}")
            self.labels = labels.astype(np.int64)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64)
        self.meta = dict(self.meta or {})
        self._validate()

    # --- properties ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_unique(self) -> int:
        return len(self.ids)

    @property
    def total_count(self) -> int:
        return int(self.counts.sum())

    # --- validation -----------------------------------------------------------------------------------
    def _validate(self) -> None:
        n = len(self.ids)
        for name in ("weights", "counts", "labels", "scores"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise ThresherError(f"manifest {name} have shape {arr.shape}, expected ({n},) to match the ids")
        bad = [x for x in self.ids if not isinstance(x, str)]
        if bad:
            raise ThresherError(f"manifest ids must be strings; {len(bad)} are not (first: {_first(bad, 3)})")
        if len(set(self.ids)) != n:
            dups = [k for k, c in Counter(self.ids).items() if c > 1]
            raise ThresherError(f"manifest has {len(dups)} duplicate ids (first: {_first(dups)}); ids must be unique")
        finite = np.isfinite(self.weights)
        if not finite.all():
            raise ThresherError(f"manifest has {int((~finite).sum())} non-finite weights (NaN or inf)")
        if (self.weights < 0).any():
            raise ThresherError(f"manifest has {int((self.weights < 0).sum())} negative weights")
        if (self.counts < 1).any():
            raise ThresherError(
                f"manifest has {int((self.counts < 1).sum())} counts below 1 (every row is drawn >= 1x)"
            )

    # --- files ------------------------------------------------------------------------------------------
    def table(self):
        """The rows as a pyarrow Table with the manifest schema."""
        import pyarrow as pa

        cols = {
            "id": pa.array(list(self.ids), type=pa.string()),
            "weight": pa.array(self.weights, type=pa.float64()),
            "count": pa.array(self.counts, type=pa.int64()),
        }
        if self.labels is not None:
            cols["label"] = pa.array(self.labels, type=pa.int64())
        if self.scores is not None:
            cols["score"] = pa.array(self.scores, type=pa.float64())
        return pa.table(cols)

    def json_doc(self) -> dict[str, Any]:
        """``manifest.json``: ``meta`` plus format, versions, number of unique ids and total count."""
        doc: dict[str, Any] = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "thresher_version": __version__}
        doc.update({k: v for k, v in atomic.jsonable(self.meta).items() if k not in _RESERVED})
        doc["n_unique"] = self.n_unique
        doc["total_count"] = self.total_count
        return doc

    def write(self, folder: str | Path) -> Path:
        """Write ``manifest.parquet`` then ``manifest.json`` into ``folder``, each atomically; returns the folder."""
        import pyarrow.parquet as pq

        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ThresherError(f"{folder} is a file; a manifest is written into a folder")
        table = self.table()
        atomic.write_with(folder / PARQUET, lambda t: pq.write_table(table, t))
        atomic.write_json(folder / JSON, self.json_doc())
        return folder

    @classmethod
    def source_of(cls, folder: str | Path) -> str:
        """The source spec a manifest was selected from (its ``manifest.json``), for a run given no dataset."""
        source = cls.read(folder).meta.get("source")
        if not source:
            raise ThresherError(f"{folder}/manifest.json names no source; give the dataset spec")
        return source

    @staticmethod
    def parquet_of(path: str | Path) -> Path:
        """The ``manifest.parquet`` of a manifest folder (or of either of its files); a clear error when absent."""
        path = Path(path)
        folder = path.parent if path.name in (PARQUET, JSON) else path
        if not (folder / PARQUET).is_file():
            raise ThresherError(f"{path} is not a manifest: {folder / PARQUET} is missing")
        return folder / PARQUET

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        """Read and validate a manifest folder (or either of its two files)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = Path(folder)
        if folder.name in (PARQUET, JSON) and folder.is_file():
            folder = folder.parent
        if not folder.is_dir():
            raise ThresherError(f"manifest folder {folder} does not exist")
        for name in (PARQUET, JSON):
            if not (folder / name).is_file():
                raise ThresherError(f"{folder} is not a complete manifest: {name} is missing")
        try:
            meta = json.loads((folder / JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ThresherError(f"cannot read {folder / JSON}: {exc}") from None
        if not isinstance(meta, dict):
            raise ThresherError(f"{folder / JSON} is not a JSON object")
        version = meta.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise ThresherError(
                f"{folder} was written with artefact schema {version}, newer than this thresher's "
                f"({SCHEMA_VERSION}); upgrade thresher"
            )
        try:
            table = pq.read_table(folder / PARQUET)
        except (OSError, pa.ArrowException) as exc:
            raise ThresherError(f"cannot read {folder / PARQUET}: {exc}") from None
        missing = [c for c in ("id", "weight", "count") if c not in table.column_names]
        if missing:
            raise ThresherError(f"{folder / PARQUET} lacks column(s) {', '.join(missing)} (has {table.column_names})")

        def column(name: str, check, kind: str) -> np.ndarray:
            col = table.column(name)
            if col.null_count:
                raise ThresherError(f"{folder / PARQUET}: column {name!r} has {col.null_count} missing values")
            if not check(col.type):
                raise ThresherError(f"{folder / PARQUET}: column {name!r} must be {kind}, got {col.type}")
            return col.to_numpy(zero_copy_only=False)

        string = lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)  # noqa: E731
        number = lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)  # noqa: E731
        try:
            m = cls(
                ids=column("id", string, "strings"),
                weights=column("weight", number, "numbers"),
                counts=column("count", pa.types.is_integer, "integers"),
                labels=column("label", pa.types.is_integer, "integers") if "label" in table.column_names else None,
                scores=column("score", number, "numbers") if "score" in table.column_names else None,
                meta=meta,
            )
        except ThresherError as exc:
            raise ThresherError(f"{folder}: {exc}") from None
        for key, got in (("n_unique", m.n_unique), ("total_count", m.total_count)):
            if key in meta and meta[key] != got:
                raise ThresherError(
                    f"{folder}: {JSON} says {key} = {meta[key]} but {PARQUET} has {got}; the two files come from "
                    "different runs, re-run select"
                )
        return m

    # --- use ----------------------------------------------------------------------------------------------
    def resolve(self, dataset_ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map the manifest's ids to positions in ``dataset_ids`` -> (positions int64, weights, counts)."""
        index: dict[str, int] = {}
        for pos, key in enumerate(dataset_ids):
            index[key] = pos
        if len(index) != len(dataset_ids):
            raise ThresherError(
                f"the dataset has {len(dataset_ids) - len(index)} duplicate ids; ids must identify examples uniquely"
            )
        positions = np.fromiter((index.get(k, -1) for k in self.ids), dtype=np.int64, count=len(self.ids))
        absent = positions < 0
        if absent.any():
            missing = self.ids[absent]
            raise ThresherError(
                f"{len(missing)} of the manifest's {len(self.ids)} ids are not in the dataset (first: "
                f"{_first(list(missing))}); was the manifest made from another source?"
            )
        return positions, self.weights.copy(), self.counts.copy()
