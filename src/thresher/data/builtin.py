"""``builtin:NAME[:SPLIT]``: the real datasets thresher's demos and tests use, found local-first.

Lookup order: ``--data-root``, ``THRESHER_DATA``, ``../shared/data`` beside the checkout, then (fashion-mnist) the
Debian package's IDX files, and last a torchvision download where one exists (never with ``THRESHER_OFFLINE`` set).
Offline, the failure says where to put the files.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ThresherError
from ..paths import cache_dir, data_roots
from ..registry import Registry
from .npz import ArrayDataset, open_npz_path
from .spec import DATASETS


@dataclass(frozen=True)
class Builtin:
    """A named dataset stored as ``<folder>/<split>.npz`` + ``classes.txt`` under a data root."""

    name: str
    folder: str
    splits: tuple[str, ...]
    description: str
    download: str | None = None  # name of a registered downloader, if a public download exists
    debian: str | None = None  # Debian package folder with IDX files, if any

    @property
    def default_split(self) -> str:
        return self.splits[0]


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "tiny-imagenet-32",
            "tiny-imagenet-200-32px",
            ("train", "val"),
            "source pool: Tiny ImageNet, 200 classes, 32x32 RGB",
        ),
        Builtin(
            "cifar10",
            "cifar10",
            ("train", "test"),
            "target, small shift: CIFAR-10, 10 classes, 32x32 RGB",
            download="cifar10",
        ),
        Builtin(
            "fashion-mnist",
            "fashion-mnist",
            ("train", "test"),
            "target, large shift: Fashion-MNIST, 10 classes, 28x28 grayscale",
            download="fashion-mnist",
            debian="/usr/share/datasets/fashion-mnist",
        ),
    )
}

#: name -> function(builtin, split) -> ArrayDataset, used only when no local copy exists
DOWNLOADERS: Registry = Registry("downloader")


def locate(b: Builtin, split: str, data_root: str | None = None) -> Path | None:
    """The first ``<root>/<folder>/<split>.npz`` that exists, in lookup order (also accepts the builtin's name)."""
    for root in data_roots(data_root):
        for folder in (b.folder, b.name):
            f = root / folder / f"{split}.npz"
            if f.is_file():
                return f
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or plain), the MNIST family's format."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _debian(b: Builtin, split: str) -> ArrayDataset | None:
    if not b.debian:
        return None
    stem = {"train": "train", "test": "t10k"}[split]
    root = Path(b.debian)
    for suffix in (".gz", ""):
        imgs = root / f"{stem}-images-idx3-ubyte{suffix}"
        labs = root / f"{stem}-labels-idx1-ubyte{suffix}"
        if imgs.is_file() and labs.is_file():
            classes = [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ]
            ds = ArrayDataset(
                _read_idx(imgs), _read_idx(labs).astype(np.int64), classes=classes, id_prefix=f"debian-{split}-"
            )
            ds.source = str(imgs)
            return ds
    return None


@DOWNLOADERS.register("cifar10")
def _download_cifar10(b: Builtin, split: str) -> ArrayDataset:
    from torchvision.datasets import CIFAR10

    root = cache_dir() / "downloads" / "cifar10"
    ds = CIFAR10(str(root), train=split == "train", download=True)
    out = ArrayDataset(np.asarray(ds.data), np.asarray(ds.targets), classes=list(ds.classes), id_prefix=f"tv-{split}-")
    out.source = str(root)  # the full official split: ids differ from the 5,000-image shared subset on purpose
    return out


@DOWNLOADERS.register("fashion-mnist")
def _download_fashion(b: Builtin, split: str) -> ArrayDataset:
    from torchvision.datasets import FashionMNIST

    root = cache_dir() / "downloads" / "fashion-mnist"
    ds = FashionMNIST(str(root), train=split == "train", download=True)
    out = ArrayDataset(ds.data.numpy(), ds.targets.numpy(), classes=list(ds.classes), id_prefix=f"tv-{split}-")
    out.source = str(root)
    return out


def open_builtin_dataset(name: str, split: str | None = None, data_root: str | None = None) -> ArrayDataset:
    """Resolve a built-in dataset local-first; see the module docstring for the order."""
    if name not in BUILTINS:
        from difflib import get_close_matches

        close = get_close_matches(name, list(BUILTINS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ThresherError(f"unknown built-in dataset {name!r}{hint} (known: {', '.join(BUILTINS)})")
    b = BUILTINS[name]
    split = split or b.default_split
    if split not in b.splits:
        raise ThresherError(f"built-in {name} has no split {split!r} (splits: {', '.join(b.splits)})")
    found = locate(b, split, data_root)
    if found is not None:
        return open_npz_path(found)
    deb = _debian(b, split)
    if deb is not None:
        return deb
    where = " or ".join(str(r / b.folder) for r in data_roots(data_root)[:2]) or f"$THRESHER_DATA/{b.folder}"
    put = (
        f"put {split}.npz (arrays images: N x H x W x C uint8, labels: N int64) and classes.txt in {where}, "
        "or pass --data-root / set THRESHER_DATA"
    )
    if b.download is None:
        raise ThresherError(f"built-in {name}:{split} not found and no public download exists; {put}")
    if os.environ.get("THRESHER_OFFLINE"):
        raise ThresherError(f"built-in {name}:{split} not found locally and THRESHER_OFFLINE is set; {put}")
    try:
        return DOWNLOADERS.create(b.download, b=b, split=split)
    except ThresherError:
        raise
    except Exception as exc:  # network failures come in many types; the message is what matters
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise ThresherError(
            f"built-in {name}:{split} not found locally and its download failed ({reason}); {put}"
        ) from None


@DATASETS.register("builtin")
def open_builtin(body: str, *, data_root: str | None = None, strict: bool = False) -> ArrayDataset:
    """``builtin:NAME[:SPLIT]`` (names: tiny-imagenet-32, cifar10, fashion-mnist)."""
    name, _, split = body.partition(":")
    return open_builtin_dataset(name, split or None, data_root)
