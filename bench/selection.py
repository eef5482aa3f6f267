"""Paper 000's headline: at a small fraction of the pool, target-aware selection beats a random subset of the same
size, and recovers much of what pre-training on the whole pool buys, at a fraction of its cost.

A thresher study: source tiny-imagenet-32 (30k images, 200 classes), targets cifar10 and fashion-mnist (2,000
training and 2,000 test images each), budgets 10% and 20%, every scorer against random at the same budget, plus no
pre-training and the whole pool; supervised small-cnn at 32 px, every subset for the whole pool's epochs (000);
fine-tuning with one learning rate for every arm, 3 seeds. Prints per target and budget each method's top-1 (mean,
std), its difference to random, the gain recovered (method - scratch) / (whole pool - scratch) and the cost ratio to
the whole pool (scoring + pre-training).
Usage: python bench/selection.py [--scale 1.0] [--epochs 8] [--seeds 3] [--out DIR]
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from _common import Clock, parser
from _report import publish

from thresher.config import build_config
from thresher.report import markdown_table
from thresher.study import StudyConfig, gain_recovered, run_study

METHODS = ["domain-classifier", "cluster-min", "cluster-avg", "importance", "knn", "entropy", "inverse-entropy"]


def _clear(v: dict, rnd: dict, seeds: int) -> bool:
    """Above random by more than two standard errors of the difference over fine-tuning seeds."""
    return v["minus_random"] > 2 * math.sqrt((v["std"] ** 2 + rnd["std"] ** 2) / seeds)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated scorers (random is always in)")
    ap.add_argument("--out", default=None, help="keep the study here (default: a temporary folder)")
    args = ap.parse_args()
    clock = Clock()
    n = round(2000 * args.scale)
    epochs = max(1, round(args.epochs * args.scale))
    cfg = build_config(StudyConfig, values={
        "source": {"spec": "builtin:tiny-imagenet-32:train"},
        "targets": [
            {"name": t, "train": {"spec": f"builtin:{t}:train", "subset": n},
             "test": {"spec": f"builtin:{t}:test", "subset": n}}
            for t in ("cifar10", "fashion-mnist")
        ],
        "methods": args.methods.split(","), "budgets": [0.1, 0.2],
        "pretrain": {"backbone": "small-cnn", "epochs": epochs, "batch_size": 128, "lr": 0.1},
        "evaluation": {"protocol": "finetune", "seeds": args.seeds,
                       "finetune": {"epochs": epochs, "batch_size": 32, "lr_grid": [0.03], "default_lr": 0.03}},
        "runtime": {"progress": False},
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "study"
        results = run_study(cfg, out, log=lambda *_: None)
    rows = results["rows"]
    summary: dict = {}
    for t in results["targets"]:
        base = {r["arm"]: r for r in rows if r["target"] == t and r["budget"] is None}
        scratch, pool = base["no pre-training"]["top1"], base["whole pool"]["top1"]
        pool_cost = base["whole pool"]["cost"]["total"]["flops"]
        summary[t] = {"no pre-training": round(scratch["mean"], 4), "whole pool": round(pool["mean"], 4)}
        for budget in cfg.budgets:
            sub = {r["arm"]: r for r in rows if r["target"] == t and r["budget"] == budget}
            rnd = sub["random"]["top1"]["mean"]
            summary[t][str(budget)] = {
                m: {
                    "top1": round(r["top1"]["mean"], 4),
                    "std": round(r["top1"]["std"] or 0.0, 4),
                    "minus_random": round(r["top1"]["mean"] - rnd, 4),
                    "gain_recovered": (lambda g: None if g is None else round(g, 3))(
                        gain_recovered(r["top1"]["mean"], scratch, pool)
                    ),
                    "cost_ratio": round(r["cost"]["total"]["flops"] / pool_cost, 3) if pool_cost else None,
                }
                for m, r in sub.items()
            }
    beats = []
    for t, per in summary.items():
        for budget in cfg.budgets:
            cells = per[str(budget)]
            rnd = cells["random"]
            winners = [m + ("" if _clear(v, rnd, args.seeds) else " (within noise)") for m, v in cells.items()
                       if m != "random" and v["minus_random"] > 0]  # fmt: skip
            beats.append(f"{t} @ {budget:.0%}: {', '.join(winners) or 'none'}")
    publish(
        "selection",
        {"epochs": epochs, "targets_size": n, "seeds": args.seeds, "summary": summary},
        what=(
            "Paper 000: every scorer against a random subset of the same size (10% and 20% of tiny-imagenet-32), "
            f"plus no pre-training and the whole pool; small-cnn, {epochs} epochs for every arm; fine-tuning on "
            f"{n} training / {n} test images of cifar10 and fashion-mnist, {args.seeds} seeds, one learning rate "
            "(0.03) for every arm. Cost = scoring + pre-training FLOPs relative to the whole pool; a scorer that "
            "embeds with the whole-pool model carries that model's training in its cost, as if it ran alone."
        ),
        reading=f"methods whose mean top-1 is above random's: {'; '.join(beats)} (within noise: by less than two "
        "standard errors of the difference over fine-tuning seeds; the pre-training itself ran once per arm). 000 "
        "reports domain classifier and clustering above random at 6% and 12% of ImageNet with a ResNet at 224 px.",
        minutes=clock.minutes(),
        table=markdown_table(results),
    )


if __name__ == "__main__":
    main()
