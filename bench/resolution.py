"""Paper 000's resolution effect: pre-training at half resolution costs about half and loses little.

The pool (tiny-imagenet-32) is pre-trained with supervision at 16 px and at 32 px for the same epochs (small-cnn),
then both backbones are evaluated at 32 px on cifar10 and fashion-mnist by the linear protocol on cached features
(a cheaper protocol than 000's fine-tuning, so seeds are affordable; the penalty is chosen on validation). Prints
the accuracy ratio (16 px / 32 px) per target and the cost ratios: FLOPs and measured wall-clock of pre-training.
Usage: python bench/resolution.py [--scale 1.0] [--epochs 6] [--seeds 3]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import POOL, TARGETS, Clock, parser, small_cnn, top1, train
from _report import publish


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    clock = Clock()
    epochs = max(1, round(args.epochs * args.scale))
    n_train, n_test = round(2000 * args.scale), round(2000 * args.scale)
    result: dict = {"epochs": epochs, "targets": {}, "pretrain": {}}
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = {}
        for res in (16, 32):
            t0 = time.perf_counter()
            s = train(Path(tmp) / f"pt{res}", data={"spec": POOL}, **small_cnn(epochs, resolution=res))
            result["pretrain"][res] = {
                "flops": s["cost"]["flops"], "seconds": round(time.perf_counter() - t0, 1),
                "final_loss": s["epoch_loss"][-1],
            }  # fmt: skip
            ckpts[res] = str(Path(tmp) / f"pt{res}" / "checkpoint.pt")
        for name, spec in TARGETS.items():
            acc = {
                res: top1(
                    Path(tmp) / f"ev-{name}-{res}",
                    {"checkpoint": ckpt},
                    spec,
                    seeds=args.seeds,
                    n_train=n_train,
                    n_test=n_test,
                    resolution=32,
                )  # fmt: skip
                for res, ckpt in ckpts.items()
            }
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
        minutes=clock.minutes(),
    )


if __name__ == "__main__":
    main()
