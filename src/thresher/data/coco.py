"""``coco:ANNOTATIONS.json`` (or ``coco:FOLDER[:SPLIT]``, reading ``FOLDER/SPLIT.json``) datasets: images with
boxes and instance masks in the COCO format (issue 20).

``file_name`` of each image is read relative to ``?images=DIR`` when given, else to the annotation file's folder
(``thresher data make-dense`` writes ``SPLIT.json`` beside ``SPLIT/``; COCO's own layout works with
``?images=train2017``). Segmentations are polygons or RLE, decoded by pycocotools; crowd annotations are kept out of
the objects (COCO's evaluation ignores them too). Categories are indexed in the order of their ids; every box must lie
inside its image and every category id must be declared: a bad annotation is a one-line error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ThresherError, UnreadableImage
from .base import decode_image
from .dense import DenseDataset, DenseTarget, check_box
from .spec import DATASETS, split_suffix


class CocoDataset(DenseDataset):
    """A COCO annotation file and its images."""

    def __init__(self, annotation_file: Path, image_root: Path, spec: str):
        super().__init__()
        self.spec, self.source, self.image_root = spec, str(annotation_file), image_root
        try:
            doc = json.loads(annotation_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ThresherError(f"{spec}: cannot read {annotation_file} as COCO JSON ({exc})") from None
        if not isinstance(doc, dict) or not {"images", "annotations", "categories"} <= set(doc):
            raise ThresherError(f"{spec}: {annotation_file} is not a COCO annotation file (needs images, annotations, "
                                "categories)")  # fmt: skip
        cats = sorted(doc["categories"], key=lambda c: c["id"])
        self.category_ids = [int(c["id"]) for c in cats]
        self.categories = [str(c["name"]) for c in cats]
        self.classes = self.categories
        index = {cid: k for k, cid in enumerate(self.category_ids)}
        self.images = sorted(doc["images"], key=lambda im: im["id"])
        position = {int(im["id"]): k for k, im in enumerate(self.images)}
        self.objects: list[list[dict]] = [[] for _ in self.images]
        self._with_masks = True
        for ann in doc["annotations"]:
            where = f"{spec}: annotation {ann.get('id')} (image {ann.get('image_id')})"
            k = position.get(int(ann.get("image_id", -1)))
            if k is None:
                raise ThresherError(f"{where}: its image_id is not among the file's images")
            if int(ann.get("category_id", -1)) not in index:
                more = " ..." if len(self.category_ids) > 10 else ""
                raise ThresherError(f"{where}: unknown category_id {ann.get('category_id')} (declared: "
                                    f"{self.category_ids[:10]}{more})")  # fmt: skip
            if ann.get("iscrowd", 0):
                continue
            im = self.images[k]
            x, y, w, h = (float(v) for v in ann["bbox"])
            check_box((x, y, x + w, y + h), int(im["height"]), int(im["width"]), where)
            if not ann.get("segmentation"):
                self._with_masks = False
            self.objects[k].append({**ann, "label": index[int(ann["category_id"])]})

    def __len__(self) -> int:
        return len(self.images)

    def _make_ids(self) -> np.ndarray:
        return np.asarray([str(im["file_name"]) for im in self.images], dtype=object)

    def load(self, index: int) -> np.ndarray:
        im = self.images[index]
        path = self.image_root / im["file_name"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnreadableImage(str(im["file_name"]), f"cannot read {path}: {exc.strerror}") from None
        img = decode_image(data, str(im["file_name"]))
        if img.shape[:2] != (int(im["height"]), int(im["width"])):
            raise UnreadableImage(str(im["file_name"]), f"is {img.shape[1]}x{img.shape[0]}, the annotation file says "
                                  f"{im['width']}x{im['height']}")  # fmt: skip
        return img

    @property
    def has_masks(self) -> bool:
        return self._with_masks

    def object_labels(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.asarray([o["label"] for o in objs], np.int64),
                 np.asarray([float(o.get("area") or o["bbox"][2] * o["bbox"][3]) for o in objs]))
                for objs in self.objects]  # fmt: skip

    def dense(self, index: int) -> DenseTarget:
        im, objs = self.images[index], self.objects[index]
        h, w = int(im["height"]), int(im["width"])
        boxes = np.asarray([[o["bbox"][0], o["bbox"][1], o["bbox"][0] + o["bbox"][2], o["bbox"][1] + o["bbox"][3]]
                            for o in objs], np.float32).reshape(-1, 4)  # fmt: skip
        masks = None
        if self._with_masks:
            masks = np.zeros((len(objs), h, w), bool)
            for k, o in enumerate(objs):
                masks[k] = decode_segmentation(o["segmentation"], h, w)
        return DenseTarget(np.clip(boxes, 0, [w, h, w, h]).astype(np.float32),
                           np.asarray([o["label"] for o in objs], np.int64), masks, h, w)  # fmt: skip


def decode_segmentation(seg, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or compressed RLE) as an (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        counts = seg["counts"]
        rle = {"size": seg["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def encode_mask(mask: np.ndarray) -> dict:
    """An (H, W) bool mask as COCO's compressed RLE (JSON-ready: counts as text)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


@DATASETS.register("coco")
def open_coco(body: str, *, data_root: str | None = None, strict: bool = False, images: str | None = None):
    path, split = split_suffix(body)
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / f"{split or 'train'}.json"
    elif split:
        raise ThresherError(f"coco:{body}: a split (:{split}) goes with a folder of SPLIT.json files, not a file")
    if not p.is_file():
        raise ThresherError(f"coco:{body}: {p} does not exist; give a COCO annotation file or a folder of SPLIT.json")
    root = Path(images).expanduser() if images else p.parent
    if not root.is_dir():
        raise ThresherError(f"coco:{body}: the image folder {root} does not exist (give ?images=DIR)")
    return CocoDataset(p, root, f"coco:{body}")
