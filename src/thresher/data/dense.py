"""Dense targets (issue 20): per image, the objects' boxes, categories and masks, for detection, instance and semantic
segmentation as evaluation protocols.

A dense dataset is an ``ImageDataset`` whose ``dense(i)`` gives image i's ``DenseTarget`` in its own pixel coordinates.
Its ``multilabels`` are the categories present in each image (so a scorer can treat it as a multi-label target) and
its ``labels`` the category of each image's largest object (-1 with none), the single-label view of the same data.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ThresherError
from .base import UNLABELED, ImageDataset, square_geometry

#: the semantic-segmentation label of pixels no metric counts (VOC's boundary value)
IGNORE = 255
#: COCO's object-size buckets: small below 32^2 pixels of area, large above 96^2, for its images of about 640 x 480
COCO_AREAS = (32.0**2, 96.0**2)
COCO_IMAGE_AREA = 640.0 * 480.0


def area_ranges(height: float, width: float) -> dict[str, tuple[float, float]]:
    """COCO's small / medium / large area ranges scaled to an image of ``height`` x ``width``: the same fraction of
    the image's area (at 96 x 96, small is below 31 pixels and large above 276), so small objects of small images
    count as small. The metrics and ``make-dense`` read them here."""
    f = height * width / COCO_IMAGE_AREA
    small, large = COCO_AREAS[0] * f, COCO_AREAS[1] * f
    return {"all": (0.0, 1e10), "small": (0.0, small), "medium": (small, large), "large": (large, 1e10)}


@dataclass(frozen=True)
class DenseTarget:
    """One image's objects: ``boxes`` (n, 4) float32 x0, y0, x1, y1 in pixels, ``labels`` (n,) int64 category
    indices, ``masks`` (n, H, W) bool instance masks or None (boxes only), ``height`` x ``width`` the image size, and
    ``ignore`` (H, W) bool: pixels no segmentation metric or loss counts (VOC's object boundaries), or None."""

    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    height: int
    width: int
    ignore: np.ndarray | None = None

    def semantic(self) -> np.ndarray:
        """The (H, W) uint8 class map (``semantic_maps``), ``IGNORE`` on ignored pixels."""
        if self.masks is None:
            raise ThresherError("semantic segmentation needs masks; this dataset has boxes only")
        ignore = [torch.from_numpy(self.ignore)] if self.ignore is not None else None
        maps = semantic_maps([torch.from_numpy(self.masks)], [torch.from_numpy(self.labels)], self.height, self.width,
                             ignore)  # fmt: skip
        return maps[0].numpy().astype(np.uint8)

    @property
    def areas(self) -> np.ndarray:
        """Each object's area in pixels: its mask's, else its box's."""
        if self.masks is not None:
            return self.masks.reshape(len(self.masks), -1).sum(1).astype(np.float64)
        b = self.boxes.astype(np.float64)
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def semantic_maps(
    masks: list[torch.Tensor],
    classes: list[torch.Tensor],
    height: int,
    width: int,
    ignore: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Instance masks as (B, H, W) int64 class maps: 0 background, category k as k + 1, later objects drawn over
    earlier ones, ``IGNORE`` where ``ignore`` is set (the segmentation protocol's target, ``DenseTarget.semantic``)."""
    device = masks[0].device if masks else torch.device("cpu")
    out = torch.zeros((len(masks), height, width), dtype=torch.int64, device=device)
    for i, (m, c) in enumerate(zip(masks, classes, strict=True)):
        for k in range(len(c)):
            out[i][m[k]] = int(c[k]) + 1
        if ignore is not None:
            out[i][ignore[i]] = IGNORE
    return out


def check_box(box: tuple[float, float, float, float], height: int, width: int, where: str) -> None:
    """A box inside its image with positive width and height, or a one-line error naming the annotation."""
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise ThresherError(f"{where}: box {list(box)} has no area; COCO boxes are [x, y, width, height], both > 0")
    tol = 1.0  # annotation tools round to the pixel
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        raise ThresherError(f"{where}: box [x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}] lies outside its "
                            f"{width}x{height} image; fix or drop the annotation")  # fmt: skip


class DenseDataset(ImageDataset):
    """Images with dense targets; subclasses give ``categories``, the per-image object lists and ``dense(i)``."""

    categories: list[str]
    #: each target is one object (boxes and masks of instances); False: regions of a class (semantic masks only)
    instances: bool = True

    @abstractmethod
    def object_labels(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image, its objects' category indices and areas, without decoding any mask."""

    @abstractmethod
    def dense(self, index: int) -> DenseTarget:
        """Image ``index``'s objects (boxes, categories, masks when the dataset has them)."""

    @property
    def has_masks(self) -> bool:
        return True

    def _present(self) -> tuple[np.ndarray, np.ndarray]:
        cats, largest = np.zeros((len(self), len(self.categories)), np.int64), np.full(len(self), UNLABELED)
        for i, (labels, areas) in enumerate(self.object_labels()):
            cats[i, labels] = 1
            if len(labels):
                largest[i] = labels[int(np.argmax(areas))]
        return cats, largest

    @property
    def multilabels(self) -> np.ndarray:  # type: ignore[override]
        if getattr(self, "_multilabels", None) is None:
            self._multilabels, self._largest = self._present()
        return self._multilabels

    def _make_labels(self) -> np.ndarray:
        _ = self.multilabels
        return self._largest

    def batch_targets(self, indices: np.ndarray, size: int) -> dict[str, list]:
        """Per image, at ``size`` (``to_square``'s geometry): ``boxes`` (n, 4) float32, ``classes`` (n,) int64 and,
        with masks, ``masks`` (n, size, size) bool; objects the crop cuts away entirely are dropped."""
        out: dict[str, list] = {"boxes": [], "classes": []}
        if self.has_masks:
            out["masks"], out["ignore"] = [], []
        for i in indices:
            t = square_target(self.dense(int(i)), size)
            out["boxes"].append(torch.from_numpy(t.boxes))
            out["classes"].append(torch.from_numpy(t.labels))
            if self.has_masks:
                out["masks"].append(torch.from_numpy(t.masks))
                ignore = t.ignore if t.ignore is not None else np.zeros((size, size), bool)
                out["ignore"].append(torch.from_numpy(ignore))
        return out


def square_target(t: DenseTarget, size: int) -> DenseTarget:
    """``t`` as its image is after ``to_square(size)``: boxes scaled and shifted into the crop (clipped), masks
    resized (nearest, pixel centres aligned as in the image's resize) and cropped; objects with nothing left inside
    the crop are dropped."""
    nh, nw, top, left = square_geometry(t.height, t.width, size)
    sx, sy = nw / t.width, nh / t.height
    boxes = t.boxes.astype(np.float32) * np.float32([sx, sy, sx, sy]) - np.float32([left, top, left, top])
    boxes = np.clip(boxes, 0, size)
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)

    def resized(m: np.ndarray) -> np.ndarray:  # (n, H, W) bool -> (n, size, size)
        x = torch.from_numpy(m).float()[:, None]
        if (nh, nw) != (t.height, t.width):
            x = F.interpolate(x, size=(nh, nw), mode="nearest-exact") if len(x) else x.new_zeros((0, 1, nh, nw))
        return x[:, 0, top : top + size, left : left + size].bool().numpy()

    masks = resized(t.masks[keep]) if t.masks is not None else None
    ignore = resized(t.ignore[None])[0] if t.ignore is not None else None
    return DenseTarget(boxes[keep], t.labels[keep], masks, size, size, ignore)
