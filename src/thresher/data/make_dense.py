"""``thresher data make-dense``: a small real detection and segmentation task (issue 20), written in COCO format.

Fashion-MNIST items, whose backgrounds are black, keep their true silhouettes: each is scaled and pasted at a random
place onto a real background, and its box and mask come from the pixels it covers once later objects are drawn over
it. Backgrounds are tiny-imagenet's val split (never its train split, the pool pre-training reads), upscaled to the
image size; objects come from Fashion-MNIST's train split for the train split and its test split for the test split.
Object sizes are drawn evenly from the small, medium and large buckets of ``dense.area_ranges`` at the image size, so
every bucket of AP_S / AP_M / AP_L has objects. Everything follows from ``seed``: the same folder comes out each time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import Field

from .. import atomic
from ..config import Section, runtime
from ..errors import ThresherError
from ..runs import RunFolder
from .coco import encode_mask
from .dense import area_ranges
from .spec import open_dataset

#: a Fashion-MNIST pixel brighter than this is the item (its background is black)
SILHOUETTE = 12
#: an object hidden below this share of its own pixels by later ones is dropped (what is left is not an object)
MIN_VISIBLE = 0.4


class MakeDenseConfig(Section):
    """The synthetic dense task: sizes, splits, sources, seed."""

    size: int = Field(96, ge=32, le=512, description="image side in pixels")
    train: int = Field(1000, ge=1, description="training images")
    test: int = Field(400, ge=1, description="test images")
    objects: tuple[int, int] = Field((1, 4), description="objects per image, at least and at most")
    backgrounds: str = Field("builtin:tiny-imagenet-32:val", description="background images (never the pool's train)")
    items: str = Field("builtin:fashion-mnist", description="the objects' dataset: its :train and :test splits")
    seed: int = 0
    data_root: str | None = runtime(None, description="folder searched first for built-in datasets")


def _sides(size: int, bucket: str, rng: np.random.Generator, fill: float) -> int:
    """A side (pixels) whose silhouette area (about ``fill`` of the square) falls in ``bucket`` at this image size."""
    ranges = area_ranges(size, size)
    lo, hi = ranges[bucket]
    lo_side = max(4.0, np.sqrt(lo / fill) + 1)
    hi_side = min(size * 0.7, np.sqrt(hi / fill) - 1) if bucket != "large" else size * 0.7
    return int(rng.integers(int(lo_side), max(int(lo_side) + 1, int(hi_side) + 1)))


def render(background: np.ndarray, items: list[tuple[np.ndarray, int]], size: int, rng: np.random.Generator):
    """One image: ``background`` (H, W, 3) upscaled to ``size``, then each (28 x 28 item, category) pasted in turn.
    Returns the image and the objects as (category, visible mask, pixels it had when drawn), in drawing order."""
    canvas = np.asarray(Image.fromarray(background).resize((size, size), Image.BILINEAR)).copy()
    placed: list[tuple[int, np.ndarray, int]] = []
    for item, category in items:
        fill = float((item > SILHOUETTE).mean()) or 0.5
        side = _sides(size, ["small", "medium", "large"][int(rng.integers(3))], rng, fill)
        patch = np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR))
        sil = patch > SILHOUETTE
        if not sil.any():
            continue
        y, x = (int(rng.integers(0, size - side + 1)) for _ in range(2))
        mask = np.zeros((size, size), bool)
        mask[y : y + side, x : x + side] = sil
        canvas[mask] = patch[sil][:, None]
        placed = [(c, m & ~mask, n) for c, m, n in placed]  # what the new item covers is no longer the older ones'
        placed.append((category, mask, int(mask.sum())))
    return canvas, placed


def _split(cfg: MakeDenseConfig, name: str, n: int, backgrounds, bg_rows: np.ndarray, out: Path, sid: int) -> dict:
    items = open_dataset(f"{cfg.items}:{name}", data_root=cfg.data_root)
    rng = np.random.default_rng([cfg.seed, sid])
    images, annotations = [], []
    (out / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        bg = backgrounds.load(int(bg_rows[i % len(bg_rows)]))
        bg = np.repeat(bg, 3, axis=2) if bg.shape[2] == 1 else bg
        k = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
        picks = rng.integers(0, len(items), k)
        chosen = [(items.load(int(j))[..., 0], int(items.labels[int(j)])) for j in picks]
        canvas, placed = render(bg, chosen, cfg.size, rng)
        file_name = f"{name}/{i:06d}.png"
        Image.fromarray(canvas).save(out / file_name)
        images.append({"id": i + 1, "file_name": file_name, "height": cfg.size, "width": cfg.size})
        for category, mask, drawn in placed:
            area = int(mask.sum())
            if area < 4 or area < MIN_VISIBLE * drawn:
                continue
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category + 1,
                                "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0], "area": area,
                                "segmentation": encode_mask(mask), "iscrowd": 0})  # fmt: skip
    cats = [{"id": k + 1, "name": c} for k, c in enumerate(items.classes or [str(k) for k in range(10)])]
    doc = {"images": images, "annotations": annotations, "categories": cats,
           "info": {"description": f"thresher make-dense {name}: {cfg.items} items on {cfg.backgrounds}",
                    "seed": cfg.seed}}  # fmt: skip
    atomic.write_text(out / f"{name}.json", json.dumps(doc))
    return {"images": n, "objects": len(annotations)}


def make_dense(cfg: MakeDenseConfig, out: str | Path, *, force: bool = False, log=print) -> dict:
    """Write ``OUT/train.json``, ``OUT/test.json`` and their images; read them with ``coco:OUT:train``."""
    backgrounds = open_dataset(cfg.backgrounds, data_root=cfg.data_root)
    if "tiny-imagenet" in cfg.backgrounds and not cfg.backgrounds.endswith(":val"):
        raise ThresherError("make-dense backgrounds must not be the pool's training split (it is pre-trained on): "
                            "use builtin:tiny-imagenet-32:val")  # fmt: skip
    order = np.random.default_rng(cfg.seed).permutation(len(backgrounds))
    half = len(order) // 2  # train and test images never share a background
    with RunFolder(out, "make-dense", cfg, force=force) as run:
        if run.file("summary.json").is_file():  # written last: the folder is complete
            return atomic.read_json(run.file("summary.json"), fix="delete it and run make-dense again")
        summary = {
            "train": _split(cfg, "train", cfg.train, backgrounds, order[:half], run.path, 0),
            "test": _split(cfg, "test", cfg.test, backgrounds, order[half:], run.path, 1),
            "area_ranges": area_ranges(cfg.size, cfg.size),
        }
        atomic.write_json(run.file("summary.json"), summary)
        log(f"wrote {run.path}: train {summary['train']}, test {summary['test']}; read it as coco:{run.path}:train")
        return summary
