"""Dense metrics (issue 20): COCO AP equals pycocotools' own evaluation of the same hand-built predictions, VOC07 AP
and the segmentation metrics equal slow, obvious versions on cases whose answer is known."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from thresher.data.coco import encode_mask
from thresher.data.dense import IGNORE, DenseTarget, area_ranges
from thresher.evaluate.dense_metrics import COCO_STATS, coco_ap, segmentation_metrics


def _target(boxes, labels, h=48, w=64) -> DenseTarget:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    masks = np.zeros((len(boxes), h, w), bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[k, y0:y1, x0:x1] = True
    return DenseTarget(boxes, np.asarray(labels, np.int64), masks, h, w)


def _pred(boxes, scores, labels, h=48, w=64) -> dict:
    t = _target(boxes, labels, h, w)
    return {"boxes": t.boxes, "scores": np.asarray(scores, np.float32), "labels": t.labels, "masks": t.masks}


TARGETS = [_target([[2, 2, 12, 10], [30, 20, 60, 44]], [0, 1]), _target([[5, 5, 9, 9], [40, 4, 52, 16]], [1, 1])]
PREDS = [
    _pred([[2, 3, 12, 10], [31, 20, 58, 44], [0, 30, 20, 47]], [0.9, 0.8, 0.7], [0, 1, 0]),
    _pred([[5, 5, 10, 9], [38, 4, 52, 17], [41, 5, 53, 15]], [0.95, 0.6, 0.5], [1, 1, 1]),
]


def _reference(iou_type: str, area_rng=None) -> list[float]:
    """pycocotools run the documented way: ground truth and detections as COCO JSON files."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i + 1, "height": t.height, "width": t.width} for i, t in enumerate(TARGETS)]
    anns, dets = [], []
    for i, t in enumerate(TARGETS):
        for b, lab, m in zip(t.boxes, t.labels, t.masks, strict=True):
            x0, y0, x1, y1 = map(float, b)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(lab) + 1,
                    "iscrowd": 0,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float(m.sum()),
                    "segmentation": encode_mask(m),
                }
            )
    for i, p in enumerate(PREDS):
        for b, s, lab, m in zip(p["boxes"], p["scores"], p["labels"], p["masks"], strict=True):
            x0, y0, x1, y1 = map(float, b)
            dets.append(
                {
                    "image_id": i + 1,
                    "category_id": int(lab) + 1,
                    "score": float(s),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": encode_mask(m),
                }
            )
    gt = COCO()
    gt.dataset = json.loads(
        json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
        )
    )
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(json.loads(json.dumps(dets))), iou_type)
        if area_rng:
            ev.params.areaRng = area_rng
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats[:6])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_ap_equals_pycocotools_with_coco_areas_and_with_scaled_ones(iou_type):
    ours = coco_ap(TARGETS, PREDS, 2, iou_type=iou_type, scale_areas=False)
    assert [ours[k] for k in COCO_STATS] == pytest.approx(_reference(iou_type))
    r = area_ranges(48, 64)
    scaled = coco_ap(TARGETS, PREDS, 2, iou_type=iou_type)
    assert [scaled[k] for k in COCO_STATS] == pytest.approx(
        _reference(iou_type, [list(r[k]) for k in ("all", "small", "medium", "large")])
    )
    assert 0 < ours["AP"] < 1 and scaled["AP_S"] != ours["AP_S"]  # at 48 x 64 every object is "small" for COCO


def test_perfect_detections_score_one_and_no_detection_zero():
    perfect = [_pred(t.boxes, np.ones(len(t.labels)), t.labels) for t in TARGETS]
    assert coco_ap(TARGETS, perfect, 2)["AP"] == pytest.approx(1.0)
    assert coco_ap(TARGETS, perfect, 2)["AP50_voc07"] == pytest.approx(1.0)
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)} for _ in TARGETS]
    assert coco_ap(TARGETS, empty, 2)["AP"] == 0.0 and coco_ap(TARGETS, empty, 2)["AP50_voc07"] == 0.0


def test_voc07_eleven_point_ap_by_hand():
    """VOC07's AP read off pycocotools' evaluation equals VOC's 11-point rule worked by hand. Class 1 has 3 objects.
    Ranked detections: TP, FP, TP, (duplicate of the first: FP). Precision at recall 1/3 is 1, at 2/3 it is 2/3;
    recall 1 is never reached. 11-point: r in {0, .1, .2, .3}: 1; {.4, .5, .6}: 2/3; the rest 0."""
    targets = [_target([[0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]], [1, 1, 1])]
    preds = [_pred([[0, 0, 10, 10], [0, 30, 10, 40], [20, 20, 30, 31], [1, 0, 10, 10]], [0.9, 0.8, 0.7, 0.6],
                   [1, 1, 1, 1])]  # fmt: skip
    expected = (4 * 1.0 + 3 * 2 / 3) / 11
    assert coco_ap(targets, preds, 2)["AP50_voc07"] == pytest.approx(expected)  # class 0: no object, not averaged


def test_segmentation_metrics_equal_a_slow_pixel_loop():
    rng = np.random.default_rng(0)
    k = 4
    truth = [rng.integers(0, k, (9, 11)).astype(np.uint8) for _ in range(3)]
    truth[0][0, :5] = IGNORE
    pred = [np.where(rng.random(t.shape) < 0.6, t, rng.integers(0, k, t.shape)).astype(np.uint8) for t in truth]
    pred[0][0, :5] = 3  # predictions on ignored pixels count for nothing
    inter, union, correct, total, per_class = np.zeros(k), np.zeros(k), 0, 0, np.zeros((k, 2))
    for t, p in zip(truth, pred, strict=True):
        for y in range(t.shape[0]):
            for x in range(t.shape[1]):
                if t[y, x] == IGNORE:
                    continue
                total += 1
                correct += int(t[y, x] == p[y, x])
                per_class[t[y, x]] += [int(t[y, x] == p[y, x]), 1]
                for c in range(k):
                    inter[c] += int(t[y, x] == c and p[y, x] == c)
                    union[c] += int(t[y, x] == c or p[y, x] == c)
    got = segmentation_metrics(pred, truth, k)
    assert got["mIoU"] == pytest.approx(np.mean(inter / union))
    assert got["pixel_accuracy"] == pytest.approx(correct / total)
    assert got["mean_class_accuracy"] == pytest.approx(np.mean(per_class[:, 0] / per_class[:, 1]))
