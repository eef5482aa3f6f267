"""``builtin:NAME[:SPLIT]``: the real datasets thresher's demos and tests use, found local-first, else obtained.

Lookup order: ``--data-root``, ``THRESHER_DATA``, ``../shared/data`` beside the checkout, the cache's ``data/``
folder (where ``thresher data download`` and first use put a converted copy), then (fashion-mnist) the Debian
package's IDX files. When none holds it, the built-in is obtained into the cache (never with ``THRESHER_OFFLINE``
set): Tiny ImageNet from its public archive by the recipe of ``tinyimagenet.py``, CIFAR-10 and Fashion-MNIST through
torchvision. Offline, the failure gives the command to run and where to put the files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_folder
from ..errors import ThresherError
from ..paths import cache_dir, data_roots
from ..registry import Registry
from . import tinyimagenet
from .download import fetch, file_lock
from .idx import PREFIXES as IDX_PREFIXES
from .idx import read_idx
from .npz import ArrayDataset, open_npz_path
from .spec import DATASETS


@dataclass(frozen=True)
class Builtin:
    """A named dataset stored as ``<folder>/<split>.npz`` + ``classes.txt`` under a data root."""

    name: str
    folder: str
    splits: tuple[str, ...]
    description: str
    download: str | None = None  # name of the registered way to obtain it, if a public download exists
    debian: str | None = None  # Debian package folder with IDX files, if any
    obtained: str = ""  # what obtaining it downloads, for messages

    @property
    def default_split(self) -> str:
        return self.splits[0]


_TINY = f"{tinyimagenet.ARCHIVE.size / 1e6:.0f} MB archive {tinyimagenet.ARCHIVE.filename}, converted to 32 px"
BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "tiny-imagenet-32",
            "tiny-imagenet-200-32px",
            ("train", "val"),
            "source pool: Tiny ImageNet, 200 classes, 32x32 RGB, 150 train + 25 val per class",
            download="tiny-imagenet",
            obtained=_TINY,
        ),
        Builtin(
            "tiny-imagenet-32-full",
            "tiny-imagenet-200-32px-full",
            ("train", "val"),
            "source pool: Tiny ImageNet, 200 classes, 32x32 RGB, all 500 train + 50 val per class",
            download="tiny-imagenet",
            obtained=_TINY,
        ),
        Builtin(
            "cifar10",
            "cifar10",
            ("train", "test"),
            "target, small shift: CIFAR-10, 10 classes, 32x32 RGB",
            download="cifar10",
            obtained="163 MB through torchvision, the full official splits (50,000 train, 10,000 test)",
        ),
        Builtin(
            "fashion-mnist",
            "fashion-mnist",
            ("train", "test"),
            "target, large shift: Fashion-MNIST, 10 classes, 28x28 grayscale",
            download="fashion-mnist",
            debian="/usr/share/datasets/fashion-mnist",
            obtained="30 MB through torchvision, the full official splits (60,000 train, 10,000 test)",
        ),
    )
}

#: name -> function(b, dest, *, source, url, offline, log) writing b's splits and classes.txt into the folder dest
DOWNLOADERS: Registry = Registry("downloader")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def builtin(name: str) -> Builtin:
    """The built-in called ``name``; an unknown name fails with a suggestion."""
    if name not in BUILTINS:
        from difflib import get_close_matches

        close = get_close_matches(name, list(BUILTINS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ThresherError(f"unknown built-in dataset {name!r}{hint} (known: {', '.join(BUILTINS)})")
    return BUILTINS[name]


def locate(b: Builtin, split: str, data_root: str | None = None) -> Path | None:
    """The first ``<root>/<folder>/<split>.npz`` that exists, in lookup order (also accepts the builtin's name)."""
    for root in data_roots(data_root):
        for folder in (b.folder, b.name):
            f = root / folder / f"{split}.npz"
            if f.is_file():
                return f
    return None


def download_root() -> Path:
    """Where obtained built-ins go by default: the cache's data folder, the last root of the lookup order."""
    return cache_dir() / "data"


def complete(b: Builtin, folder: Path) -> bool:
    """Whether ``folder`` holds every split of ``b``."""
    return all((folder / f"{s}.npz").is_file() for s in b.splits)


FASHION_CLASSES = [
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


def _debian_files(b: Builtin, split: str) -> tuple[Path, Path] | None:
    """(images, labels) IDX files of the Debian package for ``split``, if installed."""
    if not b.debian:
        return None
    stem = IDX_PREFIXES[split]
    for suffix in (".gz", ""):
        imgs = Path(b.debian) / f"{stem}-images-idx3-ubyte{suffix}"
        labs = Path(b.debian) / f"{stem}-labels-idx1-ubyte{suffix}"
        if imgs.is_file() and labs.is_file():
            return imgs, labs
    return None


def _debian(b: Builtin, split: str) -> ArrayDataset | None:
    files = _debian_files(b, split)
    if files is None:
        return None
    imgs, labs = files
    ds = ArrayDataset(
        read_idx(imgs), read_idx(labs).astype(np.int64), classes=FASHION_CLASSES, id_prefix=f"debian-{split}-"
    )
    ds.source = str(imgs)
    return ds


def _put_hint(b: Builtin, split: str, data_root: str | None = None) -> str:
    where = " or ".join(str(r / b.folder) for r in data_roots(data_root)[:2]) or f"$THRESHER_DATA/{b.folder}"
    return (
        f"put {split}.npz (arrays images: N x H x W x C uint8, labels: N int64) and classes.txt in {where}, "
        "or pass --data-root / set THRESHER_DATA"
    )


def _offline(b: Builtin) -> ThresherError:
    """THRESHER_OFFLINE and nothing local: the exact command, and where the file goes."""
    if b.download == "tiny-imagenet":
        a = tinyimagenet.ARCHIVE
        return ThresherError(
            f"built-in {b.name} is not here and THRESHER_OFFLINE is set: online, run `thresher data download "
            f"{b.name}`; offline, get {a.filename} ({a.size / 1e6:.0f} MB, {a.url}) and run `thresher data download "
            f"{b.name} --from FILE`, or put it at {cache_dir() / 'downloads' / a.filename}"
        )
    return ThresherError(
        f"built-in {b.name} is not here and THRESHER_OFFLINE is set: online, run `thresher data download {b.name}`; "
        f"offline, {_put_hint(b, b.default_split)}"
    )


def obtain(
    b: Builtin,
    dest_root: str | Path | None = None,
    *,
    source: str | Path | None = None,
    url: str | None = None,
    force: bool = False,
    log: Callable[[str], None] = _log,
) -> Path:
    """Obtain ``b`` into ``dest_root/<folder>`` (default: the cache's data folder) unless it is complete there
    already (or ``force``); returns that folder. One process at a time per folder: the others wait and find it."""
    dest = Path(dest_root or download_root()) / b.folder
    if b.download is None:
        raise ThresherError(
            f"built-in {b.name} not found and no public download exists; {_put_hint(b, b.default_split)}"
        )
    with file_lock(dest.parent / f".{b.folder}.lock"):
        if complete(b, dest) and not force:
            return dest
        offline = bool(os.environ.get("THRESHER_OFFLINE"))
        try:
            DOWNLOADERS.create(b.download, b=b, dest=dest, source=source, url=url, offline=offline, log=log)
        except ThresherError:
            raise
        except Exception as exc:  # network failures come in many types; the message is what matters
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise ThresherError(
                f"built-in {b.name} not found locally and its download failed ({reason}); "
                f"{_put_hint(b, b.default_split)}"
            ) from None
    return dest


@DOWNLOADERS.register("tiny-imagenet")
def _obtain_tiny_imagenet(b: Builtin, dest: Path, *, source, url, offline: bool, log) -> None:
    """The public archive (downloaded once into the cache, or ``source``), converted by the recipe."""
    remote = tinyimagenet.ARCHIVE
    terms = f"note: {tinyimagenet.TERMS}"
    if source is None:
        source = cache_dir() / "downloads" / remote.filename
        if not source.is_file():
            if offline:
                raise _offline(b)
            log(terms)  # before the first byte is fetched
            terms = ""
            fetch(remote, source, url=url, log=log)
    elif not Path(source).exists():
        raise ThresherError(f"--from {source} does not exist; give the path of {remote.filename} or of its folder")
    if terms:
        log(terms)
    log(f"converting {source} into {dest} (recipe of thresher.data.tinyimagenet, {b.name})")
    prov = tinyimagenet.convert(source, dest, draw_per_class=tinyimagenet.VARIANTS[b.name], name=b.name, log=log)
    if prov["archive_md5"] and not prov["official_archive"]:
        log(
            f"note: {source} has MD5 {prov['archive_md5']}, not the official archive's {remote.md5}; it was converted "
            "by the same recipe, but results on it are not comparable with BENCHMARKS.md"
        )


def _torchvision(b: Builtin, dest: Path, dataset_cls, *, source, url, offline: bool, log) -> None:
    """A torchvision dataset (its own download and checksum, cached under downloads/) written as the built-in's npz
    files; ids ``tv-SPLIT-NNNNNN`` keep this copy apart from the shared subsets."""
    root = cache_dir() / "downloads" / b.name
    if source is not None or url is not None:
        raise ThresherError(
            f"--from and --url are for the Tiny ImageNet archive; {b.name} downloads through torchvision (put its "
            f"archive in {root} to skip the download)"
        )
    with atomic_folder(dest) as tmp:
        classes: list[str] = []
        for split in b.splits:
            try:
                ds = dataset_cls(str(root), train=split == "train", download=not offline)
            except RuntimeError:
                if offline:
                    raise _offline(b) from None
                raise
            images = np.asarray(ds.data.numpy() if hasattr(ds.data, "numpy") else ds.data, dtype=np.uint8)
            labels = np.asarray(ds.targets, dtype=np.int64)
            width = max(6, len(str(len(labels) - 1)))
            ids = np.array([f"tv-{split}-{i:0{width}d}" for i in range(len(labels))])
            np.savez(tmp / f"{split}.npz", images=images, labels=labels, ids=ids)
            classes = list(ds.classes)
            log(f"  {split}: {len(labels):,} images")
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in classes))


@DOWNLOADERS.register("cifar10")
def _obtain_cifar10(b: Builtin, dest: Path, **kw) -> None:
    from torchvision.datasets import CIFAR10

    _torchvision(b, dest, CIFAR10, **kw)


@DOWNLOADERS.register("fashion-mnist")
def _obtain_fashion(b: Builtin, dest: Path, **kw) -> None:
    from torchvision.datasets import FashionMNIST

    _torchvision(b, dest, FashionMNIST, **kw)


def open_builtin_dataset(name: str, split: str | None = None, data_root: str | None = None) -> ArrayDataset:
    """Resolve a built-in dataset local-first, else obtain it into the cache; see the module docstring."""
    b = builtin(name)
    split = split or b.default_split
    if split not in b.splits:
        raise ThresherError(f"built-in {name} has no split {split!r} (splits: {', '.join(b.splits)})")
    found = locate(b, split, data_root)
    if found is not None:
        return open_npz_path(found)
    deb = _debian(b, split)
    if deb is not None:
        return deb
    return open_npz_path(obtain(b) / f"{split}.npz")


def download_builtin(
    name: str,
    *,
    source: str | Path | None = None,
    dest_root: str | Path | None = None,
    url: str | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """``thresher data download NAME``: obtain a built-in into ``dest_root`` (default: the cache), say where it is
    and whether the lookup order will find it there."""
    from .npz import array_shape

    b = builtin(name)
    root = Path(dest_root) if dest_root else download_root()
    dest = root / b.folder
    if complete(b, dest) and not force:
        log(f"builtin:{name} is already in {dest}; --force obtains it again")
    else:
        obtain(b, root, source=source, url=url, force=force, log=log)
        sizes = ", ".join(f"{s} {array_shape(dest / f'{s}.npz')[0]:,}" for s in b.splits)
        log(f"builtin:{name} is ready in {dest} ({sizes} images)")
    first = locate(b, b.default_split)
    if first is None:
        log(f"note: {root} is not in the lookup order: pass --data-root {root} or set THRESHER_DATA={root}")
    elif first.parent.resolve() != dest.resolve():
        log(f"note: builtin:{name} is read from {first.parent} first (earlier in the lookup order)")
    return dest


@DATASETS.register("builtin")
def open_builtin(body: str, *, data_root: str | None = None, strict: bool = False) -> ArrayDataset:
    """``builtin:NAME[:SPLIT]`` (names: tiny-imagenet-32, tiny-imagenet-32-full, cifar10, fashion-mnist)."""
    name, _, split = body.partition(":")
    return open_builtin_dataset(name, split or None, data_root)
