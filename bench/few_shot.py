"""Paper 002: the pre-training source matters most with few target labels; differences shrink as labels grow.

Three sources for small-cnn: none (random init), the whole pool, and the importance-selected 10% of the pool for each
target (004's weights, top mode), all supervised for the same epochs. Each is evaluated on cifar10 and fashion-mnist
with 1, 10 and 100 labels per class (few-shot draws vary with the seed) two ways: fine-tuning every layer, as 002
does (one learning rate, 0.01, for every arm, so no validation split is carved from the shots), and a linear probe on
frozen features (fixed default penalty where validation is too small, as each run's report says). Prints top-1 per
protocol, source, target and shots, and the spread (best - worst source) at each number of shots.
Usage: python bench/few_shot.py [--scale 1.0] [--epochs 8] [--seeds 3]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import POOL, TARGETS, Clock, parser, score_pool, small_cnn, top1, train
from _report import publish

from thresher.config import build_config
from thresher.select_run import SelectConfig, run_select

SHOTS = (1, 10, 100)
PROTOCOLS = {
    "finetune": {"fewshot_protocol": "finetune", "finetune": {"epochs": 30, "batch_size": 32, "lr_grid": [0.01]}},
    "linear": {"fewshot_protocol": "linear"},
}


def main() -> None:
    ap = parser(__doc__, "multiply epochs and test sizes (GPU machines)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    clock = Clock()
    epochs = max(1, round(args.epochs * args.scale))
    n_test = round(2000 * args.scale)
    table: dict = {p: {} for p in PROTOCOLS}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train(tmp / "pool", data={"spec": POOL}, **small_cnn(epochs))
        for name, spec in TARGETS.items():
            score_pool(tmp / f"scores-{name}", f"{spec}:train", tmp / "pool" / "checkpoint.pt", epochs, ["importance"])
            sel = build_config(SelectConfig, values={"scores": str(tmp / f"scores-{name}"), "method": "importance",
                                                     "budget": 0.1})  # fmt: skip
            run_select(sel, tmp / f"sel-{name}", log=lambda *_: None)
            train(tmp / f"pt-{name}", data={"spec": POOL}, manifest=str(tmp / f"sel-{name}"), **small_cnn(epochs))
            sources = {
                "none": {"backbone": "small-cnn", "random_init": True},
                "whole pool": {"checkpoint": str(tmp / "pool" / "checkpoint.pt")},
                "selected 10%": {"checkpoint": str(tmp / f"pt-{name}" / "checkpoint.pt")},
            }
            for protocol, values in PROTOCOLS.items():
                table[protocol][name] = {}
                for k in SHOTS:
                    row = {}
                    for src, model in sources.items():
                        slug = f"{name}-{src.replace(' ', '_')}"
                        t = top1(tmp / f"ev-{protocol}-{slug}-{k}", model, spec, protocol="fewshot",
                                 seeds=args.seeds, n_test=n_test, shots_per_class=k,
                                 cache=str(tmp / f"cache-{slug}"), **values)  # fmt: skip
                        row[src] = round(t["mean"], 4)
                    row["spread"] = round(max(row.values()) - min(row.values()), 4)
                    table[protocol][name][k] = row
    result = {"epochs": epochs, "shots_per_class": list(SHOTS), "top1": table}
    spreads = "; ".join(
        f"{p}, {t}: " + ", ".join(f"{k}-shot {table[p][t][k]['spread']:.3f}" for k in SHOTS)
        for p in table
        for t in table[p]
    )
    publish(
        "few_shot",
        result,
        what=(
            "Paper 002: source choice (none / whole pool / importance-selected 10%) at 1, 10 and 100 labels per "
            f"class; small-cnn, {epochs} epochs of supervised pre-training per source; fine-tuning (30 epochs, "
            f"lr 0.01) and a linear probe on frozen features, {args.seeds} seeds (the few-shot draw changes with the "
            f"seed), {n_test} test images."
        ),
        reading=(
            f"spread of top-1 across sources (best - worst): {spreads}. 002 reports the largest differences at the "
            "fewest labels, shrinking as labels grow."
        ),
        minutes=clock.minutes(),
    )


if __name__ == "__main__":
    main()
