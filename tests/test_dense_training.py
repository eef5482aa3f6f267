"""Dense targets through the one training loop (issue 20): boxes and masks follow their images through the square
crop and the flip, and the segmentation and detection objectives train on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from thresher.config import build_config
from thresher.data.base import to_square
from thresher.data.coco import encode_mask
from thresher.data.dense import DenseTarget, square_target
from thresher.data.spec import open_dataset
from thresher.data.transforms import build_transform
from thresher.errors import ThresherError
from thresher.pretrain.run import pretrain
from thresher.train.config import TrainConfig

COLOURS = np.array([[220, 40, 40], [40, 200, 60]])


def squares(root, n: int = 24, h: int = 24, w: int = 32, seed: int = 0, split: str = "train") -> str:
    """``n`` grey-noise images with one or two flat-coloured rectangles each (category = colour), in COCO format."""
    rng = np.random.default_rng(seed)
    (root / "im").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img = rng.integers(90, 140, (h, w, 3)).astype(np.uint8)
        for _ in range(int(rng.integers(1, 3))):
            c = int(rng.integers(2))
            bw, bh = int(rng.integers(6, 14)), int(rng.integers(6, 12))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            img[y : y + bh, x : x + bw] = COLOURS[c]
            m = np.zeros((h, w), bool)
            m[y : y + bh, x : x + bw] = True
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": 0, "segmentation": encode_mask(m)})  # fmt: skip
        Image.fromarray(img).save(root / "im" / f"{split}{i}.png")
        images.append({"id": i + 1, "file_name": f"im/{split}{i}.png", "height": h, "width": w})
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]}
    (root / f"{split}.json").write_text(json.dumps(doc))
    return f"coco:{root}:{split}"


def test_square_targets_follow_to_square_pixel_for_pixel():
    """A mask painted into the image, sent through to_square, is where square_target puts the mask and its box."""
    h, w, size = 24, 40, 16
    mask = np.zeros((h, w), bool)
    mask[5:15, 20:30] = True
    t = DenseTarget(np.float32([[20, 5, 30, 15]]), np.int64([1]), mask[None], h, w)
    img = torch.from_numpy(np.where(mask, 255, 0).astype(np.uint8))[None].expand(3, -1, -1)
    painted = to_square(img, size)[0].numpy() > 127
    s = square_target(t, size)
    assert (s.masks[0] == painted).mean() > 0.97  # nearest vs antialiased bilinear differ on the edge only
    ys, xs = np.nonzero(painted)
    assert s.boxes[0].tolist() == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=1.0)
    cut = square_target(DenseTarget(np.float32([[0, 0, 3, 3]]), np.int64([0]), None, h, w), size)
    assert len(cut.boxes) == 0  # an object the centre crop cuts away is dropped


def test_the_dense_transform_flips_boxes_and_masks_with_the_pixels():
    x = torch.zeros(2, 3, 8, 10, dtype=torch.uint8)
    x[:, :, 2:5, 1:4] = 255
    mask = torch.zeros(8, 10, dtype=torch.bool)
    mask[2:5, 1:4] = True
    targets = {
        "boxes": [torch.tensor([[1.0, 2, 4, 5]])] * 2,
        "masks": [mask[None]] * 2,
        "classes": [torch.tensor([0])] * 2,
    }
    tf = build_transform("dense", 8, flip_p=1.0)
    images, out = tf.with_targets(x, torch.Generator().manual_seed(0), targets)
    assert out["boxes"][0].tolist() == [[6.0, 2.0, 9.0, 5.0]]  # x' = W - x, sides swapped
    bright = images[0, 0] > 0
    assert torch.equal(out["masks"][0][0], bright) and torch.equal(out["classes"][1], targets["classes"][1])
    for p in (0.0, 1.0):  # the batched path is torchvision's per-image pipeline with the same settings
        dense = build_transform("dense", 8, flip_p=p)
        assert torch.allclose(dense(x, torch.Generator().manual_seed(0))[0], dense.reference()(x[0]), atol=1e-6)
    with pytest.raises(ThresherError, match="does not move boxes or masks"):
        build_transform("train", 8).with_targets(x, torch.Generator(), targets)


def test_a_decoded_copy_of_a_dense_dataset_keeps_its_targets(tmp_path):
    from thresher.data.decoded import DecodedDataset

    ds = open_dataset(squares(tmp_path / "d", n=6))
    idx = np.array([4, 1, 5])
    images, _ = ds.load_batch(idx, 16)
    dec = DecodedDataset(images.permute(0, 2, 3, 1).numpy(), ds, idx, 16)
    a, b = dec.batch_targets(np.array([0, 2]), 16), ds.batch_targets(idx[[0, 2]], 16)
    assert all(torch.equal(u, v) for key in a for u, v in zip(a[key], b[key], strict=True))


@pytest.mark.parametrize(("objective", "params"), [("segmentation", {}), ("detection", {}),
                                                   ("detection", {"masks": True})])  # fmt: skip
def test_dense_objectives_train_through_the_loop(tmp_path, objective, params):
    spec = squares(tmp_path / "d", n=12)
    cfg = build_config(TrainConfig, values={
        "data": {"spec": spec}, "backbone": "small-cnn", "objective": objective, "objective_params": params,
        "resolution": 32, "epochs": 3, "batch_size": 6, "optim": {"lr": 0.02}, "seed": 0,
        "runtime": {"progress": False}})  # fmt: skip
    summary = pretrain(cfg, tmp_path / "run", log=lambda *_: None)
    losses = summary["epoch_loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_a_dense_objective_on_a_classification_dataset_says_what_is_missing(tmp_path):
    from test_score_pipeline import pool

    src = pool(tmp_path / "p.npz")
    cfg = build_config(TrainConfig, values={"data": {"spec": f"npz:{src}"}, "objective": "segmentation",
                                            "resolution": 12, "epochs": 1, "batch_size": 8,
                                            "runtime": {"progress": False}})  # fmt: skip
    with pytest.raises((ThresherError, ValueError, KeyError), match="masks|classes"):
        pretrain(cfg, tmp_path / "run", log=lambda *_: None)


@pytest.mark.parametrize("protocol", ["detection", "instance-segmentation", "segmentation"])
def test_dense_protocols_evaluate_end_to_end_and_resume_seed_by_seed(tmp_path, protocol):
    from thresher.evaluate.config import EvalConfig
    from thresher.evaluate.run import evaluate

    train, test = squares(tmp_path / "d", n=12), squares(tmp_path / "d", n=6, seed=1, split="test")
    seeds = 2 if protocol == "segmentation" else 1  # (the detectors are the slow ones)
    cfg = build_config(EvalConfig, values={
        "backbone": "small-cnn", "random_init": True, "train": {"spec": train}, "test": {"spec": test},
        "protocol": protocol, "seeds": seeds, "resolution": 32, "val_fraction": 0.25,
        "finetune": {"epochs": 2, "batch_size": 6, "lr_grid": [0.01, 0.03]},
        "runtime": {"progress": False}})  # fmt: skip
    doc = evaluate(cfg, tmp_path / "ev", log=lambda *_: None)
    primary = "mIoU" if protocol == "segmentation" else "AP"
    assert doc["primary"] == primary and doc["summary"][primary]["n"] == seeds and "median" in doc["summary"][primary]
    for seed in doc["seeds"]:
        assert seed["tuned"] and set(seed["validation"]) == {"0.01", "0.03"} and seed["train_examples"] == 9
        assert 0.0 <= seed[primary] <= 1.0 and seed["cost"]["images"] > 0
    if protocol != "segmentation":
        assert {"AP50", "AP75", "AP_S", "AP_M", "AP_L", "AP50_voc07"} <= set(doc["summary"])
        assert doc["area_ranges"]["small"][1] == pytest.approx(32**2 * 32 * 32 / (640 * 480))
    else:
        assert {"pixel_accuracy", "mean_class_accuracy"} <= set(doc["summary"])
    trained = sum(
        json.loads(f.read_text())["cost"]["flops"] for f in (tmp_path / "ev" / "cache").glob("*/summary.json")
    )
    assert doc["cost"]["evaluation"]["flops"] > trained > 0  # the prediction passes count their FLOPs too
    (tmp_path / "ev" / "metrics.json").unlink()  # killed before the summary: the seeds are kept, nothing retrains
    again = evaluate(cfg, tmp_path / "ev", log=lambda *_: None)
    assert again["summary"] == doc["summary"]


def test_a_dense_protocol_on_a_classification_dataset_is_a_one_line_error(tmp_path):
    from test_score_pipeline import pool

    from thresher.evaluate.config import EvalConfig
    from thresher.evaluate.run import evaluate

    src = f"npz:{pool(tmp_path / 'p.npz')}"
    cfg = build_config(EvalConfig, values={"backbone": "small-cnn", "random_init": True, "train": {"spec": src},
                                           "test": {"spec": src}, "protocol": "detection"})  # fmt: skip
    with pytest.raises(ThresherError, match="has no boxes or masks: dense protocols read a dense dataset"):
        evaluate(cfg, tmp_path / "ev", log=lambda *_: None)


def test_a_study_target_names_a_dense_protocol_and_its_column_shows_that_metric(tmp_path):
    from test_score_pipeline import pool

    from thresher.report import markdown_table
    from thresher.study import StudyConfig, run_study

    src = pool(tmp_path / "src.npz", n_per_class=12)
    train, test = squares(tmp_path / "d", n=10), squares(tmp_path / "d", n=6, seed=1, split="test")
    cfg = build_config(StudyConfig, values={
        "source": {"spec": f"npz:{src}"},
        "targets": [{"name": "shapes", "train": {"spec": train}, "test": {"spec": test}, "protocol": "segmentation"}],
        "methods": ["knn"], "budgets": [0.5], "resolutions": [16],
        "pretrain": {"epochs": 1, "batch_size": 16, "lr": 0.05},
        "score": {"models": {"resolution": 16, "target_epochs": 1, "batch_size": 8}},
        "evaluation": {"seeds": 1, "finetune": {"epochs": 1, "batch_size": 5, "lr_grid": [0.02]}},
        "runtime": {"progress": False}})  # fmt: skip
    results = run_study(cfg, tmp_path / "study", log=lambda *_: None)
    assert {r["metric"] for r in results["rows"]} == {"mIoU"} and results["protocols"] == {"shapes": "segmentation"}
    assert "| shapes (mIoU) |" in markdown_table(results)
    with pytest.raises(ThresherError, match="unknown evaluation protocol 'segmentaton'"):
        build_config(
            StudyConfig,
            values={
                **cfg.model_dump(),
                "targets": [
                    {"name": "shapes", "train": {"spec": train}, "test": {"spec": test}, "protocol": "segmentaton"}
                ],
            },
        )


def test_torchvision_resnets_get_the_c4_head_whose_box_head_is_their_own_fifth_stage():
    from thresher.models import create_backbone
    from thresher.train.objective import build_objective

    resnet = create_backbone("resnet18")
    det = build_objective("detection", resnet, {}, num_classes=2)
    assert det.head == "c4" and det.model.roi_heads.box_head.layer4 is resnet.layer4  # pre-trained, fine-tuned once
    assert det.model.backbone.out_channels == 256
    batch = {"images": torch.randn(2, 3, 64, 64), "boxes": [torch.tensor([[4.0, 6, 40, 50]])] * 2,
             "classes": [torch.tensor([1])] * 2}  # fmt: skip
    det.train()
    out = det(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and resnet.layer4[0].conv1.weight.grad is not None
    with pytest.raises(ThresherError, match="the C4 head needs a torchvision ResNet"):
        build_objective("detection", create_backbone("small-cnn"), {"head": "c4"}, num_classes=2)


@pytest.mark.parametrize(("backbone", "levels"), [("small-cnn", {"0": 2, "1": 4, "2": 8, "pool": 16}),
                                                  ("resnet20", {"0": 2, "1": 4, "pool": 8})])  # fmt: skip
def test_other_backbones_get_a_feature_pyramid_over_their_stages(backbone, levels):
    """FPN (Lin et al. 2017) over the last three stages of stride >= 2, a pooled level on top; each RoI is pooled from
    the level whose cell is an eighth of its side; masks train through the same pyramid."""
    from thresher.models import create_backbone
    from thresher.train.objective import build_objective

    bb = create_backbone(backbone)
    det = build_objective("detection", bb, {"masks": True, "hidden": 32}, num_classes=2)
    assert det.head == "fpn" and det.model.backbone.out_channels == 16
    maps = det.model.backbone(torch.randn(1, 3, 64, 64))
    assert {k: 64 // v.shape[-1] for k, v in maps.items()} == levels
    pool = det.model.roi_heads.box_roi_pool
    top = max(v for k, v in levels.items() if k != "pool")
    sides = torch.tensor([8.0 * top, 4.0 * top, 2.0 * top, 1.0])  # the coarsest level, one below, two below, finest
    boxes = [torch.stack([torch.zeros(4), torch.zeros(4), sides, sides], 1)]
    pool(maps, boxes, [(64, 64)])  # (its first call sets the levels' scales up from the maps)
    assert pool.map_levels(boxes).tolist() == [len(levels) - 2, max(0, len(levels) - 3), 0, 0]
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 6:50, 4:40], masks[1, 50:57, 50:56] = True, True
    batch = {"images": torch.randn(2, 3, 64, 64), "boxes": [torch.tensor([[4.0, 6, 40, 50], [50, 50, 56, 57]])] * 2,
             "classes": [torch.tensor([1, 0])] * 2, "masks": [masks, masks]}  # fmt: skip
    det.train()
    out = det(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and "loss_mask" in out
    assert all(p.grad is not None for p in det.model.backbone.fpn.parameters())
    assert (
        bb.features[3].weight.grad is not None
        if backbone == "small-cnn"
        else bb.layer2[0].conv1.weight.grad is not None
    )
    last = build_objective("detection", create_backbone(backbone), {"head": "last"}, num_classes=2)
    assert last.head == "last" and list(last.model.backbone(torch.randn(1, 3, 64, 64)).shape) == [
        1,
        bb.feature_dim,
        64 // bb.map_stride,
        64 // bb.map_stride,
    ]


def test_the_dense_settings_reach_each_protocol_s_objective(tmp_path):
    from thresher.data.spec import open_dataset as opened
    from thresher.evaluate.config import EvalConfig
    from thresher.evaluate.dense import DenseRun
    from thresher.evaluate.protocols import PROTOCOLS

    spec = squares(tmp_path / "d", n=4)
    split = (opened(spec), np.arange(4))
    for protocol, expected in (("detection", {"masks": False, "rois": 8, "frozen_bn": True, "head": "last",
                                              "hidden": 32}),
                               ("segmentation", {"frozen_bn": True, "hidden": 32})):  # fmt: skip
        cfg = build_config(EvalConfig, values={"backbone": "small-cnn", "random_init": True, "train": {"spec": spec},
                                               "test": {"spec": spec}, "protocol": protocol,
                                               "dense": {"rois": 8, "frozen_bn": True, "head": "last",
                                                         "hidden": 32}})  # fmt: skip
        run = DenseRun(cfg, PROTOCOLS.get(protocol), None, "small-cnn", None, split, split)
        assert run.params == expected
