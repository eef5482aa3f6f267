"""Feature extraction into an embedding store: fixed-size ``.npy`` shards + ``ids.parquet`` + ``meta.json``.

The store is written shard by shard, each shard atomically, so a killed run resumes at the first missing shard and
the final array equals an uninterrupted run's. ``EmbeddingStore`` reads it back as one memory-mapped array.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import Field

from . import atomic
from .config import DataConfig, RuntimeConfig, Section, runtime
from .data import BadImageLog
from .data.loader import data_identity, iterate_batches, open_data
from .data.transforms import build_transform
from .device import autocast, memory_format, resolve_device, set_threads
from .errors import ThresherError
from .models import build_backbone
from .progress import progress_bar
from .runs import RunFolder, environment, file_digest

META_FILE = "meta.json"
IDS_FILE = "ids.parquet"
PARTS = ".parts"


class EmbedConfig(Section):
    """``thresher embed``: which data, which backbone and weights, at which resolution, stored how."""

    data: DataConfig
    backbone: str = Field("resnet18", description="backbone registry name")
    checkpoint: str | None = runtime(None, description="weights to load (fingerprinted by content, not path)")
    encoder: str | None = runtime(
        None,
        description="a pre-trained encoder (torchvision:NAME:WEIGHTS, timm:NAME or a thresher run) with its own "
        "preprocessing, instead of backbone, checkpoint and resolution (fingerprinted by its weights' content)",
    )
    resolution: int = Field(32, ge=8, le=1024, description="square input resolution in pixels")
    dtype: Literal["float32", "float16"] = Field("float32", description="storage dtype of the embeddings")
    batch_size: int = Field(256, ge=1)
    shard_size: int = Field(8192, ge=1, description="rows per .npy shard (the unit of resume)")
    seed: int = Field(0, description="seeds the backbone's random init when no checkpoint is given")
    runtime: RuntimeConfig = RuntimeConfig()


def embed(cfg: EmbedConfig, out: str | Path, *, force: bool = False, log=print) -> EmbeddingStore:
    """Run (or resume) ``thresher embed`` into ``out`` and return the finished store."""
    ds, indices = open_data(cfg.data)
    return embed_dataset(ds, indices, cfg, out, force=force, log=log)


def embed_dataset(
    ds, indices: np.ndarray, cfg: EmbedConfig, out: str | Path, *, force: bool = False, log=print, encoder=None
) -> EmbeddingStore:
    """Embed ``ds[indices]`` (any dataset or view) into the store ``out``, resuming what is there; ``encoder`` is
    ``cfg.encoder`` already loaded (``models.encoders.Encoder``), to save loading it again."""
    set_threads(cfg.runtime.threads)
    device = resolve_device(cfg.runtime.device)
    if len(set(ds.ids[indices])) != len(indices):
        raise ThresherError(f"{cfg.data.spec} has duplicate example ids; ids must be unique")
    inputs = {"data": data_identity(ds, indices)}
    # everything that can fail on bad input fails before the run folder is claimed
    if cfg.encoder:
        if cfg.runtime.engine == "ray":
            raise ThresherError("--encoder runs on the local engine only; drop --engine ray (or runtime.engine)")
        from .models.encoders import load_encoder

        encoder = encoder or load_encoder(cfg.encoder)
        inputs["encoder"] = encoder.identity
        model, resolution = encoder.module.to(device).eval(), encoder.resolution
    else:
        encoder = None
        if cfg.checkpoint:
            inputs["checkpoint_sha256"] = file_digest(cfg.checkpoint)
        model, resolution = build_backbone(cfg.backbone, cfg.checkpoint, cfg.seed).to(device).eval(), cfg.resolution
    model = model.to(memory_format=memory_format(device))
    with RunFolder(out, "embed", cfg, force=force, inputs=inputs, device=str(device)) as run:
        meta_path = run.file(META_FILE)
        if meta_path.is_file() and json.loads(meta_path.read_text()).get("complete"):
            log(f"{run.path}: already complete, nothing to do")
            return EmbeddingStore(run.path)
        # an encoder's images are read at its resize size and cropped by its own preprocessing
        transform = encoder.preprocess if encoder else build_transform("eval", cfg.resolution)
        load_size = encoder.resize if encoder else cfg.resolution
        n_shards = max(1, -(-len(indices) // cfg.shard_size))
        parts = run.file(PARTS)
        parts.mkdir(exist_ok=True)
        done = [s for s in range(n_shards) if (parts / f"{s:05d}.done").exists()]
        bar = progress_bar(
            len(indices), "embed", enabled=cfg.runtime.progress, initial=min(len(done) * cfg.shard_size, len(indices))
        )
        if done:
            log(f"{run.path}: resuming, {len(done)} of {n_shards} shards already written")
        todo = [(s, indices[s * cfg.shard_size : (s + 1) * cfg.shard_size]) for s in range(n_shards) if s not in done]

        def write(s: int, feats: np.ndarray, kept: np.ndarray, bad: np.ndarray, cost: dict) -> None:
            _write_shard(run.path, s, feats.astype(cfg.dtype), ds, kept, bad, cost)

        if cfg.runtime.engine == "ray":
            if todo:
                from .ray_engine import embed_shards

                rt = cfg.runtime
                opts = {"address": rt.ray_address, "actors": rt.ray_actors, "threads": rt.threads, "progress": bar}
                embed_shards(ds, todo, model, cfg.backbone, cfg.resolution, cfg.batch_size, write, **opts)
        else:
            for s, shard_idx in todo:
                started = time.perf_counter()
                feats, kept = _embed_shard(ds, shard_idx, model, transform, cfg, device, bar, load_size)
                cost = {"images": len(shard_idx), "seconds": time.perf_counter() - started}
                write(s, feats, kept, np.setdiff1d(shard_idx, kept), cost)
        bar.close()
        flops = forward_flops_per_image(model, resolution)
        return _finalize(run.path, n_shards, cfg, ds, str(device), log, flops, encoder)


def forward_flops_per_image(model: torch.nn.Module, resolution: int) -> float:
    """Forward FLOPs of one image, counted by ``torch.utils.flop_counter`` on a 2-image batch (0 if not countable)."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(2, 3, resolution, resolution, device=device)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model.forward_features(x)
        return counter.get_total_flops() / 2
    except Exception:  # some third-party modules cannot be traced: the cost then has images and seconds only
        return 0.0


@torch.inference_mode()
def _embed_shard(ds, shard_idx, model, transform, cfg: EmbedConfig, device, bar, size: int):
    batches = [shard_idx[i : i + cfg.batch_size] for i in range(0, len(shard_idx), cfg.batch_size)]
    feats, kept = [], []
    for idx, x, ok in iterate_batches(
        ds,
        batches,
        size,
        num_workers=cfg.runtime.num_workers,
        strict=cfg.data.strict,
        pin_memory=device.type == "cuda",
    ):
        if len(x):
            x = transform(x.to(device, non_blocking=True), None).contiguous(memory_format=memory_format(device))
            with autocast(device):
                feats.append(model.forward_features(x).float().cpu().numpy())
            kept.append(idx[ok])
        bar.update(len(idx))
    if not feats:  # every image of this shard was unreadable: an empty shard keeps the bookkeeping simple
        return np.zeros((0, model.feature_dim), np.float32), np.zeros(0, np.int64)
    return np.concatenate(feats), np.concatenate(kept)


def _write_shard(root: Path, s: int, feats: np.ndarray, ds, kept: np.ndarray, bad: np.ndarray, cost: dict) -> None:
    parts = root / PARTS
    table = pa.table(
        {
            "id": pa.array(ds.ids[kept].tolist(), pa.string()),
            "label": pa.array(ds.labels[kept], pa.int64()),
            "index": pa.array(kept, pa.int64()),
        }
    )
    atomic.write_with(parts / f"{s:05d}.ids.parquet", lambda t: pq.write_table(table, t))
    atomic.save_npy(root / f"shard-{s:05d}.npy", feats)
    marker = {"rows": len(feats), "skipped": ds.ids[bad].tolist(), "cost": cost}
    atomic.write_json(parts / f"{s:05d}.done", marker)  # the commit marker of shard s, written last


def _finalize(
    root: Path, n_shards: int, cfg: EmbedConfig, ds, device: str, log, flops_per_image: float = 0.0, encoder=None
) -> EmbeddingStore:
    parts = root / PARTS
    skipped = BadImageLog()
    images = seconds = 0.0
    for s in range(n_shards):
        marker = json.loads((parts / f"{s:05d}.done").read_text())
        skipped.add(marker["skipped"])
        images += marker["cost"]["images"]
        seconds += marker["cost"]["seconds"]
    tables = [pq.read_table(parts / f"{s:05d}.ids.parquet") for s in range(n_shards)]
    rows = [t.num_rows for t in tables]
    if not sum(rows) and skipped.count:  # every image unreadable: an empty store would only fail later, unclearly
        for s in range(n_shards):  # drop the empty shards, so a re-run after fixing the files computes them
            (parts / f"{s:05d}.done").unlink(missing_ok=True)
        raise ThresherError(
            f"no image of {cfg.data.spec} can be read: all {skipped.count} are unreadable (first: "
            f"{', '.join(skipped.first)}); fix or remove the broken files, or check the dataset spec"
        )
    ids = pa.concat_tables(tables)
    atomic.write_with(root / IDS_FILE, lambda t: pq.write_table(ids, t))
    dim = int(np.load(root / "shard-00000.npy", mmap_mode="r").shape[1])
    meta = {
        "complete": True,
        "rows": int(sum(rows)),
        "dim": dim,
        "dtype": cfg.dtype,
        "shard_rows": rows,
        "shards": [f"shard-{s:05d}.npy" for s in range(n_shards)],
        "spec": cfg.data.spec,
        "classes": ds.classes,
        "backbone": cfg.backbone,
        "checkpoint": cfg.checkpoint,
        "resolution": cfg.resolution,
        "skipped": {"count": skipped.count, "first": skipped.first},
        "cost": {"images": int(images), "seconds": round(seconds, 3), "flops": float(images * flops_per_image)},
        **environment(device),
    }
    if encoder is not None:  # what the rows are features of: the encoder, its weights file and its input size
        meta.update(backbone=encoder.identity["encoder"], checkpoint=str(encoder.path), resolution=encoder.resolution)
        meta["encoder"] = {"spec": cfg.encoder, **encoder.identity}
    atomic.write_json(root / META_FILE, meta)
    if skipped.count:
        log(f"warning: {skipped.summary()}")
    log(f"wrote {meta['rows']} x {dim} {cfg.dtype} embeddings to {root}")
    return EmbeddingStore(root)


class EmbeddingStore:
    """A finished embedding store read as one memory-mapped (rows x dim) array with ids and labels."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_file = self.path / META_FILE
        if not meta_file.is_file():
            raise ThresherError(f"{self.path} is not an embedding store (no {META_FILE}); run thresher embed first")
        self.meta = json.loads(meta_file.read_text())
        if not self.meta.get("complete"):
            raise ThresherError(f"{self.path} is incomplete; re-run the same thresher embed command to finish it")
        self._shards = [np.load(self.path / name, mmap_mode="r") for name in self.meta["shards"]]
        self._offsets = np.cumsum([0] + [len(s) for s in self._shards])
        self._table = pq.read_table(self.path / IDS_FILE)
        if self._table.num_rows != self._offsets[-1]:
            raise ThresherError(
                f"{self.path}: ids.parquet has {self._table.num_rows} rows but the shards hold {self._offsets[-1]}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return int(self._offsets[-1]), int(self.meta["dim"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self._table.column("id").to_pylist(), dtype=object)

    @property
    def labels(self) -> np.ndarray:
        return self._table.column("label").to_numpy()

    @property
    def indices(self) -> np.ndarray:
        """Row -> index in the source dataset."""
        return self._table.column("index").to_numpy()

    def __getitem__(self, key) -> np.ndarray:
        """numpy indexing over all shards (ints, slices, index arrays, boolean masks, ``[rows, cols]``); a copy."""
        row_key, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if len(self._shards) == 1:
            block = np.array(self._shards[0][row_key])
        elif isinstance(row_key, (int, np.integer)):
            n = len(self)
            r = int(row_key) + (n if row_key < 0 else 0)
            if not 0 <= r < n:
                raise IndexError(f"row {row_key} out of range for {n} rows")
            s = int(np.searchsorted(self._offsets, r, side="right") - 1)
            block = np.array(self._shards[s][r - self._offsets[s]])
        else:
            block = self._gather(row_key)
        if not rest:
            return block
        return block[rest] if np.ndim(row_key) == 0 and not isinstance(row_key, slice) else block[(slice(None), *rest)]

    def _gather(self, row_key) -> np.ndarray:
        n = len(self)
        if isinstance(row_key, slice):
            start, stop, step = row_key.indices(n)
            if step == 1:  # contiguous: copy whole shard ranges, no index array
                parts = []
                for s, shard in enumerate(self._shards):
                    lo, hi = max(start, self._offsets[s]), min(stop, self._offsets[s + 1])
                    if lo < hi:
                        parts.append(shard[lo - self._offsets[s] : hi - self._offsets[s]])
                return np.concatenate(parts) if parts else np.empty((0, self.shape[1]), self.dtype)
            rows = np.arange(start, stop, step)
        else:
            rows = np.asarray(row_key)
            if rows.dtype == bool:
                if rows.shape != (n,):
                    raise IndexError(f"boolean index of shape {rows.shape} for {n} rows")
                rows = np.flatnonzero(rows)
            elif rows.size and not np.issubdtype(rows.dtype, np.integer):
                raise IndexError(f"rows must be integers, slices or a boolean mask, got {rows.dtype}")
            rows = rows.astype(np.int64).reshape(-1)
            if rows.size and (rows.min() < -n or rows.max() >= n):
                raise IndexError(f"row index out of range for {n} rows")
            rows = np.where(rows < 0, rows + n, rows)
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        which = np.searchsorted(self._offsets, rows, side="right") - 1
        for s in np.unique(which):
            sel = which == s
            out[sel] = self._shards[s][rows[sel] - self._offsets[s]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self._shards[0] if len(self._shards) == 1 else np.concatenate(self._shards)
        return np.asarray(arr, dtype=dtype)

    def take(self, rows: np.ndarray) -> RowView:
        """A lazy view of ``rows`` in that order: nothing is read until it is sliced (no second copy of the pool)."""
        return RowView(self, rows)

    def iter_chunks(self, rows: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_row, block)`` without loading the whole store (for pools larger than memory)."""
        for start in range(0, len(self), rows):
            yield start, self[start : start + rows]

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"


class RowView:
    """Rows ``rows`` of an ``EmbeddingStore`` (or any row-indexable array) in that order, read only when sliced.

    Array-like (``shape``, ``dtype``, ``len``, numpy indexing, ``np.asarray``), so scorers read it block by block
    like the store itself.
    """

    def __init__(self, base, rows: np.ndarray):
        self.base = base
        self.rows = np.asarray(rows, np.int64)
        n = len(base)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), int(self.base.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> np.ndarray:
        row_key, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        picked = self.rows[row_key]
        block = self.base[picked]
        return block[(slice(None), *rest)] if rest and np.ndim(picked) else (block[rest] if rest else block)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.base[self.rows], dtype=dtype)

    def __repr__(self) -> str:
        return f"RowView({self.base!r}, rows={len(self.rows)})"
