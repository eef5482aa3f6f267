"""Training-loop overhead: thresher's loop (full and drop-and-pick) against a bare PyTorch loop, side by side.

Same model (small-cnn + linear head), same data (a tiny-imagenet-32 subset, else random pixels), same batched
augmentation, optimizer and threads; the bare loop holds the images in one uint8 tensor and does nothing but
augment, forward, backward and step. Thresher's loop adds the dataset reads, the data schedule, per-sample loss
bookkeeping, FLOP counting, logging and atomic checkpoints. Rounds alternate the three so a busy neighbour slows all
alike. Prints one JSON line:
    {"bench": "train_overhead", "images_per_s": {"bare": .., "thresher": .., "drop_and_pick": ..},
     "ratio_to_bare": {"thresher": .., "drop_and_pick": ..}, "drop_and_pick": {"computation": .., "wall_ratio": ..}}
Usage: python bench/train_overhead.py [--examples 4096] [--epochs 4] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _report import publish

from thresher.config import build_config
from thresher.data.npz import ArrayDataset
from thresher.data.transforms import build_transform, step_generator
from thresher.device import memory_format
from thresher.models import build_backbone
from thresher.train.config import TrainConfig
from thresher.train.engine import train_on
from thresher.train.objective import build_objective


def dataset(n: int) -> tuple[object, np.ndarray]:
    try:
        from thresher.data import open_dataset

        ds = open_dataset("builtin:tiny-imagenet-32:train")
        idx = np.random.default_rng(0).choice(len(ds), n, replace=False)
        return ds, np.sort(idx)
    except Exception:  # no real data here: the timing does not depend on pixel values
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        return ArrayDataset(images, rng.integers(0, 200, n), spec="random"), np.arange(n)


def bare_loop(ds, idx: np.ndarray, cfg: TrainConfig) -> float:
    """Seconds for ``cfg.epochs`` epochs of the plainest loop: augment, forward, backward, step."""
    x_all, _ = ds.load_batch(idx, cfg.resolution)
    y_all = torch.from_numpy(ds.labels[idx])
    torch.manual_seed(cfg.seed)
    model = build_objective("supervised", build_backbone(cfg.backbone, None, cfg.seed), num_classes=200)
    model = model.to(memory_format=memory_format(torch.device("cpu"))).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=0.9, weight_decay=cfg.optim.weight_decay)
    transform = build_transform("train", cfg.resolution)
    bs, step = cfg.batch_size, 0
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        order = torch.from_numpy(np.random.default_rng(epoch).permutation(len(idx)))
        for b in range(len(idx) // bs):
            sel = order[b * bs : (b + 1) * bs]
            images = transform(x_all[sel], step_generator(cfg.seed, step)).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model.head(model.backbone.forward_features(images)), y_all[sel])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return time.perf_counter() - t0


def thresher_loop(ds, idx: np.ndarray, cfg: TrainConfig) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = train_on(ds, idx, cfg, Path(tmp) / "run", log=lambda *_: None)
        return time.perf_counter() - t0, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the examples per epoch (GPU machines)")
    ap.add_argument("--examples", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.examples = round(args.examples * args.scale)
    ds, idx = dataset(args.examples)
    base = {
        "data": {"spec": "bench"},
        "backbone": "small-cnn",
        "resolution": 32,
        "epochs": args.epochs,
        "batch_size": 128,
        "runtime": {"progress": False, "threads": args.threads},
    }
    full = build_config(TrainConfig, values=base)
    # drop to the hardest 80% every epoch after a one-epoch warm-up, no pick inside the short run: the examples
    # processed per second measure the bookkeeping (per-sample losses, ranking, changing epoch sizes)
    dap_params = {"warmup": 1, "interval": 1, "keep": 0.8, "pick": []}
    dap = build_config(TrainConfig, values={**base, "schedule": "drop-and-pick", "schedule_params": dap_params})
    torch.set_num_threads(args.threads)
    images_full = args.epochs * (len(idx) // 128) * 128
    times: dict[str, list[float]] = {"bare": [], "thresher": [], "drop_and_pick": []}
    dap_images = computation = 0
    for _ in range(args.rounds):
        times["bare"].append(bare_loop(ds, idx, full))
        times["thresher"].append(thresher_loop(ds, idx, full)[0])
        seconds, summary = thresher_loop(ds, idx, dap)
        times["drop_and_pick"].append(seconds)
        dap_images, computation = summary["cost"]["images"], summary["cost"]["computation"]
    med = {k: statistics.median(v) for k, v in times.items()}
    ips = {
        "bare": images_full / med["bare"],
        "thresher": images_full / med["thresher"],
        "drop_and_pick": dap_images / med["drop_and_pick"],
    }
    ratio = {k: round(ips[k] / ips["bare"], 3) for k in ("thresher", "drop_and_pick")}
    overhead = round(ips["thresher"] / ips["drop_and_pick"] - 1, 3)
    wall = round(med["drop_and_pick"] / med["thresher"], 3)
    publish(
        "train_overhead",
        {
            "examples": len(idx),
            "epochs": args.epochs,
            "threads": args.threads,
            "images_per_s": {k: round(v, 1) for k, v in ips.items()},
            "ratio_to_bare": ratio,
            "drop_and_pick_bookkeeping_overhead": overhead,
            "drop_and_pick": {"settings": dap_params, "computation": computation, "wall_ratio_to_full": wall},
        },  # fmt: skip
        what=(
            "Thresher's training loop against a bare PyTorch loop on the same model (small-cnn + linear head, "
            f"supervised), data ({len(idx):,} pool images at 32 px), batched augmentation, optimizer and threads; "
            "and the loop with drop-and-pick (warm-up 1 epoch, then keep the hardest 80% every epoch, no pick in "
            f"the {args.epochs}-epoch run). {args.rounds} alternating rounds, medians."
        ),
        reading=(
            f"thresher's loop runs at {ratio['thresher']:.2f}x the bare loop's images/s; drop-and-pick's "
            f"bookkeeping changes images/s by {-overhead:+.0%} (noise-level when small); its wall-clock is "
            f"{wall:.2f}x the full schedule's at {computation:.2f} of its computation."
        ),
    )


if __name__ == "__main__":
    main()
