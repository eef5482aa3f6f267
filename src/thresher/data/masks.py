"""``masks:ROOT[:SPLIT]`` datasets: a folder of images with PNG class masks, for semantic segmentation (issue 20).

``ROOT/SPLIT/images/NAME.(png|jpg|...)`` and ``ROOT/SPLIT/masks/NAME.png`` (default split ``train``): mask value 0 is
the background, k the k-th line of ``ROOT/classes.txt``, 255 a pixel no metric counts. Each class present in an image
is one region (its pixels and their extent), so the segmentation protocol reads it exactly; the detection protocols
refuse it (a class's pixels are not an object).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ThresherError, UnreadableImage
from .base import decode_image, is_image_name
from .classes import read_classes
from .dense import IGNORE, DenseDataset, DenseTarget
from .spec import DATASETS, split_suffix


class MaskFolder(DenseDataset):
    """Images and their class masks, paired by file stem."""

    instances = False

    def __init__(self, root: Path, split: str, spec: str):
        super().__init__()
        self.spec, self.source = spec, str(root / split)
        images, masks = root / split / "images", root / split / "masks"
        if not images.is_dir() or not masks.is_dir():
            raise ThresherError(f"{spec}: needs {images} and {masks} (images and PNG class masks of the same names)")
        names, _ = read_classes(root)
        if not names:
            raise ThresherError(f"{spec}: {root / 'classes.txt'} is missing; line k names mask value k (0: background)")
        self.categories = self.classes = list(names)
        self.files = sorted(p for p in images.iterdir() if is_image_name(p.name))
        self.mask_files = [masks / f"{p.stem}.png" for p in self.files]
        missing = [m.name for m in self.mask_files if not m.is_file()]
        if missing:
            raise ThresherError(f"{spec}: {len(missing)} images have no mask in {masks} (first: {missing[0]})")
        self._present_cache: list | None = None

    def __len__(self) -> int:
        return len(self.files)

    def _make_ids(self) -> np.ndarray:
        return np.asarray([p.name for p in self.files], dtype=object)

    def load(self, index: int) -> np.ndarray:
        try:
            return decode_image(self.files[index].read_bytes(), self.files[index].name)
        except OSError as exc:
            raise UnreadableImage(self.files[index].name, f"cannot read it: {exc.strerror}") from None

    def _mask(self, index: int) -> np.ndarray:
        m = np.asarray(Image.open(self.mask_files[index]))
        if m.ndim != 2:
            raise ThresherError(f"{self.spec}: {self.mask_files[index]} is not a single-channel class mask")
        bad = (m > len(self.categories)) & (m != IGNORE)
        if bad.any():
            raise ThresherError(f"{self.spec}: {self.mask_files[index]} has value {int(m[bad][0])}, beyond the "
                                f"{len(self.categories)} classes of classes.txt (255: ignored)")  # fmt: skip
        return m

    def object_labels(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._present_cache is None:
            out = []
            for i in range(len(self)):
                m = self._mask(i)
                values, counts = np.unique(m[(m > 0) & (m != IGNORE)], return_counts=True)
                out.append((values.astype(np.int64) - 1, counts.astype(np.float64)))
            self._present_cache = out
        return self._present_cache

    def dense(self, index: int) -> DenseTarget:
        m = self._mask(index)
        values = [v for v in np.unique(m) if 0 < v != IGNORE]
        masks = np.stack([m == v for v in values]) if values else np.zeros((0, *m.shape), bool)
        boxes = []
        for mask in masks:
            ys, xs = np.nonzero(mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        return DenseTarget(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(values, np.int64) - 1, masks,
                           m.shape[0], m.shape[1], m == IGNORE)  # fmt: skip


@DATASETS.register("masks")
def open_masks(body: str, *, data_root: str | None = None, strict: bool = False):
    path, split = split_suffix(body)
    return MaskFolder(Path(path).expanduser(), split or "train", f"masks:{body}")
