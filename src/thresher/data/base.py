"""The dataset interface every source of images implements: stable ids, uint8 images, labels (-1 = none)."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ThresherError, UnreadableImage

UNLABELED = -1

#: Lower-case file extensions recognised as images (by folder and by the image member of wds samples).
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", "ppm", "pgm")


def is_image_name(name: str) -> bool:
    """True for a visible file name whose extension is one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    stem, dot, ext = name.rpartition(".")
    return bool(dot and stem) and not name.startswith(".") and ext.lower() in IMAGE_EXTENSIONS


class ImageDataset(ABC):
    """Random-access images with stable string ids and integer labels (``-1`` when unlabeled).

    Subclasses implement ``load(i)`` returning an HxWxC uint8 array (C = 1 or 3); batched loading, resizing to a
    square resolution and grayscale-to-RGB are shared here so every source behaves the same way downstream.
    """

    spec: str = ""
    classes: list[str] | None = None
    source: str | None = None  # where the data was found (file or folder), for reports
    #: (n, classes) 0/1 targets of a multi-label dataset (e.g. chest X-ray findings, 001), else None
    multilabels: np.ndarray | None = None
    #: one caption per example (image-text pools, issue 21), else None: batches carry them to the ``clip`` objective
    captions: np.ndarray | None = None

    def __init__(self) -> None:
        self._ids: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    # --- what a subclass provides -------------------------------------------------------------
    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _make_ids(self) -> np.ndarray:
        """Stable string ids, one per example, unique within the dataset."""

    @abstractmethod
    def _make_labels(self) -> np.ndarray:
        """int64 labels, ``-1`` for unlabeled examples."""

    @abstractmethod
    def load(self, index: int) -> np.ndarray:
        """Decode example ``index`` to an HxWxC uint8 array (C = 1 or 3); raise ``UnreadableImage`` on failure."""

    # --- shared behaviour -----------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        if self._ids is None:
            ids = np.asarray(self._make_ids(), dtype=object)
            if len(ids) != len(self):
                raise ThresherError(f"{self.spec}: {len(ids)} ids for {len(self)} examples")
            self._ids = ids
        return self._ids

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            labels = np.asarray(self._make_labels(), dtype=np.int64)
            if labels.shape != (len(self),):
                raise ThresherError(f"{self.spec}: labels have shape {labels.shape}, expected ({len(self)},)")
            if len(labels) and labels.min() < UNLABELED:
                raise ThresherError(f"{self.spec}: negative label {int(labels.min())} (use -1 for unlabeled)")
            if self.classes is not None and len(labels) and labels.max() >= len(self.classes):
                raise ThresherError(
                    f"{self.spec}: label {int(labels.max())} out of range for {len(self.classes)} classes; labels "
                    f"must be 0..{len(self.classes) - 1} (one per class name, e.g. lines of classes.txt) or -1"
                )
            self._labels = labels
        return self._labels

    @property
    def has_labels(self) -> bool:
        return bool(len(self)) and bool((self.labels >= 0).any())

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        labels = self.labels
        return int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0

    def load_batch(self, indices: Sequence[int], size: int, strict: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        """Load ``indices`` as a uint8 tensor (B, 3, size, size) and a bool mask of the images that decoded.

        Unreadable images are dropped from the tensor (their mask entry is False) unless ``strict``.
        """
        out = []
        ok = np.zeros(len(indices), dtype=bool)
        for k, i in enumerate(indices):
            try:
                img = self.load(int(i))
            except UnreadableImage:
                if strict:
                    raise
                continue
            out.append(to_square(img_to_chw(img), size))
            ok[k] = True
        if not out:
            return torch.empty((0, 3, size, size), dtype=torch.uint8), ok
        return torch.stack(out), ok

    def batch_targets(self, indices: np.ndarray, size: int) -> dict[str, list] | None:
        """What a training batch of ``indices`` (loaded at ``size``) carries besides labels, one list entry per image:
        the one mechanism by which dense targets (boxes, classes, masks) and captions reach an objective. None:
        labels only."""
        captions = self.captions_of(indices)
        return None if captions is None else {"captions": captions}

    def captions_of(self, indices: np.ndarray) -> list[str] | None:
        """The captions of ``indices`` (None when the dataset has none)."""
        captions = self.captions
        return None if captions is None else [str(captions[int(i)]) for i in indices]

    def source_files(self) -> list[Path]:
        """The files (or folders) this dataset reads: their identity is part of every run's fingerprint."""
        return [Path(self.source)] if self.source else []

    def describe(self) -> dict:
        return {"spec": self.spec, "size": len(self), "classes": self.num_classes, "labeled": self.has_labels}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, n={len(self)})"


# --- image helpers shared by all sources ----------------------------------------------------------


def decode_image(data: bytes, example_id: str) -> np.ndarray:
    """Decode encoded image bytes fully (truncated files fail here, not later) to HxWxC uint8, C in {1, 3}."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UnreadableImage(example_id, "zero-byte file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return pil_to_array(im)
    except UnidentifiedImageError:  # PIL's message names its in-memory buffer, not the file
        raise UnreadableImage(example_id, "not an image in a known format (corrupt or not an image file)") from None
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(example_id, str(exc) or type(exc).__name__) from None


def pil_to_array(im) -> np.ndarray:
    """PIL image -> writable HxWxC uint8 with C = 1 (grayscale modes) or 3 (others, alpha dropped).

    16-bit and 32-bit grayscale are scaled to 8 bits (not clipped), so a 16-bit scan keeps its contrast.
    """
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        wide = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or wide.max() > 255 else 255.0
        arr = np.clip(np.round(wide * (255.0 / top)), 0, 255).astype(np.uint8)[:, :, None]
    elif im.mode in ("L", "1", "LA", "La"):
        arr = np.array(im.convert("L"), dtype=np.uint8)[:, :, None]
    else:
        arr = np.array(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def img_to_chw(img: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC uint8 array -> 3xHxW uint8 tensor (grayscale repeated to three channels)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ThresherError(f"expected an HxWxC image with C in 1, 3 or 4, got shape {tuple(img.shape)}")
    if img.dtype != np.uint8:
        raise ThresherError(f"expected uint8 images, got {img.dtype}")
    t = torch.from_numpy(np.array(img[:, :, :3], copy=True)).permute(2, 0, 1)  # own, writable memory
    return t.expand(3, -1, -1).contiguous() if t.shape[0] == 1 else t


def square_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """How ``to_square`` maps an h x w image onto size x size: (resized height, resized width, top, left) of the crop
    (a dense target's boxes and masks follow its image through this)."""
    if min(h, w) != size:
        scale = size / min(h, w)
        h, w = max(size, round(h * scale)), max(size, round(w * scale))
    return h, w, (h - size) // 2, (w - size) // 2


def to_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bilinear, antialiased) and center-crop: uint8 (.., C, H, W) in and out."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    batched = x.dim() == 4
    xb = x if batched else x.unsqueeze(0)
    nh, nw, top, left = square_geometry(h, w, size)
    if (nh, nw) != (h, w):
        xb = F.interpolate(xb.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        xb = xb.round_().clamp_(0, 255).to(torch.uint8)
    xb = xb[..., top : top + size, left : left + size].contiguous()
    return xb if batched else xb[0]


@dataclass
class BadImageLog:
    """Counts images skipped because they could not be read; reports the first few ids."""

    keep: int = 5
    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, ids: Sequence[str]) -> None:
        self.count += len(ids)
        for i in ids:
            if len(self.first) < self.keep:
                self.first.append(str(i))

    def summary(self) -> str | None:
        if not self.count:
            return None
        return (
            f"skipped {self.count} unreadable image(s) (first: {', '.join(self.first)}); "
            "fix or remove them, or pass --strict to stop at the first one"
        )
