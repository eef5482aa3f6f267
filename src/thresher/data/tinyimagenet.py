"""Tiny ImageNet (CS231n, 2015) -> the 32 px built-ins ``tiny-imagenet-32`` and ``tiny-imagenet-32-full``.

The recipe, fixed here and in the README ("Built-in data"), applied to the public archive ``tiny-imagenet-200.zip``
(or the folder it unpacks to):

1. Classes: the wnids of ``wnids.txt``, sorted; label i is the i-th; ``classes.txt`` line i is ``wnid<TAB>words``
   with the words of ``words.txt``.
2. Candidates per class, sorted by file name: train, the files ``train/WNID/images/*.JPEG``; val, the files that
   ``val_annotations.txt`` gives that wnid (the archive's test split has no labels and is not used).
3. Draw: one ``numpy.random.default_rng(0)`` per split, used class by class in label order; a class of n candidates
   keeps ``numpy.sort(rng.choice(n, k, replace=False))`` of them (k = 150 train, 25 val for ``tiny-imagenet-32``);
   ``tiny-imagenet-32-full`` keeps every image (500 + 50 per class) and draws nothing.
4. Pixels: decoded by Pillow and converted to RGB (grayscale JPEGs repeated on three channels), 64 x 64 required,
   then 2 x 2 box-downsampled to 32 x 32 with the mean rounded half up: ``(a + b + c + d + 2) // 4``.
5. Order and ids: class-major, by file name within a class; an image's id is its file name without the extension
   (``n01443537_17``, ``val_1234``), the same in both built-ins.

The shared copy of ../shared/data was drawn by an earlier script whose draw is not recorded: a converted copy holds
the same kind of images, not always the same ones, so its ids (file names) differ from that copy's (``train-000123``).
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from .. import __version__
from ..atomic import atomic_folder
from ..errors import ThresherError
from ..progress import progress_bar
from .download import Remote, md5sum

#: the public archive (CS231n); size and MD5 as published with it and recorded by independent downloads
ARCHIVE = Remote(
    url="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    filename="tiny-imagenet-200.zip",
    md5="90528d7ca1a48142e341f4ef8d21d0de",
    size=248_100_043,
)

TERMS = (
    "Tiny ImageNet is a subset of ImageNet: by downloading or using it you accept the ImageNet terms of access, "
    "non-commercial research and educational use only (https://image-net.org/download.php)."
)

RECIPE_VERSION = 1
SEED = 0
SIZE_IN, SIZE_OUT = 64, 32
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Draw:
    """How many images per class each split keeps (None: all of them, no draw)."""

    train: int | None
    val: int | None


#: built-in name -> its draw; both come from the same archive by the same recipe
VARIANTS: dict[str, Draw] = {"tiny-imagenet-32": Draw(150, 25), "tiny-imagenet-32-full": Draw(None, None)}


# --- reading the archive (a zip or the folder it unpacks to) --------------------------------------------------------


class _Source:
    """The archive's files by path relative to its ``tiny-imagenet-200/`` root, from a zip or a folder."""

    LAYOUT = "wnids.txt, words.txt, train/WNID/images/*.JPEG, val/images/ and val/val_annotations.txt"

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if path.is_dir():
            root = next((c for c in (path, path / "tiny-imagenet-200") if (c / "wnids.txt").is_file()), None)
            if root is None:
                raise ThresherError(
                    f"{path} is not the unpacked Tiny ImageNet archive: no wnids.txt (expected {self.LAYOUT})"
                )
            self._root = root
            self.names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            self.present = set(self.names)
            return
        if not path.is_file():
            raise ThresherError(f"archive {path} does not exist")
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ThresherError(
                f"{path} is not a complete zip archive ({exc}): it is truncated or damaged; delete it and download "
                "it again"
            ) from None
        names = [n for n in self._zip.namelist() if not n.endswith("/")]
        tops = sorted({str(PurePosixPath(n).parent) for n in names if PurePosixPath(n).name == "wnids.txt"}, key=len)
        if not tops:
            raise ThresherError(
                f"{path} is not the Tiny ImageNet archive: it has no wnids.txt (expected {self.LAYOUT})"
            )
        prefix = "" if tops[0] == "." else tops[0] + "/"
        self._prefix = prefix
        self.names = sorted(n[len(prefix) :] for n in names if n.startswith(prefix))
        self.present = set(self.names)

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(self._prefix + name)
            return (self._root / name).read_bytes()
        except (zipfile.BadZipFile, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
            raise ThresherError(
                f"{self.path}: cannot read {name} ({exc}); the archive is damaged, delete it and download it again"
            ) from None

    def text(self, name: str) -> str:
        if name not in self.present:
            raise ThresherError(
                f"{self.path} is not the Tiny ImageNet archive: it has no {name} (expected {self.LAYOUT})"
            )
        return self.read(name).decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _classes(src: _Source) -> tuple[list[str], list[str]]:
    """Sorted wnids and their words (words.txt; the wnid itself when words.txt does not name it)."""
    wnids = sorted({w.strip() for w in src.text("wnids.txt").splitlines() if w.strip()})
    if not wnids:
        raise ThresherError(f"{src.path}: wnids.txt lists no class")
    words: dict[str, str] = {}
    for line in src.text("words.txt").splitlines():
        wnid, _, text = line.partition("\t")
        words[wnid.strip()] = " ".join(text.split())
    return wnids, [words.get(w) or w for w in wnids]


def _candidates(src: _Source, wnids: list[str]) -> dict[str, list[list[str]]]:
    """Per split, per class (label order): the sorted paths of its images."""
    index = {w: i for i, w in enumerate(wnids)}
    train: list[list[str]] = [[] for _ in wnids]
    for name in src.names:
        parts = name.split("/")
        if len(parts) == 4 and parts[0] == "train" and parts[2] == "images" and parts[3].upper().endswith(".JPEG"):
            if parts[1] in index:
                train[index[parts[1]]].append(name)
    val: list[list[str]] = [[] for _ in wnids]
    for k, line in enumerate(src.text("val/val_annotations.txt").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise ThresherError(
                f"{src.path}: val/val_annotations.txt line {k} names no class of wnids.txt ({line.strip()[:60]!r}); "
                "the archive is not the official one"
            )
        name = f"val/images/{fields[0]}"
        if name not in src.present:
            raise ThresherError(
                f"{src.path}: val/val_annotations.txt line {k} names {name}, which the archive "
                "does not hold; the archive is incomplete, download it again"
            )
        val[index[fields[1]]].append(name)
    return {"train": [sorted(c) for c in train], "val": [sorted(c) for c in val]}


def draw(candidates: list[list[str]], k: int | None, seed: int = SEED) -> list[tuple[int, str]]:
    """(label, path) of the images a split keeps: step 3 of the recipe (module docstring)."""
    rng = np.random.default_rng(seed)
    kept: list[tuple[int, str]] = []
    for label, names in enumerate(candidates):
        chosen = range(len(names)) if k is None else np.sort(rng.choice(len(names), size=k, replace=False))
        kept.extend((label, names[int(i)]) for i in chosen)
    return kept


def _check_counts(src: _Source, wnids: list[str], cands: dict[str, list[list[str]]], per_split: dict) -> None:
    """Every class has the images the recipe keeps (an empty class is an error even when it keeps all)."""
    for split, k in per_split.items():
        for wnid, names in zip(wnids, cands[split], strict=True):
            if len(names) < max(k or 1, 1):
                raise ThresherError(
                    f"{src.path}: class {wnid} has {len(names)} {split} images, the recipe keeps "
                    f"{k or 'all, at least 1'}: the archive is incomplete, download it again"
                )


def downsample(rgb: np.ndarray) -> np.ndarray:
    """2 x 2 box mean of an H x W x 3 uint8 image, rounded half up (step 4 of the recipe)."""
    a = rgb.astype(np.uint16)
    total = a[0::2, 0::2] + a[0::2, 1::2] + a[1::2, 0::2] + a[1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def _decode(item: tuple[str, bytes]) -> np.ndarray:
    name, data = item
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(im.convert("RGB"))
    except Exception as exc:  # Pillow raises many types for a damaged file
        raise ThresherError(f"cannot decode {name} ({exc}); the archive is damaged, download it again") from None
    if rgb.shape[:2] != (SIZE_IN, SIZE_IN):
        raise ThresherError(
            f"{name} is {rgb.shape[1]}x{rgb.shape[0]}, not {SIZE_IN}x{SIZE_IN}: not the Tiny ImageNet archive"
        )
    return downsample(rgb)


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _render(src: _Source, kept: list[tuple[int, str]], *, desc: str, progress: bool) -> np.ndarray:
    """Decode and downsample the kept images, in order, decoding on a few threads (Pillow releases the GIL)."""
    images = np.empty((len(kept), SIZE_OUT, SIZE_OUT, 3), dtype=np.uint8)
    bar = progress_bar(len(kept), desc, enabled=progress)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        pos = 0
        for chunk in _chunks(kept, 512):
            data = [(name, src.read(name)) for _, name in chunk]  # reads stay on one thread: one zip handle
            for j, img in enumerate(pool.map(_decode, data)):
                images[pos + j] = img
            pos += len(chunk)
            bar.update(len(chunk))
    bar.close()
    return images


def _ids(kept: list[tuple[int, str]]) -> np.ndarray:
    return np.array([PurePosixPath(name).stem for _, name in kept])


def convert(
    archive: str | Path,
    out: str | Path,
    *,
    draw_per_class: Draw,
    name: str = "tiny-imagenet-32",
    seed: int = SEED,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Convert the archive (zip or unpacked folder) by the recipe into ``out``: train.npz, val.npz (uncompressed,
    memory-mapped when read; arrays images, labels, ids), classes.txt and provenance.json, written as one folder
    that replaces ``out`` only when complete. Returns the provenance."""
    archive, out = Path(archive), Path(out)
    t0 = time.perf_counter()
    src = _Source(archive)
    try:
        wnids, words = _classes(src)
        cands = _candidates(src, wnids)
        per_split = {"train": draw_per_class.train, "val": draw_per_class.val}
        _check_counts(src, wnids, cands, per_split)
        kept = {s: draw(cands[s], per_split[s], seed) for s in SPLITS}
        digest = md5sum(archive) if archive.is_file() else None
        with atomic_folder(out) as tmp:
            for split in SPLITS:
                images = _render(src, kept[split], desc=f"{name}:{split}", progress=progress)
                labels = np.array([lab for lab, _ in kept[split]], dtype=np.int64)
                np.savez(tmp / f"{split}.npz", images=images, labels=labels, ids=_ids(kept[split]))
                log(f"  {split}: {len(labels):,} images, {len(wnids)} classes")
            (tmp / "classes.txt").write_text("".join(f"{w}\t{t}\n" for w, t in zip(wnids, words, strict=True)))
            provenance = {
                "dataset": name,
                "archive": str(archive.resolve()),
                "archive_md5": digest,
                "official_archive": digest == ARCHIVE.md5,
                "recipe_version": RECIPE_VERSION,
                "per_class": per_split,
                "seed": seed,
                "counts": {s: len(kept[s]) for s in SPLITS},
                "classes": len(wnids),
                "thresher": __version__,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    finally:
        src.close()
    return provenance
