"""Arrow columns of image tables, shared by the Hugging Face (``hf:``) and Parquet (``parquet:``) dataset kinds:
which columns hold the images, labels and ids, and reading them (Image feature structs, bytes or file paths)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ThresherError, UnreadableImage
from .base import UNLABELED


def closest(name: str, choices: list[str]) -> str:
    """``; did you mean 'x'?`` for the choice closest to ``name``, or nothing."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def schema_features(schema: pa.Schema) -> dict:
    """The Hugging Face feature types (Image, ClassLabel names) recorded in an arrow or Parquet schema, or {}."""
    meta = schema.metadata or {}
    try:
        features = json.loads(meta[b"huggingface"])["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


def feature_type(features: dict, column: str) -> str | None:
    feat = features.get(column)
    return feat.get("_type") if isinstance(feat, dict) else None


#: image columns named by their format, as img2dataset writes them
FORMAT_COLUMNS = ("jpg", "jpeg", "png", "webp")


def choose_columns(
    names: list[str], features: dict, image: str | None, label: str | None, id: str | None
) -> tuple[str, str | None, str | None]:
    """Resolve the image/label/id column options against the column ``names``; ``label=''`` means unlabeled."""
    for opt, col in (("image", image), ("label", label), ("id", id)):
        if col and col not in names:
            raise ThresherError(
                f"no column {col!r} for option {opt}{closest(col, names)} (columns: {', '.join(names)})"
            )
    if not image:
        typed = [c for c in names if feature_type(features, c) == "Image"]
        by_format = [c for c in FORMAT_COLUMNS if c in names]
        if "image" in names:
            image = "image"
        elif len(typed) == 1:
            image = typed[0]
        elif not typed and len(by_format) == 1:
            image = by_format[0]
        else:
            which = f"Image columns: {', '.join(typed)}" if typed else f"columns: {', '.join(names)}"
            raise ThresherError(f"cannot tell which column holds the images; pass ?image=COLUMN ({which})")
    if label is None:
        label = "label" if "label" in names else None
    return image, (label or None), (id or None)


#: the text columns a caption is looked for in, in order (img2dataset writes ``caption``; Hugging Face sets ``text``)
CAPTION_COLUMNS = ("caption", "text")


def choose_caption(names: list[str], caption: str | None) -> str | None:
    """The caption column: ``caption=`` as given (empty: none), else the first of CAPTION_COLUMNS present."""
    if caption == "":
        return None
    if caption is not None:
        if caption not in names:
            raise ThresherError(f"no column {caption!r} for option caption{closest(caption, names)} (columns: "
                                f"{', '.join(names)})")  # fmt: skip
        return caption
    return next((c for c in CAPTION_COLUMNS if c in names), None)


def caption_array(col, name: str, where) -> np.ndarray:
    """A text column as an object array of str (a missing caption is the empty string)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise ThresherError(f"caption column {name!r} of {where} holds {col.type}, not text; pass ?caption=COLUMN "
                            "(or ?caption= for none)")  # fmt: skip
    return np.array(["" if v is None else v for v in col.to_pylist()], dtype=object)


def split_image_column(col, name: str, where) -> tuple:
    """An image column (Image feature struct, bytes, or file paths) -> its (bytes, paths) parts, either None."""
    kind = col.type
    fields = {kind.field(i).name for i in range(kind.num_fields)} if pa.types.is_struct(kind) else set()
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if {"bytes", "path"} <= fields:
        return (
            pa.chunked_array([c.field("bytes") for c in chunks], kind.field("bytes").type),
            pa.chunked_array([c.field("path") for c in chunks], kind.field("path").type),
        )
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return col, None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return None, col
    raise ThresherError(
        f"column {name!r} of {where} holds {kind}, not images (expected an Image feature, bytes or file paths)"
    )


def image_bytes(bytes_col, paths_col, index: int, example_id: str, folder: Path) -> bytes:
    """The encoded image of row ``index``: its bytes, else the file its path names (relative: to ``folder``)."""
    data = bytes_col[index].as_py() if bytes_col is not None else None
    if data is not None:
        return data
    path = paths_col[index].as_py() if paths_col is not None else None
    if not path:
        raise UnreadableImage(example_id, "row has neither image bytes nor a path")
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists():
        p = folder / p
    try:
        return p.read_bytes()
    except OSError as exc:
        raise UnreadableImage(example_id, f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


def label_array(col, name: str, where) -> np.ndarray:
    """An integer label column as int64, nulls as -1 (unlabeled); anything else is a one-line error."""
    if not pa.types.is_integer(col.type):
        raise ThresherError(
            f"label column {name!r} of {where} holds {col.type}, not integers "
            "(use a ClassLabel feature, or label= for unlabeled)"
        )
    labels = np.asarray(pc.fill_null(col, UNLABELED).to_numpy(), dtype=np.int64)
    if len(labels) and labels.min() < UNLABELED:
        raise ThresherError(f"label column {name!r} has negative label {int(labels.min())}")
    return labels


def unique_ids(values: list, name: str, where) -> np.ndarray:
    """The values of an id column as strings, which must be unique."""
    ids = np.array([str(v) for v in values], dtype=object)
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise ThresherError(f"id column {name!r} of {where} repeats {str(uniq[counts > 1][0])!r}; ids must be unique")
    return ids
