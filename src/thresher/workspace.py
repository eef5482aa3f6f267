"""The workspace: derived artefacts computed once and shared, each with what it cost (DESIGN.md, issue 16).

Decoded pixels, trained models, embeddings and head outputs, each with a record of its cost, are keyed by the
fingerprint of their inputs and settings and stored under one root as resumable run folders (head outputs: one
``.npy`` each). Whoever asks for an artefact that exists gets it back, computed or not by this process: the scorers'
feature models, the domain classifier's fold models, a probe's features, a fine-tuning run and a study's stages all
draw from one place, so the source model's embeddings of a target that ``score`` made are the ones ``evaluate`` reads.

Every artefact carries a typed ``Cost``: images processed, FLOPs, seconds, peak memory (combined by max), its kind
(trained here, forward passes, or external: a public encoder's pre-training) and whether this call reused it. A
consumer opens a ``ledger()`` and reads what everything it used cost, as if it ran alone (000 counts scoring in a
method's cost), and the wall time it paid now.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .config import DataConfig, RuntimeConfig, fingerprint
from .data.base import ImageDataset
from .data.decoded import decode_once, needs_decoding
from .data.loader import data_identity
from .models.checkpoint import checkpoint_path, training_cost
from .runs import file_digest

COST_FILE = "cost.json"  # beside a decoding pass: what it cost when it was made

#: trained here (training passes), forward passes (embeddings, predictions, decoding), external (paid by someone
#: else, e.g. a public encoder's pre-training), own (a consumer's work on top: fitting a probe, k-means), mixed (a
#: sum of kinds), none (nothing: the zero cost)
KINDS = ("trained", "forward", "external", "own", "mixed", "none")


@dataclass(frozen=True)
class Cost:
    """What producing something cost. Costs add: images, FLOPs and seconds sum, peak memory is the larger, the kind
    is kept when both agree (else ``mixed``), and a sum is ``reused`` only when every part was."""

    images: float = 0.0
    flops: float = 0.0
    seconds: float = 0.0
    peak_memory_bytes: float = 0.0
    kind: str = "none"
    reused: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"cost kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "none" and (self.images or self.flops or self.seconds or self.peak_memory_bytes):
            raise ValueError("a cost of kind 'none' is the zero cost; give the kind of what was paid")

    def __add__(self, other: Cost) -> Cost:
        if self.kind == "none":
            return other
        if other.kind == "none":
            return self
        return Cost(
            images=self.images + other.images,
            flops=self.flops + other.flops,
            seconds=self.seconds + other.seconds,
            peak_memory_bytes=max(self.peak_memory_bytes, other.peak_memory_bytes),
            kind=self.kind if self.kind == other.kind else "mixed",
            reused=self.reused and other.reused,
        )

    @classmethod
    def total(cls, costs: Any) -> Cost:
        out = cls()
        for c in costs:
            out = out + c
        return out

    @classmethod
    def from_record(cls, record: dict | None, kind: str, *, reused: bool = False) -> Cost:
        """A cost as a run recorded it (``summary.json``'s or an embedding store's ``cost``); zeros when absent."""
        r = record or {}
        return cls(
            images=float(r.get("images", 0.0)),
            flops=float(r.get("flops", 0.0)),
            seconds=float(r.get("seconds", 0.0)),
            peak_memory_bytes=float(r.get("peak_memory_bytes", 0.0)),
            kind=kind,
            reused=reused,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "flops": self.flops,
            "seconds": round(self.seconds, 3),
            "peak_memory_bytes": self.peak_memory_bytes,
            "kind": self.kind,
            "reused": self.reused,
        }


@dataclass
class Artefact:
    """One derived artefact: its kind and key, where it is, what producing it cost (as recorded when it was made,
    resumed parts included), whether this call reused it (found complete) and the wall seconds this call spent on it."""

    kind: str
    key: str
    path: Path
    cost: Cost
    reused: bool = False
    value: Any = None  # the loaded thing (an EmbeddingStore, an array), when there is one
    paid_seconds: float = 0.0

    def record(self) -> dict:
        return {"kind": self.kind, "key": self.key, "path": str(self.path), "reused": self.reused,
                "cost": self.cost.as_dict()}  # fmt: skip


@dataclass
class Ledger:
    """The artefacts a consumer used (by key), for its cost as if it ran alone and the part it paid now."""

    used: dict[str, Artefact] = field(default_factory=dict)

    def add(self, art: Artefact) -> None:
        """Record ``art``; asked for again, the first entry stands (it says whether this ledger paid for it)."""
        self.used.setdefault(art.key, art)

    @property
    def cost(self) -> Cost:
        """Everything used, as recorded when it was produced (reused or not): the cost as if it ran alone."""
        return Cost.total(a.cost for a in self.used.values())

    @property
    def paid_seconds(self) -> float:
        """Wall seconds spent producing artefacts during this ledger (reused ones cost nothing now)."""
        return sum(a.paid_seconds for a in self.used.values())

    def records(self) -> list[dict]:
        return [a.record() for a in self.used.values()]


class Workspace:
    """Derived artefacts under ``root``, computed once and shared; see the module docstring."""

    def __init__(self, root: str | Path, *, runtime: RuntimeConfig | None = None, log: Callable = print):
        self.root = Path(root)
        self.runtime = runtime or RuntimeConfig()
        self.log = log
        self._ledgers: list[Ledger] = []
        self._digests: dict[str, str] = {}
        self._encoders: dict[str, tuple[Any, Cost]] = {}  # spec -> (Encoder, the cost of its pre-training)

    # --- accounting --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def ledger(self) -> Iterator[Ledger]:
        """Collect every artefact asked for inside the block (nested ledgers each see what is used inside them)."""
        book = Ledger()
        self._ledgers.append(book)
        try:
            yield book
        finally:
            self._ledgers.remove(book)

    def _used(self, art: Artefact) -> Artefact:
        for book in self._ledgers:
            book.add(art)
        return art

    def digest(self, path: str | Path) -> str:
        """sha256 of a file's content, once per process (checkpoints are named by content, not by path)."""
        key = str(Path(path).resolve())
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]

    # --- decoded pixels ----------------------------------------------------------------------------------------
    def decoded(self, ds: ImageDataset, indices: np.ndarray, size: int) -> tuple[ImageDataset, np.ndarray, np.ndarray]:
        """``(dataset, rows, readable)`` of ``ds[indices]`` decoded once at ``size`` (array datasets: themselves, and
        nothing to pay); the decoding pass is an artefact with its cost (images read, seconds)."""
        if not needs_decoding(ds):
            return decode_once(ds, indices, size, self.root)
        key = _hash({"data": data_identity(ds, indices), "size": size})
        folder = self.root / f"decoded-{key}"
        record = folder / COST_FILE
        reused = record.is_file()
        t0 = time.perf_counter()
        out = decode_once(ds, indices, size, folder, num_workers=self.runtime.num_workers, log=self.log,
                          runtime=self.runtime)  # fmt: skip
        paid = 0.0 if reused else time.perf_counter() - t0
        if reused:
            cost = Cost.from_record(atomic.read_json(record), "forward", reused=True)
        else:
            cost = Cost(images=len(indices), seconds=paid, kind="forward")
            atomic.write_json(record, cost.as_dict())
        self._used(Artefact("decoded", key, folder, cost, reused=reused, paid_seconds=paid))
        return out

    # --- trained models ----------------------------------------------------------------------------------------
    def model(
        self, name: str, cfg: Any, ds: ImageDataset, indices: np.ndarray, *, weights: np.ndarray | None = None
    ) -> Artefact:
        """The run folder of ``cfg`` (a TrainConfig) trained on ``ds[indices]`` through the engine, trained here
        unless it is complete already; ``path`` is its checkpoint."""
        from .train.engine import train_on

        ident: dict[str, Any] = {"data": data_identity(ds, indices)}
        if cfg.init:
            ident["init_sha256"] = self.digest(cfg.init)
        if cfg.manifest:
            ident["manifest_sha256"] = self.digest(Path(cfg.manifest) / "manifest.parquet")
        if weights is not None:
            ident["weights_sha256"] = hashlib.sha256(np.ascontiguousarray(weights, np.float64).tobytes()).hexdigest()
        key = fingerprint(cfg, ident)[:12]
        folder = self.root / f"model-{name}-{key}"
        ckpt = checkpoint_path(folder)
        summary = folder / "summary.json"
        if ckpt.is_file() and summary.is_file():
            cost = Cost.from_record(atomic.read_json(summary).get("cost"), "trained", reused=True)
            return self._used(Artefact("model", key, ckpt, cost, reused=True))
        self.log(f"{name}: training {cfg.backbone} on {len(indices)} examples of {ds.spec} ({folder})")
        t0 = time.perf_counter()
        done = train_on(ds, indices, cfg, folder, log=self.log, weights=weights)
        return self._used(Artefact("model", key, ckpt, Cost.from_record(done["cost"], "trained"),
                                   paid_seconds=time.perf_counter() - t0))  # fmt: skip

    def given_model(self, checkpoint: str | Path) -> Artefact:
        """A checkpoint made elsewhere: what thresher recorded for training it (a study's whole-pool model), else an
        external cost of zero (pre-trained by someone else: say so, do not guess)."""
        recorded = training_cost(checkpoint)
        key = f"given-{self.digest(checkpoint)[:12]}"
        kind = "trained" if recorded else "external"
        return self._used(Artefact("model", key, Path(checkpoint), Cost.from_record(recorded, kind, reused=True),
                                   reused=True))  # fmt: skip

    def encoder(self, spec: str) -> Artefact:
        """A pre-trained encoder by name (``torchvision:NAME:WEIGHTS``, ``timm:NAME``, a thresher run), loaded once per
        workspace; ``value`` is the ``Encoder``, ``path`` its weights file. Its pre-training is an external cost of
        zero (paid by someone else: say so, do not guess), or what thresher recorded for training a thresher run."""
        from .models.encoders import load_encoder

        if spec not in self._encoders:  # loaded, and its training cost read, once
            enc = load_encoder(spec)
            recorded = training_cost(enc.path, spec) if enc.identity["encoder"].startswith("thresher:") else None
            self._encoders[spec] = (enc, Cost.from_record(recorded, "trained" if recorded else "external", reused=True))
        enc, cost = self._encoders[spec]
        key = f"encoder-{enc.identity['sha256'][:12]}"
        return self._used(Artefact("model", key, enc.path, cost, reused=True, value=enc))

    # --- embeddings --------------------------------------------------------------------------------------------
    def embeddings(
        self,
        ds: ImageDataset,
        indices: np.ndarray,
        *,
        backbone: str | None = None,
        checkpoint: str | Path | None = None,
        resolution: int | None = None,
        seed: int = 0,
        dtype: str = "float32",
        encoder: str | None = None,
    ) -> Artefact:
        """The embedding store of ``ds[indices]`` under ``backbone`` (weights of ``checkpoint``, or its random init
        from ``seed``) at ``resolution``, or under the pre-trained ``encoder`` at its own preprocessing; ``value`` is
        the store. One store per (weights, data, resolution): whichever stage asks first computes it."""
        from .embed import EmbedConfig, EmbeddingStore, embed_dataset

        enc = None
        if encoder:  # its weights' content names the store; the encoder itself is used (an external cost)
            enc = self.encoder(encoder).value
            cfg = EmbedConfig(data=DataConfig(spec=ds.spec or "dataset"), encoder=encoder, resolution=enc.resolution,
                              dtype=dtype, runtime=self.runtime)  # fmt: skip
            key = _hash({"encoder": enc.identity, "dtype": dtype, "data": data_identity(ds, indices)})
        else:
            if backbone is None or resolution is None:
                raise TypeError("Workspace.embeddings needs backbone and resolution, or encoder")
            cfg = EmbedConfig(
                data=DataConfig(spec=ds.spec or "dataset"),
                backbone=backbone,
                checkpoint=str(checkpoint) if checkpoint else None,
                resolution=resolution,
                dtype=dtype,
                seed=0 if checkpoint else seed,  # the seed only matters for random weights
                runtime=self.runtime,
            )
            ident = {"data": data_identity(ds, indices), "weights": self.digest(checkpoint) if checkpoint else None}
            key = _hash({"backbone": backbone, "resolution": resolution, "dtype": dtype, "seed": cfg.seed, **ident})
        folder = self.root / f"embeddings-{key}"
        if (folder / "meta.json").is_file() and atomic.read_json(folder / "meta.json").get("complete"):
            store = EmbeddingStore(folder)
            cost = Cost.from_record(store.meta.get("cost"), "forward", reused=True)
            return self._used(Artefact("embeddings", key, folder, cost, reused=True, value=store))
        t0 = time.perf_counter()
        # the folder is named by content: a partial one left by a run that named the same data by another spec (the
        # config differs, the content does not) is recomputed rather than refused; a resume of the same run goes on
        store = embed_dataset(ds, indices, cfg, folder, force=True, log=self.log, encoder=enc)
        cost = Cost.from_record(store.meta.get("cost"), "forward")
        return self._used(Artefact("embeddings", key, folder, cost, value=store, paid_seconds=time.perf_counter() - t0))

    # --- head outputs ------------------------------------------------------------------------------------------
    def head_outputs(self, checkpoint: str | Path, features: Artefact) -> Artefact:
        """A supervised checkpoint's own head on stored embeddings (its logits, float64), computed once."""
        from .train.heads import head_logits

        key = _hash({"head": self.digest(checkpoint), "features": features.key})
        path, record = self.root / f"head-{key}.npy", self.root / f"head-{key}.json"
        if path.is_file() and record.is_file():
            cost = Cost.from_record(atomic.read_json(record), "forward", reused=True)
            return self._used(
                Artefact("head outputs", key, path, cost, reused=True, value=np.load(path, mmap_mode="r"))
            )
        t0 = time.perf_counter()
        logits = head_logits(checkpoint, features.value)
        atomic.save_npy(path, logits)
        seconds = time.perf_counter() - t0
        head = logits.shape[1] if logits.ndim == 2 else 0
        cost = Cost(flops=2.0 * logits.shape[0] * head * features.value.shape[1], seconds=seconds, kind="forward")
        atomic.write_json(record, cost.as_dict())  # the record is written last: together they are the artefact
        return self._used(Artefact("head outputs", key, path, cost, value=logits, paid_seconds=seconds))


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
