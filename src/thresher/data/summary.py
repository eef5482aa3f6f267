"""What ``thresher data info`` reports: size, shape, classes, label histogram, unreadable images, contact sheets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import UnreadableImage
from .base import BadImageLog, ImageDataset, img_to_chw, to_square
from .npz import ArrayDataset


def dataset_info(ds: ImageDataset, *, verify: bool = False, sample: int = 64) -> dict:
    """Counts, image shapes (all of them for arrays, a sample otherwise), label histogram; ``verify`` decodes all."""
    labels = ds.labels
    info: dict = {"spec": ds.spec, "source": ds.source, "images": len(ds)}
    if isinstance(ds, ArrayDataset):
        n, h, w, c = ds.images.shape
        info["shapes"] = {f"{h}x{w}x{c}": int(n)}
    else:
        shapes: Counter = Counter()
        bad = BadImageLog()
        idx = range(len(ds)) if verify else np.linspace(0, len(ds) - 1, min(sample, len(ds))).astype(int)
        for i in idx:
            try:
                a = ds.load(int(i))
                shapes["x".join(map(str, a.shape))] += 1
            except UnreadableImage:
                bad.add([ds.ids[int(i)]])
        info["shapes"] = dict(shapes.most_common(5))
        info["shapes_from"] = "all images" if verify else f"a sample of {len(idx)}"
        info["unreadable"] = {"count": bad.count, "first": bad.first, "checked": len(idx)}
    labeled = labels >= 0
    info["labeled"] = int(labeled.sum())
    info["classes"] = ds.num_classes
    if labeled.any():
        counts = np.bincount(labels[labeled], minlength=ds.num_classes)
        names = ds.classes or [str(k) for k in range(len(counts))]
        info["per_class"] = {"min": int(counts.min()), "max": int(counts.max()), "mean": float(counts.mean())}
        info["histogram"] = {names[k]: int(v) for k, v in enumerate(counts)}
    return info


def format_info(info: dict, max_bars: int = 20) -> str:
    """Human-readable rendering of ``dataset_info``."""
    lines = [info["spec"]]
    if info.get("source"):
        lines.append(f"  source    {info['source']}")
    lines.append(f"  images    {info['images']}")
    shapes = ", ".join(f"{k} ({v})" for k, v in info["shapes"].items())
    lines.append(f"  shape     {shapes}" + (f"  [from {info['shapes_from']}]" if "shapes_from" in info else ""))
    if "unreadable" in info:
        u = info["unreadable"]
        first = f" (first: {', '.join(u['first'])})" if u["count"] else ""
        lines.append(f"  unreadable {u['count']} of {u['checked']} checked{first}")
    lines.append(
        f"  classes   {info['classes']}  (labeled: {info['labeled']}, unlabeled: {info['images'] - info['labeled']})"
    )
    if "per_class" in info:
        pc = info["per_class"]
        lines.append(f"  per class min {pc['min']}, max {pc['max']}, mean {pc['mean']:.1f}")
        hist = info["histogram"]
        if len(hist) <= max_bars:
            top = max(hist.values()) or 1
            width = max(len(k) for k in hist)
            for name, v in hist.items():
                lines.append(f"    {name:<{width}} {v:>7} {'#' * max(1 if v else 0, round(30 * v / top))}")
    return "\n".join(lines)


def contact_sheet(
    ds: ImageDataset,
    out: str | Path,
    *,
    count: int = 64,
    cols: int = 8,
    cell: int = 64,
    seed: int = 0,
    indices: np.ndarray | None = None,
) -> Path:
    """Write a PNG grid of images (class names under each): ``indices`` in order, else ``count`` random ones."""
    from PIL import Image, ImageDraw

    if indices is None:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(ds), size=min(count, len(ds)), replace=False))
    else:
        idx = np.asarray(indices, dtype=np.int64)
    rows = -(-len(idx) // cols)
    caption = 12 if ds.has_labels else 0
    sheet = Image.new("RGB", (cols * cell, rows * (cell + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    names = getattr(ds, "descriptions", None) or ds.classes
    for k, i in enumerate(idx):
        r, c = divmod(k, cols)
        try:
            img = to_square(img_to_chw(ds.load(int(i))), cell).permute(1, 2, 0).numpy()
        except UnreadableImage:
            img = np.full((cell, cell, 3), 200, np.uint8)
        sheet.paste(Image.fromarray(img), (c * cell, r * (cell + caption)))
        label = int(ds.labels[i])
        if caption and label >= 0:
            text = (names[label] if names else str(label)).split(",")[0][: cell // 6]
            draw.text((c * cell + 1, r * (cell + caption) + cell), text, fill=(0, 0, 0))
    out = Path(out)
    atomic.write_with(out, lambda t: sheet.save(t, format="PNG"))
    return out
