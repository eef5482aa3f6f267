"""Archives in the official Tiny ImageNet layout, built from given 32 px images (upsampled 2x, saved as JPEG), for the
download and conversion tests and ``scripts/fresh_machine.py``. Nothing here is the recipe: the tests check the
converter against their own NumPy rendering of it.

Layout of ``tiny-imagenet-200.zip``: ``tiny-imagenet-200/`` holding wnids.txt (one wnid a line, not sorted),
words.txt (wnid TAB words, for many more wnids than the classes), ``train/WNID/images/WNID_I.JPEG`` with
``train/WNID/WNID_boxes.txt``, ``val/images/val_J.JPEG`` with ``val/val_annotations.txt`` (file TAB wnid TAB box), and
``test/images/test_K.JPEG`` (unlabeled).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg(img32: np.ndarray, *, gray: bool = False, quality: int = 90) -> bytes:
    """A 32 px uint8 image upsampled 2x (each pixel repeated) and encoded as a 64 x 64 JPEG."""
    big = np.repeat(np.repeat(img32, 2, axis=0), 2, axis=1)
    im = Image.fromarray(big)
    if gray:
        im = im.convert("L")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_tiny_archive(
    path: Path,
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    *,
    gray_every: int = 0,
    seed: int = 0,
    root: str = "tiny-imagenet-200",
) -> Path:
    """Write ``path`` (a zip) with ``train[wnid]`` / ``val[wnid]`` (n x 32 x 32 x 3 uint8) in the official layout.

    Val images get file numbers in a shuffled order across classes, as in the real archive; every ``gray_every``-th
    training image is stored as a grayscale JPEG (the real archive has some)."""
    rng = np.random.default_rng(seed)
    wnids = list(train)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:

        def put(name: str, data: bytes | str) -> None:
            zf.writestr(f"{root}/{name}", data)

        put("wnids.txt", "".join(f"{w}\n" for w in rng.permutation(wnids)))
        extra = [f"n{90000000 + i:08d}" for i in range(5)]
        put("words.txt", "".join(f"{w}\twords for {w}, synonym\n" for w in sorted([*wnids, *extra])))
        count = 0
        for wnid, imgs in train.items():
            boxes = []
            for i, img in enumerate(imgs):
                count += 1
                put(
                    f"train/{wnid}/images/{wnid}_{i}.JPEG", jpeg(img, gray=bool(gray_every) and count % gray_every == 0)
                )
                boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
            put(f"train/{wnid}/{wnid}_boxes.txt", "".join(boxes))
        items = [(w, img) for w, imgs in val.items() for img in imgs]
        numbers = rng.permutation(len(items))
        rows = []
        for (wnid, img), j in zip(items, numbers, strict=True):
            put(f"val/images/val_{j}.JPEG", jpeg(img))
            rows.append((j, f"val_{j}.JPEG\t{wnid}\t1\t2\t60\t61\n"))
        put("val/val_annotations.txt", "".join(r for _, r in sorted(rows)))
        put("test/images/test_0.JPEG", jpeg(next(iter(train.values()))[0]))
    return path


def synthetic_classes(n_classes: int, n_train: int, n_val: int, seed: int = 0) -> tuple[dict, dict]:
    """Random 32 px images per class (wnid-like names), for tests that need no real data."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{1000000 + 7919 * k:08d}" for k in range(n_classes)]
    train = {w: rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8) for w in wnids}
    val = {w: rng.integers(0, 256, (n_val, 32, 32, 3), dtype=np.uint8) for w in wnids}
    return train, val
