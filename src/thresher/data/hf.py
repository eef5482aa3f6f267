"""``hf:PATH[:SPLIT]`` datasets: a Hugging Face dataset written by ``save_to_disk``, read without `datasets`.

The arrow stream files listed in ``state.json`` are memory-mapped with pyarrow, so opening reads no pixels;
feature types (Image, ClassLabel names) come from ``dataset_info.json`` or, failing that, the arrow schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import ThresherError
from .base import UNLABELED, ImageDataset, decode_image
from .columns import (
    caption_array,
    choose_caption,
    choose_columns,
    closest,
    feature_type,
    image_bytes,
    label_array,
    schema_features,
    split_image_column,
    unique_ids,
)
from .spec import DATASETS, split_suffix


def _read_json(path: Path) -> dict:
    """Parse a small JSON file, turning every failure into a one-line ThresherError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ThresherError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ThresherError(f"{path} does not hold a JSON object")
    return data


def resolve_split(root: Path, split: str | None) -> Path:
    """The folder of one saved Dataset: ``root`` itself, or ``root/SPLIT`` when ``root`` is a DatasetDict."""
    if not root.exists():
        raise ThresherError(f"HF dataset folder {root} does not exist")
    if not root.is_dir():
        raise ThresherError(f"hf: needs the folder written by save_to_disk, but {root} is a file")
    if (root / "dataset_dict.json").is_file():
        splits = [str(s) for s in _read_json(root / "dataset_dict.json").get("splits", [])]
        if split is None:
            raise ThresherError(
                f"{root} holds a DatasetDict; name a split as hf:{root}:SPLIT (splits: {', '.join(splits) or 'none'})"
            )
        if split not in splits:
            raise ThresherError(f"split {split!r} not in {root}{closest(split, splits)} (splits: {', '.join(splits)})")
        return root / split
    if split is not None:
        raise ThresherError(f"{root} holds a single dataset, not a DatasetDict; drop the ':{split}' suffix")
    return root


def read_saved_dataset(folder: Path) -> tuple[pa.Table, dict, list[Path]]:
    """Memory-map the arrow files of a saved Dataset in order: (table, features dict, arrow files)."""
    if not (folder / "state.json").is_file():
        raise ThresherError(f"{folder} is not a dataset saved with save_to_disk (no state.json or dataset_dict.json)")
    entries = _read_json(folder / "state.json").get("_data_files") or []
    files = [folder / str(e.get("filename", "")) for e in entries if isinstance(e, dict)]
    if not files:
        raise ThresherError(f"{folder / 'state.json'} lists no arrow data files")
    for f in files:
        if not f.is_file():
            raise ThresherError(f"arrow file {f} listed in {folder / 'state.json'} is missing")
    try:
        tables = [pa.ipc.open_stream(pa.memory_map(str(f), "r")).read_all() for f in files]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except (pa.ArrowException, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise ThresherError(f"cannot read the arrow files of {folder}: {reason}") from None
    features: dict = {}
    if (folder / "dataset_info.json").is_file():
        features = _read_json(folder / "dataset_info.json").get("features") or {}
    else:
        features = schema_features(table.schema)
    return table, (features if isinstance(features, dict) else {}), files


class ArrowImageDataset(ImageDataset):
    """Rows of a memory-mapped arrow table whose image column holds encoded bytes (or a file path)."""

    def __init__(
        self,
        folder: Path,
        files: list[Path],
        table: pa.Table,
        features: dict,
        image: str,
        label: str | None,
        id_column: str | None,
        spec: str = "",
    ):
        super().__init__()
        self.folder, self.files, self.spec = folder, files, spec
        self.source = str(folder)
        self.image_column, self.label_column, self.id_column = image, label, id_column
        self.classes = None
        if label is not None and feature_type(features, label) == "ClassLabel":
            names = features[label].get("names")
            self.classes = [str(n) for n in names] if names else None
        self._attach(table)
        self._num_rows = table.num_rows

    def _attach(self, table: pa.Table) -> None:
        """Keep the table and split the image column into its bytes and path parts."""
        self._table = table
        self._bytes, self._paths = split_image_column(table.column(self.image_column), self.image_column, self.folder)

    def __getstate__(self) -> dict:
        # Pickle the file names, not the table: worker processes re-map the files instead of copying pixels.
        state = self.__dict__.copy()
        state.update(_table=None, _bytes=None, _paths=None)
        return state

    def _ensure_open(self) -> None:
        if self._table is None:
            table, _, _ = read_saved_dataset(self.folder)
            self._attach(table)

    def source_files(self) -> list[Path]:
        return [Path(self.folder) / f for f in self.files]

    def __len__(self) -> int:
        return self._num_rows

    def _make_ids(self) -> np.ndarray:
        self._ensure_open()
        if self.id_column is None:
            width = max(6, len(str(max(len(self) - 1, 0))))
            return np.array([f"row-{i:0{width}d}" for i in range(len(self))], dtype=object)
        return unique_ids(self._table.column(self.id_column).to_pylist(), self.id_column, self.folder)

    def _make_labels(self) -> np.ndarray:
        if self.label_column is None:
            return np.full(len(self), UNLABELED, dtype=np.int64)
        self._ensure_open()
        return label_array(self._table.column(self.label_column), self.label_column, self.folder)

    def load(self, index: int) -> np.ndarray:
        self._ensure_open()
        example_id = str(self.ids[index])
        return decode_image(image_bytes(self._bytes, self._paths, index, example_id, self.folder), example_id)


@DATASETS.register("hf")
def open_hf(
    body: str,
    *,
    data_root: str | None = None,
    strict: bool = False,
    image: str | None = None,
    label: str | None = None,
    id: str | None = None,
    caption: str | None = None,
) -> ArrowImageDataset:
    """``hf:PATH`` or ``hf:PATH:SPLIT``; options image= ('image'), label= ('label'; empty: none), id=, caption=
    ('caption' or 'text' when there is one; empty: none)."""
    path_s, split = split_suffix(body)
    folder = resolve_split(Path(path_s).expanduser(), split)
    table, features, files = read_saved_dataset(folder)
    image_col, label_col, id_col = choose_columns(list(table.column_names), features, image, label, id)
    ds = ArrowImageDataset(folder, files, table, features, image_col, label_col, id_col, spec=f"hf:{body}")
    caption_col = choose_caption(list(table.column_names), caption)
    if caption_col is not None:  # a text column is small: read now, kept with the dataset (and pickled with it)
        ds.captions = caption_array(table.column(caption_col), caption_col, folder)
    return ds
