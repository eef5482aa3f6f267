"""``folder:PATH`` datasets: an ImageFolder tree (a sub-folder per class) or a flat folder of unlabeled images
(ids: paths relative to the root). A ``captions.tsv`` in the root (``relative/path<TAB>caption`` per line) gives
images their text (issue 21); an image it does not list has the empty caption.

Opening only lists file names; pixels are decoded one file at a time in ``load``, so large pools open fast.
Hidden entries (names starting with '.', e.g. ``.ipynb_checkpoints``) are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ThresherError, UnreadableImage
from .base import IMAGE_EXTENSIONS, UNLABELED, ImageDataset, decode_image, is_image_name
from .spec import DATASETS


def _top_level_images(root: Path) -> list[str]:
    """Image file names directly inside ``root``."""
    with os.scandir(root) as it:
        return [e.name for e in it if is_image_name(e.name) and e.is_file()]


def _images_below(folder: Path, root: Path) -> list[str]:
    """POSIX paths (relative to ``root``) of every image under ``folder``, recursively; symlink loops cut."""
    found: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root).as_posix()
        found.extend(f"{rel}/{f}" for f in filenames if is_image_name(f))
    return found


def scan_folder(root: Path) -> tuple[list[str], np.ndarray, list[str] | None]:
    """Decide the layout of ``root`` and list it: (sorted relative paths, labels, class names or None)."""
    with os.scandir(root) as it:
        subdirs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    top = sorted(_top_level_images(root))
    per_class = {d: sorted(_images_below(root / d, root)) for d in subdirs}
    classes = [d for d in subdirs if per_class[d]]  # sub-folders without images are not classes
    if classes and top:
        raise ThresherError(
            f"{root} mixes images at the top level ({top[0]!r}, ...) with class folders "
            f"({', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}); "
            "move the loose images into a class folder or elsewhere"
        )
    if classes:
        paths = [p for c in classes for p in per_class[c]]
        labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(per_class[c]) for c in classes])
        return paths, labels, classes
    if not top:
        raise ThresherError(
            f"no images found under {root} (accepted extensions, any case: {', '.join(IMAGE_EXTENSIONS)})"
        )
    return top, np.full(len(top), UNLABELED, dtype=np.int64), None


class FolderDataset(ImageDataset):
    """Image files below a root folder; ids are POSIX paths relative to the root (``cat/001.jpg``)."""

    def __init__(self, root: Path, paths: list[str], labels: np.ndarray, classes: list[str] | None, spec: str = ""):
        super().__init__()
        self.root = root
        self.paths = paths
        self._raw_labels = labels
        self.classes = classes
        self.spec = spec

    def source_files(self) -> list[Path]:
        return [self.root]

    def __len__(self) -> int:
        return len(self.paths)

    def _make_ids(self) -> np.ndarray:
        return np.array(self.paths, dtype=object)

    def _make_labels(self) -> np.ndarray:
        return self._raw_labels

    def load(self, index: int) -> np.ndarray:
        rel = self.paths[index]
        try:
            data = (self.root / rel).read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UnreadableImage(rel, f"cannot read file: {reason}") from None
        return decode_image(data, rel)


@DATASETS.register("folder")
def open_folder(body: str, *, data_root: str | None = None, strict: bool = False) -> FolderDataset:
    """``folder:PATH``: ImageFolder layout (classes: sorted sub-folder names) or a flat folder, unlabeled."""
    root = Path(body).expanduser()
    if not root.exists():
        raise ThresherError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise ThresherError(f"folder:{body} needs a folder, but {root} is a file")
    root = root.resolve()
    paths, labels, classes = scan_folder(root)
    ds = FolderDataset(root, paths, labels, classes, spec=f"folder:{body}")
    if (root / CAPTIONS_FILE).is_file():
        ds.captions = read_captions(root / CAPTIONS_FILE, paths)
    return ds


CAPTIONS_FILE = "captions.tsv"


def read_captions(path: Path, ids: list[str]) -> np.ndarray:
    """``id<TAB>caption`` lines -> each id's caption (empty when not listed); a listed id that is not an image of the
    dataset, or a line without a tab, is a one-line error naming the line."""
    known, out = {k: i for i, k in enumerate(ids)}, np.full(len(ids), "", dtype=object)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, tab, text = line.partition("\t")
        if not tab:
            raise ThresherError(f"{path} line {n}: expected 'relative/path<TAB>caption', found no tab")
        if key.strip() not in known:
            raise ThresherError(f"{path} line {n}: {key.strip()!r} is not an image of this folder (ids are paths "
                                "relative to it)")  # fmt: skip
        out[known[key.strip()]] = text.strip()
    return out
