"""Paper 001 (HPT): self-supervised pre-training on the target converges in far fewer steps from a base model.

Base: small-cnn pre-trained with supervision on the pool (tiny-imagenet-32). Three MoCo-v2 runs on cifar10's training
split with one fixed step budget: from scratch (target only), from the base (HPT) and from the base training only the
batch-norm parameters (HPT-BN). Every ``--every`` steps the checkpoint is evaluated by the linear protocol on cifar10.
Prints the accuracy curves, the target-only run's best accuracy within the budget and the step it took, the steps
HPT needed to reach it, and their ratio (001: up to 80x fewer steps).
Usage: python bench/hpt.py [--scale 1.0] [--steps 400] [--every 50]
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from _common import POOL, Clock, parser, small_cnn, top1, train
from _report import publish

from thresher.train import loop

TARGET = "builtin:cifar10"


def _reached(arm: str, step: int | None, best_step: int) -> str:
    if step is None:
        return f"{arm} does not reach it within the budget"
    if step == 0:
        return f"{arm} starts above it (its base model alone, step 0)"
    return f"{arm} reaches it at step {step} ({best_step / step:.1f}x fewer steps)"


def main() -> None:
    ap = parser(__doc__, "multiply the step budget and test size (GPU machines)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--base-epochs", type=int, default=8)
    args = ap.parse_args()
    clock = Clock()
    batch, n_target = 128, 5000
    epochs = max(1, round(args.steps * args.scale * batch / n_target))
    steps_per_epoch = n_target // batch
    n_test = round(2000 * args.scale)
    curves: dict[str, dict[int, float]] = {}
    real_save = loop.Trainer.save

    def save_and_keep(self):  # keep every evaluated checkpoint: the loop itself keeps only the latest
        real_save(self)
        if self.dist.main and self.state.step % args.every == 0:
            shutil.copy(self.root / "checkpoint.pt", self.root / f"step-{self.state.step:06d}.pt")

    loop.Trainer.save = save_and_keep
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train(tmp / "base", data={"spec": POOL}, **small_cnn(args.base_epochs))
        base = str(tmp / "base" / "checkpoint.pt")

        def probe(ckpt: str | None, name: str) -> float:
            model = {"checkpoint": ckpt} if ckpt else {"backbone": "small-cnn", "random_init": True}
            return top1(tmp / f"ev-{name}", model, TARGET, seeds=1, n_test=n_test)["mean"]

        arms = {"target only": {}, "HPT": {"init": base}, "HPT-BN": {"init": base, "train": "bn"}}
        for arm, extra in arms.items():
            values = {
                "data": {"spec": f"{TARGET}:train"}, "backbone": "small-cnn", "objective": "moco",
                "objective_params": {"queue_size": 4096}, "resolution": 32, "epochs": epochs, "batch_size": batch,
                "optim": {"lr": 0.03}, "checkpoint_every": args.every, "runtime": {"progress": False}, **extra,
            }  # fmt: skip
            folder = tmp / arm.replace(" ", "_")
            train(folder, **values)
            curves[arm] = {0: round(probe(extra.get("init"), f"{arm}-0"), 4)}
            for ckpt in sorted(folder.glob("step-*.pt")):
                step = int(ckpt.stem.split("-")[1])
                curves[arm][step] = round(probe(str(ckpt), f"{arm}-{step}".replace(" ", "_")), 4)
    loop.Trainer.save = real_save
    target = curves["target only"]
    best_step = max(target, key=lambda s: (target[s], -s))
    best = target[best_step]
    reach = {
        arm: next((s for s in sorted(c) if c[s] >= best), None) for arm, c in curves.items() if arm != "target only"
    }
    ratio = {arm: (round(s / best_step, 4) if s is not None and best_step else None) for arm, s in reach.items()}
    result = {
        "budget_steps": epochs * steps_per_epoch,
        "curves": {arm: {str(k): v for k, v in c.items()} for arm, c in curves.items()},
        "target_only_best": {"top1": best, "step": best_step},
        "steps_to_reach_it": reach,
        "step_ratio_to_target_only": ratio,
    }
    publish(
        "hpt",
        result,
        what=(
            "Paper 001: MoCo-v2 on cifar10 train for a fixed budget of "
            f"{epochs * steps_per_epoch} steps (batch {batch}) from scratch, from a base pre-trained with supervision "
            f"on the pool ({args.base_epochs} epochs), and from the base training only batch norm; linear-protocol "
            f"top-1 on {n_test} cifar10 test images every {args.every} steps (step 0: the starting weights)."
        ),
        reading=(
            f"the target-only run's best within the budget is {best:.3f} at step {best_step}; "
            + "; ".join(_reached(arm, reach[arm], best_step) for arm in ("HPT", "HPT-BN"))
            + f". HPT's best {max(curves['HPT'].values()):.3f} against its base's {curves['HPT'][0]:.3f}. "
            "001 reports up to 80x fewer steps, and base + target above base."
        ),
        minutes=clock.minutes(),
    )


if __name__ == "__main__":
    main()
