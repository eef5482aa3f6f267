"""Metrics of dense transfer (issue 20): COCO-style box and mask AP through pycocotools, VOC07's 11-point AP, and
semantic segmentation's mIoU, mean class accuracy and pixel accuracy.

COCO AP is pycocotools' own evaluation (the reference every detection paper reports), with its area ranges scaled to
the images' size (``data.dense.area_ranges``: the same fraction of the image as COCO's 32^2 and 96^2 of a 640 x 480
image), so AP_S / AP_M / AP_L mean the same thing on small images. VOC07 (000's Table 3) is the 11-point interpolated
AP at IoU 0.5, per class, averaged, read off the same pycocotools evaluation (no matcher of our own). Semantic
metrics come from one confusion matrix over every pixel not labelled ``IGNORE`` (255).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from ..data.coco import encode_mask
from ..data.dense import IGNORE, DenseTarget, area_ranges

#: pycocotools' stats, in its order, under the names thresher reports
COCO_STATS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")


def _coco(targets: Sequence[DenseTarget], num_classes: int, masks: bool):
    from pycocotools.coco import COCO

    images, anns = [], []
    for i, t in enumerate(targets):
        images.append({"id": i + 1, "height": t.height, "width": t.width})
        for k in range(len(t.labels)):
            x0, y0, x1, y1 = (float(v) for v in t.boxes[k])
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(t.labels[k]) + 1, "iscrowd": 0,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(t.areas[k])}  # fmt: skip
            if masks:
                ann["segmentation"] = encode_mask(t.masks[k])
            anns.append(ann)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_ap(
    targets: Sequence[DenseTarget],
    predictions: Sequence[dict],
    num_classes: int,
    *,
    iou_type: str = "bbox",
    scale_areas: bool = True,
) -> dict[str, float]:
    """AP, AP50, AP75, AP_S, AP_M, AP_L (as fractions, -1 where a bucket has no object) of ``predictions`` (per image:
    ``boxes`` (n, 4) x0 y0 x1 y1, ``scores``, ``labels``, and ``masks`` (n, H, W) bool for ``iou_type="segm"``)
    against ``targets``, and ``AP50_voc07``: VOC 2007's 11-point AP at IoU 0.5 from the same evaluation (000's Table
    3). ``scale_areas``: the size buckets scaled to the images' mean area (COCO's own otherwise)."""
    ev = _evaluated(targets, predictions, num_classes, iou_type, scale_areas)
    if ev is None:  # nothing detected: every AP is 0 where there are objects
        return {k: 0.0 for k in (*COCO_STATS, "AP50_voc07")}
    return {**{k: float(v) for k, v in zip(COCO_STATS, ev.stats[:6], strict=True)}, "AP50_voc07": _voc07(ev)}


def _evaluated(targets, predictions, num_classes: int, iou_type: str, scale_areas: bool):
    """pycocotools' evaluation, accumulated and summarised (None when there is no detection at all)."""
    from pycocotools.cocoeval import COCOeval

    segm = iou_type == "segm"
    gt = _coco(targets, num_classes, segm)
    dets = []
    for i, p in enumerate(predictions):
        for k in range(len(p["scores"])):
            x0, y0, x1, y1 = (float(v) for v in p["boxes"][k])
            det = {"image_id": i + 1, "category_id": int(p["labels"][k]) + 1, "score": float(p["scores"][k]),
                   "bbox": [x0, y0, x1 - x0, y1 - y0]}  # fmt: skip
            if segm:
                det["segmentation"] = encode_mask(p["masks"][k])
            dets.append(det)
    if not dets:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        if scale_areas:
            r = area_ranges(float(np.mean([t.height for t in targets])), float(np.mean([t.width for t in targets])))
            ev.params.areaRng = [list(r[k]) for k in ("all", "small", "medium", "large")]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _voc07(ev) -> float:
    """VOC07's 11-point AP at IoU 0.5, read off pycocotools' accumulated precision: at each recall threshold r it
    holds the best precision at recall >= r (VOC's interpolation), so VOC07 is its mean at r = 0, 0.1, ..., 1 over
    the classes that have objects (every area, at most 100 detections per image)."""
    p = ev.eval["precision"][0, :, :, 0, -1]  # IoU 0.50, 101 recall thresholds, classes, area all, maxDets 100
    rec = np.round(ev.params.recThrs, 6)
    rows = [int(np.flatnonzero(rec == round(r, 6))[0]) for r in np.linspace(0, 1, 11)]
    per_class = p[rows]  # (11, K); -1 for a class with no object
    present = (per_class > -1).any(0)
    return float(np.clip(per_class[:, present], 0, None).mean()) if present.any() else 0.0


def confusion(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """(K, K) counts of pixels with true class i predicted as j, over every pixel whose truth is not ``IGNORE``."""
    out = np.zeros((num_classes, num_classes), np.int64)
    for p, t in zip(predicted, truth, strict=True):
        keep = t != IGNORE
        out += np.bincount(num_classes * t[keep].astype(np.int64) + p[keep].astype(np.int64),
                           minlength=num_classes**2).reshape(num_classes, num_classes)  # fmt: skip
    return out


def segmentation_metrics(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray], num_classes: int) -> dict:
    """mIoU, mean class accuracy and pixel accuracy (000's segmentation columns) over classes present in the truth
    or the predictions (a class neither has is not averaged in)."""
    cm = confusion(predicted, truth, num_classes).astype(np.float64)
    tp, gt, pred = np.diag(cm), cm.sum(1), cm.sum(0)
    seen = (gt + pred) > 0
    iou = tp[seen] / (gt + pred - tp)[seen]
    has = gt > 0
    return {"mIoU": float(iou.mean()) if len(iou) else 0.0,
            "mean_class_accuracy": float((tp[has] / gt[has]).mean()) if has.any() else 0.0,
            "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1.0))}  # fmt: skip
