"""Paper 000's resolution effect: pre-training at half resolution costs about half and loses little.

The pool (tiny-imagenet-32) is pre-trained with supervision at 16 px and at 32 px for the same epochs (small-cnn),
then both backbones are evaluated at 32 px on cifar10 and fashion-mnist by the linear protocol on cached features
(a cheaper protocol than 000's fine-tuning, so seeds are affordable; the penalty is chosen on validation). Prints
the accuracy ratio (16 px / 32 px) per target and the cost ratios: FLOPs and measured wall-clock of pre-training.
Usage: python bench/resolution.py [--scale 1.0] [--epochs 6] [--seeds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _report import publish

from thresher.config import build_config
from thresher.evaluate.config import EvalConfig
from thresher.evaluate.run import evaluate
from thresher.pretrain.config import TrainConfig
from thresher.pretrain.run import pretrain

POOL = "builtin:tiny-imagenet-32:train"
TARGETS = {"cifar10": "builtin:cifar10", "fashion-mnist": "builtin:fashion-mnist"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply epochs and target sizes (GPU machines)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    t_start = time.perf_counter()
    epochs = max(1, round(args.epochs * args.scale))
    n_train, n_test = round(2000 * args.scale), round(2000 * args.scale)
    quiet = {"log": lambda *_: None}
    result: dict = {"epochs": epochs, "targets": {}, "pretrain": {}}
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = {}
        for res in (16, 32):
            cfg = build_config(TrainConfig, values={
                "data": {"spec": POOL}, "backbone": "small-cnn", "resolution": res, "epochs": epochs,
                "batch_size": 128, "runtime": {"progress": False},
            })  # fmt: skip
            t0 = time.perf_counter()
            s = pretrain(cfg, Path(tmp) / f"pt{res}", **quiet)
            result["pretrain"][res] = {
                "flops": s["cost"]["flops"], "seconds": round(time.perf_counter() - t0, 1),
                "final_loss": s["epoch_loss"][-1],
            }  # fmt: skip
            ckpts[res] = str(Path(tmp) / f"pt{res}" / "checkpoint.pt")
        for name, spec in TARGETS.items():
            acc = {}
            for res, ckpt in ckpts.items():
                ecfg = build_config(EvalConfig, values={
                    "checkpoint": ckpt, "train": {"spec": f"{spec}:train", "subset": n_train},
                    "test": {"spec": f"{spec}:test", "subset": n_test}, "protocol": "linear", "seeds": args.seeds,
                    "resolution": 32, "runtime": {"progress": False},
                })  # fmt: skip
                acc[res] = evaluate(ecfg, Path(tmp) / f"ev-{name}-{res}", **quiet)["summary"]["top1"]
            result["targets"][name] = {
                "top1_16px": round(acc[16]["mean"], 4), "top1_32px": round(acc[32]["mean"], 4),
                "std_16px": round(acc[16]["std"] or 0, 4), "std_32px": round(acc[32]["std"] or 0, 4),
                "accuracy_ratio": round(acc[16]["mean"] / acc[32]["mean"], 4),
            }  # fmt: skip
    pre = result["pretrain"]
    result["flops_ratio"] = round(pre[16]["flops"] / pre[32]["flops"], 4)
    result["wall_ratio"] = round(pre[16]["seconds"] / pre[32]["seconds"], 4)
    ratios = ", ".join(f"{k} {v['accuracy_ratio']:.3f}" for k, v in result["targets"].items())
    publish(
        "resolution",
        result,
        what=(
            "Paper 000: pre-training at half resolution costs about half at a small loss. Supervised pre-training "
            f"of small-cnn on the whole pool at 16 and 32 px ({epochs} epochs each), both evaluated at 32 px on "
            f"{n_train} training / {n_test} test images of each target by the linear protocol, {args.seeds} seeds "
            "(a cheaper protocol than 000's fine-tuning)."
        ),
        reading=(
            f"16 px costs {result['flops_ratio']:.2f}x the FLOPs and {result['wall_ratio']:.2f}x the wall-clock "
            f"of 32 px; accuracy ratio 16/32 px: {ratios}. 000 claims about half the cost at a small loss for "
            "224 -> 112 px; here the half resolution is 16 px."
        ),
        minutes=(time.perf_counter() - t_start) / 60,
    )


if __name__ == "__main__":
    main()
