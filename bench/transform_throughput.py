"""Augmentation throughput: thresher's batched transforms vs per-sample torchvision v2 (the reference), one run.

Both draw from the same distributions (tests/test_transforms.py). Real images from the built-in pool when found,
else random pixels. Rounds alternate between the two so a busy neighbour slows both alike. Prints one JSON line:
    {"bench": "transform_throughput", ..., "images_per_s": {"train": {"batched": .., "reference": ..}, ...},
     "speedup": {"train": .., "ssl": ..}}
Usage: python bench/transform_throughput.py [--resolution 32] [--batch 256] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _report import publish

from thresher.data.transforms import build_transform, reference_transform, step_generator


def load_batch(batch: int, resolution: int) -> torch.Tensor:
    try:
        from thresher.data import open_dataset

        ds = open_dataset("builtin:tiny-imagenet-32:train")
        return ds.load_batch(list(range(0, batch * 7, 7)), resolution)[0]
    except Exception:  # no real data here: the timing does not depend on pixel values
        return torch.randint(0, 256, (batch, 3, resolution, resolution), dtype=torch.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the batch (GPU machines)")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.batch = max(2, round(args.batch * args.scale))
    torch.set_num_threads(args.threads)
    x = load_batch(args.batch, args.resolution)
    result: dict = {}
    for kind in ("train", "ssl"):
        fast = build_transform(kind, args.resolution)
        ref = reference_transform(kind, args.resolution)
        times: dict[str, list[float]] = {"batched": [], "reference": []}
        fast(x, step_generator(0, 0))  # warm-up
        for r in range(args.rounds):
            t = time.perf_counter()
            fast(x, step_generator(0, r))
            times["batched"].append(time.perf_counter() - t)
            t = time.perf_counter()
            for img in x:
                ref(img)
            times["reference"].append(time.perf_counter() - t)
        result[kind] = {k: round(args.batch / statistics.median(v), 1) for k, v in times.items()}
    speedup = {k: round(v["batched"] / v["reference"], 2) for k, v in result.items()}
    publish(
        "transform_throughput",
        {
            "resolution": args.resolution,
            "batch": args.batch,
            "threads": args.threads,
            "images_per_s": result,
            "speedup": speedup,
        },  # fmt: skip
        what=(
            "Augmentation images/s of thresher's batched transforms vs per-sample torchvision `transforms.v2` (the "
            f"reference they are tested against), {args.batch} real pool images at {args.resolution} px."
        ),
        reading=(
            f"the batched path is {speedup['train']:.1f}x (train) and {speedup['ssl']:.1f}x (two-view ssl) faster "
            f"than per-sample v2 with {args.threads} threads."
        ),
    )


if __name__ == "__main__":
    main()
