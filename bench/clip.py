"""Paper 002: image-text pre-training (CLIP on template captions) against image-only SimCLR and supervised
pre-training of the same backbone on the same pool at the same compute, on few-shot transfer; and CLIP's zero-shot.

Pool: tiny-imagenet-32 (30,000 images, 200 classes), small-cnn at 32 px. CLIP reads captions templated from the
pool's class names and their WordNet synonyms (002's IN1K-Template-Captions). C = ``--epochs`` supervised epochs of
the pool in the training loop's FLOPs; every objective trains for exactly C: images = C / its FLOPs per image
(SimCLR's two views; CLIP's image and text towers), 2 pre-training seeds. Each objective at its usual optimizer:
supervised and SimCLR SGD (lr 0.1, thresher's defaults), CLIP AdamW (lr 1e-3, weight decay 0.05: SGD at 0.1 collapses
it). Transfer: few-shot fine-tuning of every layer at 1, 10 and 100 labels per class on cifar10 and fashion-mnist
(as bench/few_shot: 30 epochs, lr 0.01, ``--draws`` few-shot draws per pre-trained model, the same draws for every
arm; 2000 test images), and no pre-training for reference. Zero-shot top-1 of the CLIP models on the pool's val split
(5,000 images, chance 0.5%) and on cifar10's test split (3,000; the vocabulary knows 3 of its 10 class names).
002's claims checked: SimCLR > CLIP in the few-shot regime; supervised > CLIP on template captions.
Resumable: ``--out DIR`` keeps every run.
Usage: python bench/clip.py [--scale 1.0] [--epochs 12] [--draws 3] [--out DIR]
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from _common import POOL, TARGETS, Clock, parser, top1, train
from _report import publish

from thresher.compute_match import ComputeUnit
from thresher.config import build_config
from thresher.evaluate.config import EvalConfig
from thresher.evaluate.run import evaluate

SHOTS = (1, 10, 100)
SEEDS = (0, 1)
N_POOL = 30_000
OBJECTIVES = {
    "supervised": {},
    "simclr": {},
    "clip": {"optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05}},
}
FINETUNE = {"fewshot_protocol": "finetune", "finetune": {"epochs": 30, "batch_size": 32, "lr_grid": [0.01]}}


def pretrain_arm(folder: Path, objective: str, images: int, seed: int) -> dict:
    """One pre-training run of ``objective`` for ``images`` images; returns its summary (cost included)."""
    values = {
        "data": {"spec": POOL}, "backbone": "small-cnn", "objective": objective, "resolution": 32, "images": images,
        "epochs": 1, "batch_size": 128, "seed": seed, "lr_schedule": {"warmup_fraction": 0.05},
        "runtime": {"progress": False}, **OBJECTIVES[objective],
    }  # fmt: skip
    return train(folder, **values)


def zero_shot(folder: Path, checkpoint: Path, train_spec: str, test_spec: str) -> dict:
    """Zero-shot top-1 of a clip checkpoint on ``test_spec`` and the class names its vocabulary knows."""
    doc = evaluate(build_config(EvalConfig, values={
        "checkpoint": str(checkpoint), "train": {"spec": train_spec}, "test": {"spec": test_spec},
        "protocol": "zeroshot", "seeds": 1, "runtime": {"progress": False}}), folder, log=lambda *_: None)  # fmt: skip
    return {"top1": doc["summary"]["top1"]["mean"], "known_classes": len(doc["seeds"][0]["hparams"]["known_classes"])}


def few_shot(folder: Path, model: dict, spec: str, shots: int, draws: int, n_test: int) -> list[float]:
    """Top-1 of fine-tuning ``model`` on ``shots`` labels per class of ``spec``, one value per few-shot draw."""
    t = top1(folder, model, spec, protocol="fewshot", seeds=draws, n_test=n_test, shots_per_class=shots, **FINETUNE)
    return [float(v) for v in t["values"]]


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}  # fmt: skip


def main() -> None:
    ap = parser(__doc__, "multiply the pre-training compute and the test sizes (GPU machines)")
    ap.add_argument("--epochs", type=int, default=12, help="C: supervised epochs of the pool")
    ap.add_argument("--draws", type=int, default=3, help="few-shot draws per pre-trained model")
    ap.add_argument("--out", default=None, help="keep every run here (resumable)")
    args = ap.parse_args()
    clock = Clock()
    epochs = max(1, round(args.epochs * args.scale))
    n_test = round(2000 * args.scale)
    unit = ComputeUnit("small-cnn", 32, "supervised", epochs, N_POOL, num_classes=200)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        models: dict[str, dict[int, Path]] = {}
        cost: dict[str, dict] = {}
        for objective in OBJECTIVES:
            per_image = unit.per_image(32, objective)
            images = round(unit.flops / per_image)
            models[objective] = {}
            for seed in SEEDS:
                folder = root / f"pt-{objective}-{seed}"
                s = pretrain_arm(folder, objective, images, seed)
                models[objective][seed] = folder / "checkpoint.pt"
                cost.setdefault(objective, {
                    "images": s["cost"]["images"], "epochs": round(s["cost"]["images"] / N_POOL, 2),
                    "flops_per_image": s["cost"]["flops_per_image"], "C": [], "seconds": [],
                    "final_loss": []})  # fmt: skip
                cost[objective]["C"].append(round(s["cost"]["flops"] / unit.flops, 3))
                cost[objective]["seconds"].append(round(s["cost"]["seconds"], 1))
                cost[objective]["final_loss"].append(round(s["epoch_loss"][-1], 4))
        zs = {
            target: [zero_shot(root / f"zs-{target}-{seed}", models["clip"][seed], train, test) for seed in SEEDS]
            for target, (train, test) in {
                "pool val": (POOL, "builtin:tiny-imagenet-32:val"),
                "cifar10": ("builtin:cifar10:train", "builtin:cifar10:test"),
            }.items()
        }  # fmt: skip
        zero = {t: {**mean_std([r["top1"] for r in rows]), "known_classes": rows[0]["known_classes"]}
                for t, rows in zs.items()}  # fmt: skip
        fewshot: dict = {}
        for name, spec in TARGETS.items():
            fewshot[name] = {}
            for k in SHOTS:
                scratch = {"backbone": "small-cnn", "random_init": True}
                row = {"none": mean_std(few_shot(root / f"ev-{name}-{k}-none", scratch, spec, k, args.draws, n_test))}
                for objective in OBJECTIVES:
                    values = []
                    for seed in SEEDS:
                        model = {"checkpoint": str(models[objective][seed])}
                        folder = root / f"ev-{name}-{k}-{objective}-{seed}"
                        values += few_shot(folder, model, spec, k, args.draws, n_test)
                    row[objective] = mean_std(values)
                fewshot[name][k] = row
    cells = [(t, k) for t in fewshot for k in SHOTS]

    def wins(a: str, b: str) -> int:
        return sum(fewshot[t][k][a]["mean"] > fewshot[t][k][b]["mean"] for t, k in cells)

    claims = {
        "simclr > clip (few-shot cells)": f"{wins('simclr', 'clip')} of {len(cells)}",
        "supervised > clip (few-shot cells)": f"{wins('supervised', 'clip')} of {len(cells)}",
        "supervised > simclr (few-shot cells)": f"{wins('supervised', 'simclr')} of {len(cells)}",
    }
    result = {"C": {"what": f"{epochs} supervised epochs of {N_POOL} pool images", "flops": unit.flops},
              "pretraining": cost, "fewshot_top1": fewshot, "zeroshot_top1": zero, "claims": claims}  # fmt: skip
    arms = ("none", *OBJECTIVES)
    table = "\n".join(
        ["| target | labels/class | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
        + [f"| {t} | {k} | " + " | ".join(f"{fewshot[t][k][a]['mean']:.3f} ± {fewshot[t][k][a]['std']:.3f}"
                                           for a in arms) + " |" for t, k in cells]
    )  # fmt: skip
    publish(
        "clip",
        result,
        what=(
            "Paper 002: CLIP on template captions vs SimCLR vs supervised pre-training of small-cnn on the pool "
            f"(tiny-imagenet-32, {N_POOL} images, 32 px) at equal compute, 1 C each (C = {epochs} supervised epochs "
            "in the loop's training FLOPs), 2 pre-training seeds; supervised and SimCLR SGD lr 0.1, CLIP AdamW lr "
            "1e-3. Few-shot fine-tuning (30 epochs, lr 0.01) at 1, 10 and 100 labels per class on cifar10 and "
            f"fashion-mnist, {args.draws} few-shot draws per model (the same for every arm), {n_test} test images; "
            "mean ± std over pre-training seeds x draws. Zero-shot top-1 of the CLIP models on the pool's val split "
            "(5000 images, 200 classes) and cifar10's test split (3000)."
        ),
        reading=(
            f"at 1 C each (supervised {cost['supervised']['epochs']} epochs, SimCLR {cost['simclr']['epochs']}, CLIP "
            f"{cost['clip']['epochs']}): "
            + "; ".join(f"{c}: {v}" for c, v in claims.items())
            + f". Zero-shot top-1 of CLIP: pool val {zero['pool val']['mean']:.3f} (chance 0.005), cifar10 "
            f"{zero['cifar10']['mean']:.3f} (chance 0.1; {zero['cifar10']['known_classes']} of 10 names known)."
        ),
        minutes=clock.minutes(),
        table=table,
    )


if __name__ == "__main__":
    main()
