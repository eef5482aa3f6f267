"""``parquet:PATTERN`` datasets: images in Parquet shards (img2dataset's parquet output, Hugging Face Parquet exports,
a data lake's tables), read one row group at a time, never whole.

Opening reads the footers and the id and label columns only. An image is read with the image column of its row group,
which stays in a small per-process cache (``CACHE_BYTES``), so a pass in row order (embedding, the decode-once pass of
scoring and evaluation, a Ray block) reads each row group once. Random access (pre-training straight from the shards)
reads a row group per cache miss: write such pools with small row groups (e.g. ``row_group_size=256``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ThresherError, UnreadableImage
from .base import UNLABELED, ImageDataset, decode_image
from .classes import read_classes
from .columns import (
    caption_array,
    choose_caption,
    choose_columns,
    image_bytes,
    label_array,
    schema_features,
    split_image_column,
    unique_ids,
)
from .shards import resolve_shards
from .spec import DATASETS

#: bytes of image columns kept per process (row groups, least recently used out first)
CACHE_BYTES = 256 << 20
#: Parquet files kept open per process (a pool may have thousands)
MAX_OPEN_FILES = 16


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, memory_map=True)
    except (pa.ArrowException, OSError) as exc:
        raise ThresherError(f"cannot read {path} as Parquet: {' '.join(str(exc).split())}") from None


def _footer(path: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise ThresherError(f"cannot read {path} as Parquet: {' '.join(str(exc).split())}") from None


class ParquetShards(ImageDataset):
    """Rows of one or more Parquet files, in file order; row ``i`` is located by its row group."""

    def __init__(
        self,
        files: list[Path],
        groups: np.ndarray,
        rows: int,
        image: str,
        label: str | None,
        id_column: str | None,
        classes: list[str] | None,
        descriptions: list[str] | None = None,
        spec: str = "",
        caption: str | None = None,
    ):
        super().__init__()
        self.files, self.spec, self.caption_column = files, spec, caption
        self._captions: np.ndarray | None = None
        self.groups = groups  # (G, 3) int64: file, row group within the file, first row (over all files)
        self.starts = np.append(groups[:, 2], rows)  # first row of every group, then the end
        self.image_column, self.label_column, self.id_column = image, label, id_column
        self.classes, self.descriptions = classes, descriptions
        self._reset_handles()

    def _reset_handles(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._files: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._cached_bytes = 0

    def __getstate__(self) -> dict:
        # a worker or Ray actor reopens the files by path: no handles, no cached pixels, and no ids or labels (millions
        # of strings for a large pool; a worker rebuilds them only if it must name an unreadable image)
        state = self.__dict__.copy()
        for k in ("_pid", "_lock", "_files", "_cache", "_cached_bytes"):
            state.pop(k)
        state.update(_ids=None, _labels=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_handles()

    def source_files(self) -> list[Path]:
        return list(self.files)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _file(self, f: int) -> pq.ParquetFile:
        """File ``f`` opened (memory-mapped) in this process, through a small least-recently-used set."""
        if os.getpid() != self._pid:  # forked worker: do not share the parent's handles
            self._reset_handles()
        if f in self._files:
            self._files.move_to_end(f)
            return self._files[f]
        while len(self._files) >= MAX_OPEN_FILES:
            self._files.popitem(last=False)[1].close()
        self._files[f] = _open(self.files[f])
        return self._files[f]

    def _column(self, name: str) -> pa.ChunkedArray:
        """One whole column over every file, in row order (ids and labels: small)."""
        parts = []
        for f, path in enumerate(self.files):
            try:
                with self._lock:
                    parts.extend(self._file(f).read(columns=[name]).column(0).chunks)
            except (pa.ArrowException, OSError) as exc:
                raise ThresherError(f"cannot read column {name!r} of {path}: {' '.join(str(exc).split())}") from None
        types = {str(p.type) for p in parts}
        if len(types) > 1:
            raise ThresherError(f"column {name!r} has different types across the shards ({', '.join(sorted(types))})")
        return pa.chunked_array(parts) if parts else pa.chunked_array([], pa.null())

    def _make_ids(self) -> np.ndarray:
        if self.id_column is not None:
            return unique_ids(self._column(self.id_column).to_pylist(), self.id_column, self.spec)
        # FILE:ROW, the row counted within its file and the file named from the shards' common folder (unique even when
        # a pattern spans folders that reuse file names, as Hugging Face's config/split/0000.parquet and Spark's do)
        common = Path(os.path.commonpath([str(f.parent) for f in self.files]))
        ids = []
        for f, path in enumerate(self.files):
            mine = np.flatnonzero(self.groups[:, 0] == f)
            if len(mine):
                first, end = self.starts[mine[0]], self.starts[mine[-1] + 1]
                name = path.relative_to(common).as_posix()
                ids.extend(f"{name}:{k}" for k in range(end - first))
        return np.array(ids, dtype=object)

    def _make_labels(self) -> np.ndarray:
        if self.label_column is None:
            return np.full(len(self), UNLABELED, dtype=np.int64)
        return label_array(self._column(self.label_column), self.label_column, self.spec)

    @property
    def captions(self) -> np.ndarray | None:  # type: ignore[override]
        """The caption column (read once, on first use), or None without one."""
        if self.caption_column is None:
            return None
        if self._captions is None:
            self._captions = caption_array(self._column(self.caption_column), self.caption_column, self.spec)
        return self._captions

    def _group(self, g: int) -> tuple:
        """``(bytes, paths, nbytes, error)`` of row group ``g``'s image column, through the per-process cache; a row
        group that cannot be read is cached as its error, so its rows fail fast, one by one."""
        if os.getpid() != self._pid:  # forked worker: do not share the parent's handles
            self._reset_handles()
        with self._lock:
            if g in self._cache:
                self._cache.move_to_end(g)
                return self._cache[g]
            f, local, _ = (int(v) for v in self.groups[g])
            try:
                col = self._file(f).read_row_group(local, columns=[self.image_column]).column(0)
                entry = (*split_image_column(col, self.image_column, self.files[f]), col.nbytes, None)
            except (pa.ArrowException, OSError) as exc:
                entry = (None, None, 0, f"row group {local} of {self.files[f]}: {' '.join(str(exc).split())}")
            while self._cache and self._cached_bytes + entry[2] > CACHE_BYTES:
                self._cached_bytes -= self._cache.popitem(last=False)[1][2]
            self._cache[g] = entry
            self._cached_bytes += entry[2]
            return entry

    def load(self, index: int) -> np.ndarray:
        g = int(np.searchsorted(self.starts, index, side="right")) - 1
        data, paths, _, error = self._group(g)
        if error is not None:
            raise UnreadableImage(str(self.ids[index]), f"cannot read {error}")
        row = index - int(self.starts[g])
        folder = self.files[int(self.groups[g, 0])].parent
        try:
            return decode_image(image_bytes(data, paths, row, "", folder), "")
        except UnreadableImage as exc:  # named by its id only when it fails (ids are not shipped to workers)
            raise UnreadableImage(str(self.ids[index]), exc.reason) from None


@DATASETS.register("parquet")
def open_parquet(
    body: str,
    *,
    data_root: str | None = None,
    strict: bool = False,
    image: str | None = None,
    label: str | None = None,
    id: str | None = None,
    caption: str | None = None,
) -> ParquetShards:
    """``parquet:PATTERN``: one file, a brace/glob pattern or a folder of ``*.parquet``; options image= (default
    'image', the one Image feature, or img2dataset's jpg/png/webp column), label= ('label'; empty: none), id= ('key'
    when there is one; empty or absent: FILE:ROW), caption= ('caption' or 'text' when there is one; empty: none)."""
    files = resolve_shards(body, ".parquet")
    footers = [_footer(f) for f in files]  # read and closed: a pool may have thousands of shards
    schema = footers[0].schema.to_arrow_schema()
    features = schema_features(schema)
    if id is None and "key" in schema.names:  # img2dataset's sample keys
        id = "key"
    image_col, label_col, id_col = choose_columns(list(schema.names), features, image, label, id)
    caption_col = choose_caption(list(schema.names), caption)
    # a column that holds no images fails here, in one line, not in the first read of a worker
    split_image_column(pa.array([], schema.field(image_col).type), image_col, files[0])
    groups, start = [], 0
    for f, (path, meta) in enumerate(zip(files, footers, strict=True)):
        names = set(meta.schema.to_arrow_schema().names)
        for what, col in (("image", image_col), ("label", label_col), ("id", id_col), ("caption", caption_col)):
            if col is not None and col not in names:
                raise ThresherError(f"{path} has no {what} column {col!r} ({files[0].name} has); shards must agree")
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            if rows:
                groups.append((f, g, start))
                start += rows
    if not groups:
        raise ThresherError(f"no rows in {len(files)} Parquet file(s) named by {body!r}")
    classes = descriptions = None
    if label_col is not None and isinstance(features.get(label_col), dict):
        names = features[label_col].get("names")
        classes = [str(n) for n in names] if names else None
    if classes is None:
        classes, descriptions = read_classes(files[0].parent)
    return ParquetShards(
        files, np.asarray(groups, np.int64), start, image_col, label_col, id_col, classes, descriptions,
        spec=f"parquet:{body}", caption=caption_col,
    )  # fmt: skip
