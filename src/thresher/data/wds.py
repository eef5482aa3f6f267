"""``wds:PATTERN`` datasets: WebDataset tar shards, indexed once from their headers, read by byte offset.

Security: shards are never extracted. Member names only become sample keys and image bytes are read at
recorded offsets, so a hostile member name (``../../x``, absolute paths, links) cannot write anywhere on disk.
"""

from __future__ import annotations

import json
import os
import tarfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import ThresherError, UnreadableImage
from .base import IMAGE_EXTENSIONS, UNLABELED, ImageDataset, decode_image
from .classes import read_classes
from .columns import CAPTION_COLUMNS
from .shards import resolve_shards
from .spec import DATASETS

LABEL_EXTENSIONS = ("cls", "cls.txt", "label")
#: members holding a sample's caption, in order of preference (img2dataset writes txt, and json with a caption key)
TEXT_EXTENSIONS = ("txt", "caption", "json")


def split_member_name(name: str) -> tuple[str, str] | None:
    """WebDataset grouping: ``dir/abc.seg.png`` -> key ``dir/abc``, extension ``seg.png``; None if none."""
    name = name.removeprefix("./")
    head, _, base = name.rpartition("/")
    if base.startswith(".") or "." not in base:
        return None
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext.lower()


def index_shard(path: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """key -> {extension: (data offset, size)} from tar headers alone (no member data read or extracted)."""
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, mode="r:") as tf:
            for m in tf:
                if not m.isreg():
                    continue
                parts = split_member_name(m.name)
                if parts is not None:
                    samples.setdefault(parts[0], {})[parts[1]] = (m.offset_data, m.size)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ThresherError(f"cannot read shard {path} as an uncompressed tar: {exc}") from None
    return samples


class WebDatasetShards(ImageDataset):
    """Samples of WebDataset tar shards; ``load`` reads one member's bytes with a positioned read."""

    MAX_OPEN_FILES = 16

    def __init__(
        self,
        shards: list[Path],
        keys: list[str],
        shard_of: np.ndarray,
        spans: np.ndarray,
        label_spans: np.ndarray,
        classes: list[str] | None = None,
        descriptions: list[str] | None = None,
        spec: str = "",
        text_spans: np.ndarray | None = None,
    ):
        super().__init__()
        self.shards = shards
        self.keys = keys
        self.shard_of = shard_of  # (N,) int32 shard index
        self.spans = spans  # (N, 2) int64 image (offset, size)
        self.label_spans = label_spans  # (N, 2) int64 label member (offset, size); -1 offset: none
        # (N, 3) int64 caption member (offset, size, index in TEXT_EXTENSIONS); None: no sample has one
        self.text_spans = text_spans
        self._captions: np.ndarray | None = None
        self.classes = classes
        self.descriptions = descriptions
        self.spec = spec
        self._reset_handles()

    def _reset_handles(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._handles: OrderedDict[int, BinaryIO] = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for k in ("_pid", "_lock", "_handles"):
            state.pop(k)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_handles()

    def source_files(self) -> list[Path]:
        return list(self.shards)

    def __len__(self) -> int:
        return len(self.keys)

    def _make_ids(self) -> np.ndarray:
        return np.array(self.keys, dtype=object)

    def _read(self, shard: int, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of shard ``shard``, via a small per-process cache of open files."""
        if os.getpid() != self._pid:  # forked worker: inherited file offsets are shared, reopen
            self._reset_handles()
        with self._lock:
            f = self._handles.pop(shard, None)
            if f is None:
                f = open(self.shards[shard], "rb", buffering=0)  # noqa: SIM115 - kept open in the cache
                while len(self._handles) >= self.MAX_OPEN_FILES:
                    self._handles.popitem(last=False)[1].close()
            self._handles[shard] = f
            if hasattr(os, "pread"):
                return os.pread(f.fileno(), size, offset)
            f.seek(offset)
            return f.read(size)

    def _make_labels(self) -> np.ndarray:
        labels = np.full(len(self), UNLABELED, dtype=np.int64)
        for i in np.flatnonzero(self.label_spans[:, 0] >= 0):
            offset, size = self.label_spans[i]
            try:
                text = self._read(int(self.shard_of[i]), int(offset), int(size)).decode("utf-8").strip()
                labels[i] = int(text)
            except (OSError, UnicodeDecodeError, ValueError):
                shard = self.shards[self.shard_of[i]]
                raise ThresherError(
                    f"sample {self.keys[i]!r} in {shard} has an unreadable label "
                    "(expected an integer as text in its cls/label member)"
                ) from None
            if labels[i] < UNLABELED:
                raise ThresherError(f"sample {self.keys[i]!r} has negative label {labels[i]} (-1 means none)")
        return labels

    @property
    def captions(self) -> np.ndarray | None:  # type: ignore[override]
        """Each sample's caption from its txt / caption / json member (read once, on first use; a sample without
        one has the empty string), or None when no sample has one."""
        if self.text_spans is None:
            return None
        if self._captions is None:
            out = np.full(len(self), "", dtype=object)
            for i in np.flatnonzero(self.text_spans[:, 0] >= 0):
                offset, size, kind = (int(v) for v in self.text_spans[i])
                raw = self._read(int(self.shard_of[i]), offset, size).decode("utf-8", errors="replace")
                out[i] = _json_caption(raw, self.keys[i]) if TEXT_EXTENSIONS[kind] == "json" else raw.strip()
            self._captions = out
        return self._captions

    def load(self, index: int) -> np.ndarray:
        key = self.keys[index]
        offset, size = self.spans[index]
        try:
            data = self._read(int(self.shard_of[index]), int(offset), int(size))
        except OSError as exc:
            raise UnreadableImage(key, f"cannot read shard: {exc.strerror or type(exc).__name__}") from None
        if len(data) != size:
            raise UnreadableImage(key, f"shard is truncated ({len(data)} of {size} bytes)")
        return decode_image(data, key)


@DATASETS.register("wds")
def open_wds(body: str, *, data_root: str | None = None, strict: bool = False) -> WebDatasetShards:
    """``wds:PATTERN``: tar shards by brace pattern (``s-{000..009}.tar``), one tar, or a folder of tars."""
    shards = resolve_shards(body)
    keys: list[str] = []
    shard_of: list[int] = []
    spans: list[tuple[int, int]] = []
    label_spans: list[tuple[int, int]] = []
    text_spans: list[tuple[int, int, int]] = []
    owner: dict[str, int] = {}
    for s, path in enumerate(shards):
        for key, members in index_shard(path).items():
            image_ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
            if image_ext is None:
                if strict:
                    raise ThresherError(
                        f"sample {key!r} in {path} has no image member (extensions: {', '.join(IMAGE_EXTENSIONS)})"
                    )
                continue  # metadata-only samples are not images
            if key in owner:
                raise ThresherError(
                    f"sample key {key!r} appears in both {shards[owner[key]]} and {path}; "
                    "keys must be unique across shards"
                )
            owner[key] = s
            keys.append(key)
            shard_of.append(s)
            spans.append(members[image_ext])
            label_ext = next((e for e in LABEL_EXTENSIONS if e in members), None)
            label_spans.append(members[label_ext] if label_ext else (-1, 0))
            text = next((k for k, e in enumerate(TEXT_EXTENSIONS) if e in members), None)
            text_spans.append((*members[TEXT_EXTENSIONS[text]], text) if text is not None else (-1, 0, -1))
    if not keys:
        raise ThresherError(
            f"no image samples in {len(shards)} shard(s) named by {body!r} "
            f"(image extensions: {', '.join(IMAGE_EXTENSIONS)})"
        )
    classes, desc = read_classes(shards[0].parent)
    return WebDatasetShards(
        shards,
        keys,
        np.asarray(shard_of, dtype=np.int32),
        np.asarray(spans, dtype=np.int64).reshape(-1, 2),
        np.asarray(label_spans, dtype=np.int64).reshape(-1, 2),
        classes=classes,
        descriptions=desc,
        spec=f"wds:{body}",
        text_spans=np.asarray(text_spans, dtype=np.int64) if any(t[0] >= 0 for t in text_spans) else None,
    )


def _json_caption(raw: str, key: str) -> str:
    """The caption of a sample's json member: its ``caption`` (img2dataset) or ``text`` field (CAPTION_COLUMNS)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ThresherError(f"sample {key!r} has a json member that is not JSON") from None
    value = next((doc[c] for c in CAPTION_COLUMNS if c in doc), None) if isinstance(doc, dict) else None
    return "" if value is None else str(value)
