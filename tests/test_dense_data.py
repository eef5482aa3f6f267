"""Dense datasets (issue 20): the COCO reader on a hand-written file with known boxes and masks, its errors on bad
annotations, and ``make-dense`` (deterministic, every size bucket filled, backgrounds never the pool's train split)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from thresher.data.coco import encode_mask
from thresher.data.dense import area_ranges
from thresher.data.spec import open_dataset
from thresher.errors import ThresherError, UnreadableImage

H, W = 16, 20


def _write(root, annotations, categories=None, images=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "imgs").mkdir(exist_ok=True)
    images = images or [{"id": 10, "file_name": "imgs/a.png", "height": H, "width": W},
                        {"id": 11, "file_name": "imgs/b.png", "height": H, "width": W}]  # fmt: skip
    for k, im in enumerate(images):
        Image.fromarray(np.full((im["height"], im["width"], 3), 40 * k, np.uint8)).save(root / im["file_name"])
    doc = {"images": images, "annotations": annotations,
           "categories": categories or [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}  # fmt: skip
    (root / "ann.json").write_text(json.dumps(doc))
    return f"coco:{root / 'ann.json'}"


def _mask(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_coco_reads_boxes_categories_and_masks_of_every_segmentation_kind(tmp_path):
    rle = encode_mask(_mask(10, 2, 14, 12))  # compressed RLE
    plain = {"size": [H, W], "counts": [2 * H + 1, 3, H - 3, 3, H - 3, 3, W * H - (2 * H + 1) - 3 * H]}  # column-major
    anns = [
        {"id": 1, "image_id": 10, "category_id": 3, "bbox": [2, 3, 4, 5], "area": 20, "iscrowd": 0,
         "segmentation": [[2, 3, 6, 3, 6, 8, 2, 8]]},  # a polygon: the 4 x 5 box itself
        {"id": 2, "image_id": 10, "category_id": 7, "bbox": [10, 2, 4, 10], "area": 40, "iscrowd": 0,
         "segmentation": rle},
        {"id": 3, "image_id": 11, "category_id": 7, "bbox": [2, 1, 3, 3], "area": 9, "iscrowd": 0,
         "segmentation": plain},
        {"id": 4, "image_id": 11, "category_id": 3, "bbox": [0, 0, 20, 16], "area": 320, "iscrowd": 1,
         "segmentation": rle},  # crowd: not an object
    ]  # fmt: skip
    ds = open_dataset(_write(tmp_path / "c", anns))
    assert len(ds) == 2 and ds.categories == ["cat", "dog"] and ds.has_masks  # categories in the order of their ids
    assert list(ds.ids) == ["imgs/a.png", "imgs/b.png"] and ds.load(1).shape == (H, W, 3)
    t = ds.dense(0)
    assert t.boxes.tolist() == [[2, 3, 6, 8], [10, 2, 14, 12]] and t.labels.tolist() == [0, 1]
    assert np.array_equal(t.masks[1], _mask(10, 2, 14, 12))
    assert t.masks[0].sum() == pytest.approx(20, abs=6)  # a polygon's rasterisation: the box, give or take its edge
    b = ds.dense(1)
    assert b.labels.tolist() == [1] and np.array_equal(b.masks[0], _mask(2, 1, 5, 4))
    assert ds.multilabels.tolist() == [[1, 1], [0, 1]] and ds.labels.tolist() == [1, 1]  # largest object: the dog
    sem = t.semantic()
    assert sem[5, 11] == 2 and sem[0, 0] == 0 and set(np.unique(sem)) <= {0, 1, 2}


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"bbox": [15, 2, 10, 4]}, "lies outside its 20x16 image"),
        ({"bbox": [2, 2, 0, 4]}, "has no area"),
        ({"category_id": 5}, "unknown category_id 5"),
        ({"image_id": 99}, "image_id is not among the file's images"),
    ],
)
def test_bad_annotations_are_one_line_errors_naming_them(tmp_path, bad, match):
    ann = {"id": 42, "image_id": 10, "category_id": 3, "bbox": [2, 3, 4, 5], "iscrowd": 0, **bad}
    with pytest.raises(ThresherError, match=match) as exc:
        open_dataset(_write(tmp_path / "c", [ann]))
    assert "annotation 42" in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_image_file_is_an_unreadable_image(tmp_path):
    spec = _write(tmp_path / "c", [])
    (tmp_path / "c" / "imgs" / "b.png").unlink()
    with pytest.raises(UnreadableImage, match="cannot read"):
        open_dataset(spec).load(1)
    with pytest.raises(ThresherError, match="is not a COCO annotation file"):
        (tmp_path / "x.json").write_text("{}")
        open_dataset(f"coco:{tmp_path / 'x.json'}")


@pytest.mark.realdata
def test_make_dense_is_deterministic_and_fills_every_size_bucket(tmp_path, shared_data_dir):
    from thresher.data.make_dense import MakeDenseConfig, make_dense

    cfg = MakeDenseConfig(train=60, test=20, size=64)
    a = make_dense(cfg, tmp_path / "a", log=lambda *_: None)
    make_dense(cfg, tmp_path / "b", log=lambda *_: None)
    assert (tmp_path / "a" / "train.json").read_bytes() == (tmp_path / "b" / "train.json").read_bytes()
    image = "test/000003.png"
    assert (tmp_path / "a" / image).read_bytes() == (tmp_path / "b" / image).read_bytes()
    ds = open_dataset(f"coco:{tmp_path / 'a'}:train")
    assert len(ds) == 60 and len(ds.categories) == 10 and a["train"]["objects"] >= 60
    areas = np.concatenate([x[1] for x in ds.object_labels()])
    for name, (lo, hi) in area_ranges(64, 64).items():
        assert ((areas >= lo) & (areas < hi)).sum() >= 5, name
    t = ds.dense(5)
    for box, mask in zip(t.boxes, t.masks, strict=True):  # each box is its visible mask's tight box
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    with pytest.raises(ThresherError, match="must not be the pool's training split"):
        make_dense(MakeDenseConfig(backgrounds="builtin:tiny-imagenet-32:train"), tmp_path / "c")
