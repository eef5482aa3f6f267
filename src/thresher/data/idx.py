"""``idx:FOLDER[:SPLIT]`` datasets: the IDX files of MNIST-style datasets (``train-images-idx3-ubyte[.gz]`` and its
labels; split ``test`` reads ``t10k-*``), e.g. the full Fashion-MNIST Debian installs with
``apt-get install dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``. Class names from
``classes.txt`` beside the files, or the file given as ``?classes=PATH``."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import ThresherError
from .classes import read_classes
from .npz import ArrayDataset
from .spec import DATASETS, split_suffix

PREFIXES = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) of unsigned bytes -> its array (magic 0x00000803 images, 0x00000801 labels)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ThresherError(f"cannot read {path} ({exc.__class__.__name__}); is it an IDX file?") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ThresherError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(dims)):
        raise ThresherError(f"{path}: {len(raw) - start} data bytes for a shape of {dims}; the file is truncated")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise ThresherError(
        f"{folder} has no {stem}[.gz]; point idx: at a folder of IDX files (for Fashion-MNIST on Debian: "
        "apt-get install dataset-fashion-mnist, then idx:/usr/share/datasets/fashion-mnist)"
    )


@DATASETS.register("idx")
def open_idx(body: str, *, data_root: str | None = None, strict: bool = False, classes: str | None = None):
    path, split = split_suffix(body)
    split = split or "train"
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ThresherError(f"idx:{body}: {folder} is not a folder of IDX files")
    prefix = PREFIXES.get(split, split)
    image_file = _find(folder, f"{prefix}-images-idx3-ubyte")
    images = read_idx(image_file)
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if len(labels) != len(images):
        raise ThresherError(f"idx:{body}: {len(images)} images but {len(labels)} labels")
    if classes is not None:
        f = Path(classes).expanduser()
        if not f.is_file():
            raise ThresherError(f"idx:{body}: the classes file {f} does not exist")
        names, desc = read_classes(f.parent) if f.name == "classes.txt" else _lines(f)
    else:
        names, desc = read_classes(folder)
    ds = ArrayDataset(images, labels, classes=names, descriptions=desc, id_prefix=f"{split}-", spec=f"idx:{body}")
    ds.source = str(image_file)
    return ds


def _lines(f: Path) -> tuple[list[str], list[str]]:
    names = [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return names, names
