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


# --- Pascal VOC and folders of class masks ----------------------------------------------------------------------
def _voc(root, difficult: str = "0"):
    for d in ("Annotations", "JPEGImages", "SegmentationObject", "ImageSets/Main", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    xml = f"""<annotation><size><width>{W}</width><height>{H}</height><depth>3</depth></size>
      <object><name>dog</name><difficult>0</difficult><bndbox><xmin>3</xmin><ymin>2</ymin><xmax>8</xmax>
      <ymax>10</ymax></bndbox></object>
      <object><name>cat</name><difficult>{difficult}</difficult><bndbox><xmin>11</xmin><ymin>4</ymin><xmax>16</xmax>
      <ymax>9</ymax></bndbox></object></annotation>"""
    (root / "Annotations" / "0001.xml").write_text(xml)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "JPEGImages" / "0001.jpg")
    png = np.zeros((H, W), np.uint8)
    png[1:10, 2:8] = 1  # the dog: rows 1..9, columns 2..7 (VOC's 1-based inclusive box 3..8 x 2..10)
    png[3:9, 10:16] = 2
    png[0, :] = 255  # a boundary
    im = Image.fromarray(png).convert("P")  # VOC's masks are palette images: their indices are the values
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (252 * 3) + [224, 224, 192])
    im.save(root / "SegmentationObject" / "0001.png")
    for s in ("Main", "Segmentation"):
        (root / "ImageSets" / s / "trainval.txt").write_text("0001\n")


def test_voc_reads_boxes_in_its_one_based_convention_and_instance_masks(tmp_path):
    _voc(tmp_path / "voc")
    boxes = open_dataset(f"voc:{tmp_path / 'voc'}")
    t = boxes.dense(0)
    assert t.boxes.tolist() == [[2, 1, 8, 10], [10, 3, 16, 9]] and t.masks is None and not boxes.has_masks
    assert [boxes.categories[k] for k in t.labels] == ["dog", "cat"] and len(boxes.categories) == 20
    seg = open_dataset(f"voc:{tmp_path / 'voc'}:trainval?set=Segmentation")
    s = seg.dense(0)
    assert seg.has_masks and s.masks[0].sum() == 9 * 6 and s.ignore[0].all() and s.semantic()[0, 0] == 255
    _voc(tmp_path / "hard", difficult="1")
    hard = open_dataset(f"voc:{tmp_path / 'hard'}:trainval?set=Segmentation").dense(0)
    assert hard.labels.tolist() == [11] and hard.ignore[5, 12]  # the difficult cat: no object, its pixels ignored


def test_voc_errors_name_the_file(tmp_path):
    _voc(tmp_path / "voc")
    xml = (tmp_path / "voc" / "Annotations" / "0001.xml").read_text().replace("<name>dog</name>", "<name>dgo</name>")
    (tmp_path / "voc" / "Annotations" / "0001.xml").write_text(xml)
    with pytest.raises(ThresherError, match="0001.xml object 1 has the unknown class 'dgo'"):
        open_dataset(f"voc:{tmp_path / 'voc'}")
    with pytest.raises(ThresherError, match="has no Annotations/ folder"):
        open_dataset(f"voc:{tmp_path}")


def test_a_folder_of_class_masks_is_one_region_per_class_and_refuses_detection(tmp_path):
    root = tmp_path / "m"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir()
    (root / "classes.txt").write_text("road\nsky\n")
    mask = np.zeros((H, W), np.uint8)
    mask[:5] = 2
    mask[10:, 3:9] = 1
    mask[5, :] = 255
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "train" / "images" / "a.jpg")
    Image.fromarray(mask).save(root / "train" / "masks" / "a.png")
    ds = open_dataset(f"masks:{root}")
    t = ds.dense(0)
    assert t.labels.tolist() == [0, 1] and t.boxes.tolist() == [[3, 10, 9, 16], [0, 0, 20, 5]]
    assert np.array_equal(t.semantic(), mask) and ds.multilabels.tolist() == [[1, 1]] and not ds.instances
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(root / "train" / "masks" / "a.png")
    with pytest.raises(ThresherError, match="has value 7, beyond the 2 classes"):
        open_dataset(f"masks:{root}").dense(0)
