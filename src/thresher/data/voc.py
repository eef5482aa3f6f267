"""``voc:ROOT[:SPLIT]`` datasets: Pascal VOC folders (000 transfers to VOC07 detection and VOC12 segmentation).

``ROOT`` holds ``Annotations/ID.xml`` (boxes), ``JPEGImages/ID.jpg`` and ``ImageSets/Main/SPLIT.txt`` (default
split ``trainval``); ``?set=Segmentation`` reads ``ImageSets/Segmentation/SPLIT.txt`` instead, whose images have
``SegmentationObject/ID.png`` instance masks (palette index k is the k-th object of the XML, 255 the boundary). Boxes
are VOC's 1-based inclusive pixel indices, converted to x0, y0, x1, y1. Objects marked ``difficult`` are left out of
the objects, as VOC's evaluation leaves them out, and their pixels are ignored with the boundaries.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ThresherError, UnreadableImage
from .base import decode_image
from .dense import DenseDataset, DenseTarget, check_box
from .spec import DATASETS, split_suffix

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]  # fmt: skip


class VocDataset(DenseDataset):
    """A VOC split: its image ids, their XML objects and (Segmentation sets) instance masks."""

    def __init__(self, root: Path, split: str, image_set: str, spec: str):
        super().__init__()
        self.root, self.spec, self.source = root, spec, str(root)
        listing = root / "ImageSets" / image_set / f"{split}.txt"
        if not listing.is_file():
            raise ThresherError(f"{spec}: {listing} does not exist; give a VOC folder and one of its splits")
        self.image_ids = [ln.split()[0] for ln in listing.read_text().splitlines() if ln.strip()]
        self.categories = list(VOC_CLASSES)
        self.classes = self.categories
        self.objects = [self._read_xml(i) for i in self.image_ids]
        self._with_masks = image_set == "Segmentation"

    def _read_xml(self, image_id: str) -> dict:
        f = self.root / "Annotations" / f"{image_id}.xml"
        try:
            tree = ET.parse(f).getroot()
        except (OSError, ET.ParseError) as exc:
            raise ThresherError(f"{self.spec}: cannot read {f} ({exc})") from None
        size = tree.find("size")
        h, w = int(size.findtext("height")), int(size.findtext("width"))
        objs = []
        for k, o in enumerate(tree.findall("object")):
            name = (o.findtext("name") or "").strip()
            if name not in VOC_CLASSES:
                raise ThresherError(f"{self.spec}: {f} object {k + 1} has the unknown class {name!r} (VOC's 20: "
                                    f"{', '.join(VOC_CLASSES[:4])}, ...)")  # fmt: skip
            b = o.find("bndbox")
            box = (float(b.findtext("xmin")) - 1, float(b.findtext("ymin")) - 1, float(b.findtext("xmax")),
                   float(b.findtext("ymax")))  # fmt: skip
            check_box(box, h, w, f"{self.spec}: {f} object {k + 1}")
            objs.append({"index": k + 1, "label": VOC_CLASSES.index(name), "box": box,
                         "difficult": (o.findtext("difficult") or "0").strip() == "1"})  # fmt: skip
        return {"height": h, "width": w, "objects": objs}

    def __len__(self) -> int:
        return len(self.image_ids)

    def _make_ids(self) -> np.ndarray:
        return np.asarray(self.image_ids, dtype=object)

    def load(self, index: int) -> np.ndarray:
        path = self.root / "JPEGImages" / f"{self.image_ids[index]}.jpg"
        try:
            return decode_image(path.read_bytes(), self.image_ids[index])
        except OSError as exc:
            raise UnreadableImage(self.image_ids[index], f"cannot read {path}: {exc.strerror}") from None

    @property
    def has_masks(self) -> bool:
        return self._with_masks

    def object_labels(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for doc in self.objects:
            kept = [o for o in doc["objects"] if not o["difficult"]]
            areas = [(o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]) for o in kept]
            out.append((np.asarray([o["label"] for o in kept], np.int64), np.asarray(areas, np.float64)))
        return out

    def dense(self, index: int) -> DenseTarget:
        doc = self.objects[index]
        h, w = doc["height"], doc["width"]
        kept = [o for o in doc["objects"] if not o["difficult"]]
        boxes = np.asarray([o["box"] for o in kept], np.float32).reshape(-1, 4)
        labels = np.asarray([o["label"] for o in kept], np.int64)
        if not self._with_masks:
            return DenseTarget(boxes, labels, None, h, w)
        f = self.root / "SegmentationObject" / f"{self.image_ids[index]}.png"
        try:
            png = np.asarray(Image.open(f))
        except OSError:
            raise ThresherError(f"{self.spec}: image {self.image_ids[index]} has no instance mask {f}") from None
        if png.shape != (h, w):
            raise ThresherError(f"{self.spec}: {f} is {png.shape[1]}x{png.shape[0]}, its annotation says {w}x{h}")
        masks = np.stack([png == o["index"] for o in kept]) if kept else np.zeros((0, h, w), bool)
        ignore = png == 255
        for o in doc["objects"]:
            if o["difficult"]:
                ignore |= png == o["index"]
        return DenseTarget(boxes, labels, masks, h, w, ignore)


@DATASETS.register("voc")
def open_voc(body: str, *, data_root: str | None = None, strict: bool = False, set: str = "Main"):  # noqa: A002
    path, split = split_suffix(body)
    root = Path(path).expanduser()
    if not (root / "Annotations").is_dir():
        raise ThresherError(f"voc:{body}: {root} has no Annotations/ folder; give a VOC folder (e.g. VOC2007)")
    if set not in ("Main", "Segmentation"):
        raise ThresherError(f"voc:{body}: ?set= takes Main (boxes) or Segmentation (boxes and masks), got {set!r}")
    return VocDataset(root, split or "trainval", set, f"voc:{body}")
