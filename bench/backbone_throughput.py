"""Training throughput of the CPU backbones side by side: images/s for one SGD step (forward, backward, update).

Batch 128, float32, 2 threads, a linear head with cross-entropy on random data. Models are timed in interleaved
rounds so a busy neighbour on a shared machine slows them all alike. Prints one JSON line:
    {"resolution": 32, ..., "images_per_s": {"small-cnn": ..., ...}, "ratio_to_resnet18": {...}}
Usage: python bench/backbone_throughput.py [--resolution 32] [--steps 20] [--models small-cnn,resnet20,resnet18]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _report import publish
from torch import nn

from thresher.models import create_backbone


def make_step(name: str, batch: int, resolution: int, classes: int = 10):
    """A closure running one training step of backbone ``name`` + linear head on a fixed random batch."""
    torch.manual_seed(0)
    backbone = create_backbone(name)
    model = nn.Sequential(backbone, nn.Linear(backbone.feature_dim, classes)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, classes, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def main() -> None:
    """Parse options, time every model, print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the timed steps (GPU machines)")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="small-cnn,resnet20,resnet18")
    args = ap.parse_args()
    args.steps = max(1, round(args.steps * args.scale))
    torch.set_num_threads(args.threads)

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    steps = {n: make_step(n, args.batch_size, args.resolution) for n in names}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {n: [] for n in names}
    per_round = 5
    done = 0
    while done < args.steps:
        k = min(per_round, args.steps - done)
        for n, step in steps.items():
            for _ in range(k):
                t0 = time.perf_counter()
                step()
                times[n].append(time.perf_counter() - t0)
        done += k

    ips = {n: round(args.batch_size / statistics.median(t), 1) for n, t in times.items()}
    best = {n: round(args.batch_size / min(t), 1) for n, t in times.items()}
    ref = ips.get("resnet18")
    out = {
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "steps": args.steps,
        "images_per_s": ips,
        "images_per_s_best_step": best,
        "ratio_to_resnet18": {n: round(v / ref, 2) for n, v in ips.items()} if ref else None,
    }
    ratio = out["ratio_to_resnet18"] or {}
    publish(
        "backbone_throughput",
        out,
        what=(
            f"Training images/s (batch {args.batch_size}, {args.resolution} px, {args.threads} threads, SGD step with "
            "a linear head) of the CPU backbones. Target of the foundation issue: small-cnn >= 1,000 images/s here."
        ),
        reading=(
            f"small-cnn trains at {ips.get('small-cnn', 0):,.0f} images/s ("
            + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items() if k != "resnet18")
            + " of torchvision ResNet-18's speed); under load from other processes the absolute numbers drop "
            "several-fold, the ratios much less."
        ),
    )


if __name__ == "__main__":
    main()
