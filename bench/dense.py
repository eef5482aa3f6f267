"""Dense transfer (issue 20): what pre-training, drop-and-pick and selection buy on a small detection task, with
what each cost.

The task: ``thresher data make-dense`` (Fashion-MNIST silhouettes pasted onto the pool's val backgrounds, 64 px,
600 training and 300 test images, boxes and masks in COCO format), evaluated by the ``detection`` protocol (Faster
R-CNN with a feature pyramid over small-cnn's stages, 12 epochs at batch 8, one learning rate 0.05 for every arm
(0.1 diverges), 3 seeds; box AP, AP50 and
AP_S/M/L with COCO's areas scaled to 64 px). Pre-training: small-cnn, supervised, 32 px, on tiny-imagenet-32 (30,000
images), 8 epochs with 003's step schedule (decays at 1/2 and 3/4 of the run). Three questions:
1. pre-trained (the whole pool, 1 C) against no pre-training (000, 001);
2. drop-and-pick's model against the full schedule's (003: less computation, AP_S included), drop-and-pick at its
   defaults on the same config;
3. a selected subset (10% of the pool, importance and kNN on the shared cheap proxies, the target read as the class of
   each image's largest object) against a random 10% and the whole pool at the same compute, 0.5 C, scoring included
   (000).
Resumable: ``--out DIR`` keeps every stage.
Usage: python bench/dense.py [--scale 1.0] [--out DIR]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import POOL, Clock, parser
from _report import publish

from thresher import atomic
from thresher.config import build_config
from thresher.data.make_dense import MakeDenseConfig, make_dense
from thresher.evaluate.config import EvalConfig
from thresher.evaluate.run import evaluate
from thresher.pretrain.run import pretrain
from thresher.report import markdown_table
from thresher.runs import read_run_config
from thresher.study import StudyConfig, above, run_study
from thresher.train.config import TrainConfig

METRICS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
STEP = {"name": "step", "milestone_fractions": [0.5, 0.75]}  # 003's CIFAR schedule, at any length


def study(data: Path, epochs: int, finetune_epochs: int, seeds: int) -> StudyConfig:
    return build_config(StudyConfig, values={
        "source": {"spec": POOL},
        "targets": [{"name": "make-dense", "train": {"spec": f"coco:{data}:train"},
                     "test": {"spec": f"coco:{data}:test"}, "protocol": "detection"}],
        "methods": ["importance", "knn"], "budgets": [0.1], "compute": [0.5],
        "evaluation_resolution": 64,
        "pretrain": {"backbone": "small-cnn", "epochs": epochs, "batch_size": 128, "lr": 0.1,
                     "extra": {"lr_schedule": STEP}},
        "evaluation": {"seeds": seeds, "finetune": {"epochs": finetune_epochs, "batch_size": 8, "lr_grid": [0.05],
                                                    "default_lr": 0.05}},
        "runtime": {"progress": False},
    })  # fmt: skip


def metrics(evaluate_folder: str | Path) -> dict:
    """An evaluation's box metrics (mean, std, n over seeds) and its fine-tuning cost."""
    doc = atomic.read_json(Path(evaluate_folder) / "metrics.json")
    return {**{m: doc["summary"][m] for m in METRICS}, "evaluation": doc["cost"]["evaluation"]}


def _short(s: dict) -> dict:
    return {"mean": round(s["mean"], 4), "std": round(s["std"] or 0.0, 4), "n": s["n"]}


def arm(row: dict) -> dict:
    m = metrics(row["evaluate_folder"])
    return {**{k: _short(m[k]) for k in METRICS}, "C": row["cost"]["C"]["total"] if row["cost"].get("C") else 0.0,
            "scoring_C": row["cost"]["C"]["scoring"] if row["cost"].get("C") else 0.0,
            "pretrain_seconds": round(row["cost"]["pretraining"]["seconds"], 1)}  # fmt: skip


def drop_and_pick(out: Path, full: dict) -> dict:
    """Drop-and-pick on the whole-pool run's own config (schedule changed, nothing else), evaluated as the study
    evaluated that run (its fine-tuning cache shared); both models' metrics and pre-training costs."""
    values = read_run_config(Path(full["pretrain_folder"]))["config"]
    values.update(schedule="drop-and-pick", schedule_params={})
    dap = pretrain(build_config(TrainConfig, values=values), out / "dap-pretrain", log=print)
    full_summary = atomic.read_json(Path(full["pretrain_folder"]) / "summary.json")
    ev = read_run_config(Path(full["evaluate_folder"]))["config"]
    ev["checkpoint"] = str(out / "dap-pretrain")
    evaluate(build_config(EvalConfig, values=ev), out / "dap-evaluate", log=print)
    a, b = metrics(out / "dap-evaluate"), metrics(full["evaluate_folder"])
    return {
        "full": {k: _short(b[k]) for k in METRICS},
        "drop_and_pick": {k: _short(a[k]) for k in METRICS},
        "schedule": {k: dap["schedule"][k] for k in ("warmup", "interval", "keep", "pick") if k in dap["schedule"]},
        "computation": round(dap["cost"]["flops"] / full_summary["cost"]["flops"], 3),
        "wall_clock": round(dap["cost"]["seconds"] / full_summary["cost"]["seconds"], 3),
        "AP_ratio": round(a["AP"]["mean"] / b["AP"]["mean"], 3) if b["AP"]["mean"] else None,
        "AP_S_ratio": round(a["AP_S"]["mean"] / b["AP_S"]["mean"], 3) if b["AP_S"]["mean"] else None,
        "AP_below_full_beyond_noise": above(b["AP"], a["AP"]),
        "AP_S_above_full_beyond_noise": above(a["AP_S"], b["AP_S"]),
    }


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--epochs", type=int, default=8, help="pre-training epochs of the whole pool (C)")
    ap.add_argument("--finetune-epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds")
    ap.add_argument("--out", default=None, help="keep every stage here (resumable; default: a temporary folder)")
    ap.add_argument("--force", action="store_true", help="the study at --out changed: redo what changed")
    args = ap.parse_args()
    clock = Clock()
    epochs, ft_epochs = max(1, round(args.epochs * args.scale)), max(1, round(args.finetune_epochs * args.scale))
    n_train, n_test = round(600 * args.scale), round(300 * args.scale)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        data = out / "make-dense"
        if not (data / "summary.json").is_file():
            make_dense(MakeDenseConfig(train=n_train, test=n_test, size=64), data, log=print)
        results = run_study(study(data, epochs, ft_epochs, args.seeds), out / "study", force=args.force, log=print)
        rows = results["rows"]

        def find(name: str, compute: float | None) -> dict:
            return next(r for r in rows if r["arm"] == name and r["compute"] == compute)

        none, full = find("no pre-training", None), find("whole pool", 1.0)
        arms = {"no pre-training": arm(none), "whole pool @ 1 C": arm(full)}
        for r in rows:
            if r["compute"] == 0.5:
                key = r["arm"] if r["budget"] is None else f"{r['arm']} @ {r['budget']:g}"
                arms[f"{key} @ 0.5 C"] = {"over_budget": True} if r["over_budget"] else arm(r)
        m_none, m_full = metrics(none["evaluate_folder"]), metrics(full["evaluate_folder"])
        pretrained = {"AP_gain": round(m_full["AP"]["mean"] - m_none["AP"]["mean"], 4),
                      "AP_above_beyond_noise": above(m_full["AP"], m_none["AP"]),
                      "AP50_above_beyond_noise": above(m_full["AP50"], m_none["AP50"])}  # fmt: skip
        rnd = metrics(next(r for r in rows if r["arm"] == "random" and r["compute"] == 0.5)["evaluate_folder"])
        pool_half = metrics(find("whole pool", 0.5)["evaluate_folder"])
        selection = {}
        for r in rows:
            if r["compute"] == 0.5 and r["arm"] not in ("random", "whole pool") and not r["over_budget"]:
                m = metrics(r["evaluate_folder"])
                selection[r["arm"]] = {
                    "minus_random": round(m["AP"]["mean"] - rnd["AP"]["mean"], 4),
                    "above_random": above(m["AP"], rnd["AP"]),
                    "above_whole_pool": above(m["AP"], pool_half["AP"]),
                    "scoring_C": r["cost"]["C"]["scoring"],
                }  # fmt: skip
        dap = drop_and_pick(out, full)
        best = max(selection, key=lambda k: selection[k]["minus_random"]) if selection else None
        reading = (
            f"1. pre-trained (whole pool, 1 C) box AP {100 * m_full['AP']['mean']:.2f} against "
            f"{100 * m_none['AP']['mean']:.2f} from random init (AP50 {100 * m_full['AP50']['mean']:.2f} against "
            f"{100 * m_none['AP50']['mean']:.2f}); above beyond noise: {pretrained['AP_above_beyond_noise']}. "
            f"2. drop-and-pick: {dap['AP_ratio']}x the full schedule's AP and {dap['AP_S_ratio']}x its AP_S at "
            f"{dap['computation']}x the computation ({dap['wall_clock']}x the wall-clock); AP below the full schedule "
            f"beyond noise: {dap['AP_below_full_beyond_noise']}, AP_S above beyond noise: "
            f"{dap['AP_S_above_full_beyond_noise']}. "
            + (f"3. at 0.5 C, scoring included: {best} minus random {100 * selection[best]['minus_random']:+.2f} AP "
               f"(above random beyond noise: {selection[best]['above_random']}, above the whole pool at 0.5 C: "
               f"{selection[best]['above_whole_pool']}). " if best else "3. every selected arm was over budget. ")
            + "Beyond noise: above by more than two standard errors of the difference over fine-tuning seeds."
        )  # fmt: skip
        publish(
            "dense",
            {
                "pretrain_epochs": epochs,
                "finetune_epochs": ft_epochs,
                "train_images": n_train,
                "test_images": n_test,
                "seeds": args.seeds,
                "arms": arms,
                "pretrained_vs_none": pretrained,
                "drop_and_pick": dap,
                "selection": selection,
                "unit": results["unit"]["what"],
            },  # fmt: skip
            what=__doc__.split("Usage:")[0].strip(),
            reading=reading,
            minutes=clock.minutes(),
            table=markdown_table(results),
        )


if __name__ == "__main__":
    main()
