"""Paper 003: drop-and-pick reaches the full schedule's accuracy with less computation, and beats the same
computation spent otherwise (its Table 2f: random dropping at the same ratio; all data for fewer epochs).

Supervised training of small-cnn with a step learning-rate schedule (decays at 1/2 and 3/4 of the run, as 003's CIFAR
setting decays at 150 and 225 of 300 epochs), in two regimes: the whole pool (tiny-imagenet-32 train, 30,000 images,
200 classes, 12 epochs; top-1 on its val split), thresher's use, where a small model is far from fitting the data;
and cifar10 train (5,000 images, 10 classes, 40 epochs; top-1 on its test split), 003's CIFAR setting, where the
model fits its training data. Drop-and-pick uses its defaults, 003's CIFAR setting scaled to the run (pick at the
first decay, warm-up 4/15 and interval 1/15 of it, keep 0.9). Prints accuracy, computation and measured wall-clock of
each arm and their ratios to the full schedule.
Usage: python bench/drop_and_pick.py [--scale 1.0] [--regimes pool,cifar10]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import POOL, Clock, parser
from _report import publish

from thresher.config import DataConfig, RuntimeConfig, build_config
from thresher.data.loader import open_data
from thresher.embed import EmbedConfig, embed_dataset
from thresher.pretrain.run import pretrain
from thresher.train.config import TrainConfig
from thresher.train.heads import head_logits

# regime: (training data, held-out split, epochs at scale 1)
REGIMES = {
    "pool": (POOL, "builtin:tiny-imagenet-32:val", 12),
    "cifar10": ("builtin:cifar10:train", "builtin:cifar10:test", 40),
}


def held_out_top1(ckpt: Path, spec: str, folder: Path) -> float:
    """Top-1 of the model's own classification head on a held-out split."""
    ds, idx = open_data(DataConfig(spec=spec))
    cfg = EmbedConfig(data=DataConfig(spec=spec), backbone="small-cnn", checkpoint=str(ckpt), resolution=32,
                      runtime=RuntimeConfig(progress=False))  # fmt: skip
    store = embed_dataset(ds, idx, cfg, folder, log=lambda *_: None)
    logits = head_logits(ckpt, store)
    return float((logits.argmax(1) == ds.labels[idx[store.indices]]).mean())


def run_regime(data: str, held_out: str, epochs: int, tmp: Path) -> dict:
    """The full schedule, drop-and-pick and its two equal-computation controls on one training set."""
    milestones = [epochs // 2, (3 * epochs) // 4]
    base = {
        "data": {"spec": data}, "backbone": "small-cnn", "resolution": 32, "batch_size": 128,
        "lr_schedule": {"name": "step", "milestones": milestones}, "runtime": {"progress": False},
    }  # fmt: skip
    arms: dict[str, dict] = {}

    def run(name: str, **values) -> None:
        cfg = build_config(TrainConfig, values={**base, **values})
        t0 = time.perf_counter()
        s = pretrain(cfg, tmp / name, log=lambda *_: None)
        seconds = time.perf_counter() - t0
        top1 = held_out_top1(tmp / name / "checkpoint.pt", held_out, tmp / f"{name}-held-out")
        arms[name] = {
            "epochs": cfg.epochs, "top1": round(top1, 4), "computation": s["cost"]["computation"],
            "images": s["cost"]["images"], "seconds": round(seconds, 1), "final_train_loss": s["epoch_loss"][-1],
            "schedule": {k: v for k, v in s["schedule"].items() if k != "examples_per_epoch"},
        }  # fmt: skip

    run("full", epochs=epochs)
    run("drop_and_pick", epochs=epochs, schedule="drop-and-pick")
    settings = {k: arms["drop_and_pick"]["schedule"][k] for k in ("warmup", "interval", "keep", "active", "pick")}
    run("random_drop", epochs=epochs, schedule="random-drop", schedule_params=settings)
    fewer = max(1, round(epochs * arms["drop_and_pick"]["computation"]))  # about the same images, all data
    run("fewer_epochs", epochs=fewer, lr_schedule={"name": "step", "milestones": [fewer // 2, (3 * fewer) // 4]})
    full = arms["full"]
    ratios = {
        name: {
            "accuracy": round(a["top1"] / full["top1"], 4),
            "computation": round(a["images"] / full["images"], 4),
            "wall": round(a["seconds"] / full["seconds"], 4),
        }
        for name, a in arms.items()
        if name != "full"
    }
    return {"data": data, "held_out": held_out, "epochs": epochs, "milestones": milestones, "fewer_epochs": fewer,
            "arms": arms, "ratio_to_full": ratios}  # fmt: skip


def _reading(name: str, r: dict) -> str:
    d, q = r["ratio_to_full"]["drop_and_pick"], r["ratio_to_full"]
    return (
        f"{name} ({r['epochs']} epochs, full schedule top-1 {r['arms']['full']['top1']:.3f}): drop-and-pick "
        f"{d['accuracy']:.3f}x the full schedule's accuracy at {d['computation']:.2f}x the computation and "
        f"{d['wall']:.2f}x the wall-clock; random dropping {q['random_drop']['accuracy']:.3f}x, all data for "
        f"{r['fewer_epochs']} epochs {q['fewer_epochs']['accuracy']:.3f}x"
    )


def main() -> None:
    ap = parser(__doc__, "multiply the epochs (GPU machines)")
    ap.add_argument("--regimes", default=",".join(REGIMES), help=f"comma-separated, of {', '.join(REGIMES)}")
    args = ap.parse_args()
    clock = Clock()
    result: dict = {"regimes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.regimes.split(","):
            data, held_out, epochs = REGIMES[name]
            folder = Path(tmp) / name
            folder.mkdir()
            result["regimes"][name] = run_regime(data, held_out, max(4, round(epochs * args.scale)), folder)
    publish(
        "drop_and_pick",
        result,
        what=(
            "Paper 003: drop-and-pick against the full schedule and against the same computation spent otherwise "
            "(random dropping at the same sizes; all data for fewer epochs). small-cnn, supervised, step decays at "
            "1/2 and 3/4 of the run, in two regimes: the whole pool (tiny-imagenet-32 train, top-1 on its val split, "
            "5,000 images, 200 classes) and cifar10 train (003's CIFAR setting, top-1 on its test split, 3,000 "
            "images); top-1 of the model's own head."
        ),
        reading="; ".join(_reading(n, r) for n, r in result["regimes"].items())
        + ". 003 reports >= 0.996x at 0.75x computation (ImageNet) and that both controls lose to drop-and-pick.",
        minutes=clock.minutes(),
    )


if __name__ == "__main__":
    main()
