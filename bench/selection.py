"""Paper 000's question at equal compute (issue 18): for the same FLOPs, scoring included, does pre-training on a
selected subset beat pre-training on the whole pool, a random subset, or a person's hand-picked classes?

Two pools. "tiny": tiny-imagenet-32 (30,000 images, 200 classes). "lake": a heterogeneous lake, tiny-imagenet-32 plus
15,000 of the Fashion-MNIST training images that are not in the fashion-mnist target's training subset (Debian's
dataset-fashion-mnist; the regime is skipped, with the reason, without it), so the whole pool spends much of its
compute on data irrelevant to each target. Targets cifar10 and fashion-mnist (2,000 training and 2,000 test images).
Compute 0.25 and 0.5 C (C = the whole pool for 8 epochs of small-cnn at 32 px, per pool) and the whole pool at every
level and at 1.0; budgets 10% and 20% (the lake: 10%); random, importance, kNN, cluster-min and domain-classifier (the
shared cheap proxies, issue 17) and the hand-picked classes of each target (no scoring cost; in the lake, for
fashion-mnist, the Fashion-MNIST source itself); two pre-training seeds for the whole pool, random and importance (the
best scorer of bench score_cost, chosen before this run), one for the rest; fine-tuning 8 epochs with one learning
rate for every arm, 2 seeds. Resumable: ``--out DIR`` keeps every stage.
Usage: python bench/selection.py [--scale 1.0] [--regimes tiny,lake] [--out DIR]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import Clock, parser
from _report import publish

from thresher.config import build_config
from thresher.data.builtin import FASHION_CLASSES
from thresher.paths import data_roots
from thresher.report import markdown_table
from thresher.study import StudyConfig, above, gain_recovered, run_study

METHODS = ["importance", "knn", "cluster-min", "domain-classifier"]
SEEDED = ["whole pool", "random", "importance"]
FMNIST_IDX = Path("/usr/share/datasets/fashion-mnist")
TARGETS = ("cifar10", "fashion-mnist")
#: Fashion-MNIST's class names (the built-in target's classes.txt), for the lake's IDX files
FMNIST_NAMES = next((f for r in data_roots() if (f := r / "fashion-mnist" / "classes.txt").is_file()), None)


def pools(regimes: list[str]) -> dict[str, tuple[object, list[float]] | str]:
    """Each regime's pool (a DataConfig value) and budgets, or why it is skipped."""
    out: dict = {}
    if "tiny" in regimes:
        out["tiny"] = ({"spec": "builtin:tiny-imagenet-32:train"}, [0.1, 0.2])
    if "lake" in regimes:
        if not FMNIST_IDX.is_dir() or FMNIST_NAMES is None:
            out["lake"] = f"skipped: needs {FMNIST_IDX} (apt-get install dataset-fashion-mnist) and ../shared/data"
        else:
            fmnist = f"idx:{FMNIST_IDX}?classes={FMNIST_NAMES}"
            out["lake"] = ([{"name": "tiny", "spec": "builtin:tiny-imagenet-32:train"},
                            {"name": "fmnist", "spec": fmnist, "exclude": "builtin:fashion-mnist:train",
                             "subset": 15_000}], [0.1])  # fmt: skip
    return out


def hand_picked(target: str, lake: bool) -> list[dict]:
    """What a person would pick for ``target``: the package's list of pool classes; in the lake, for fashion-mnist,
    the Fashion-MNIST source itself (its ten classes)."""
    if lake and target == "fashion-mnist":
        return [{"name": "hand-picked", "classes": [f"fmnist/{c}" for c in FASHION_CLASSES]}]
    return [{"name": "hand-picked", "classes": f"hand-picked:{target}"}]


def study(pool, budgets: list[float], n: int, epochs: int, seeds: int) -> StudyConfig:
    lake = isinstance(pool, list)
    return build_config(StudyConfig, values={
        "source": pool,
        "targets": [
            {"name": t, "train": {"spec": f"builtin:{t}:train", "subset": n},
             "test": {"spec": f"builtin:{t}:test", "subset": n}, "references": hand_picked(t, lake)}
            for t in TARGETS
        ],
        "methods": METHODS, "budgets": budgets, "compute": [0.25, 0.5],
        "pretrain": {"backbone": "small-cnn", "epochs": epochs, "batch_size": 128, "lr": 0.1, "seeds": 2,
                     "seeded_arms": SEEDED},
        "evaluation": {"protocol": "finetune", "seeds": seeds,
                       "finetune": {"epochs": epochs, "batch_size": 32, "lr_grid": [0.03], "default_lr": 0.03}},
        "runtime": {"progress": False},
    })  # fmt: skip


def summarize(results: dict) -> tuple[dict, list[str]]:
    """Per target and compute level: every arm's top-1, its gain over no pre-training relative to the whole pool at
    the same compute, and whether it is above random (same budget) and above the whole pool beyond noise."""
    rows = results["rows"]
    out: dict = {}
    lines = []
    for t in results["targets"]:
        scratch = next(r["top1"] for r in rows if r["target"] == t and r["arm"] == "no pre-training")
        out[t] = {"no pre-training": round(scratch["mean"], 4)}
        for c in sorted({r["compute"] for r in rows if r["compute"] is not None}):
            at = [r for r in rows if r["target"] == t and r["compute"] == c]
            pool = next(r for r in at if r["arm"] == "whole pool")
            cell = {"whole pool": _cell(pool, scratch, pool["top1"])}
            for r in at:
                if r["arm"] == "whole pool":
                    continue
                key = f"{r['arm']} @ {r['budget']}"
                if r["over_budget"]:
                    cell[key] = {"over_budget": True, "scoring_C": r["cost"]["C"]["scoring"]}
                    continue
                rnd = next(x for x in at if x["arm"] == "random" and x["budget"] == r["budget"])
                cell[key] = {**_cell(r, scratch, pool["top1"]), "minus_random": round(r["top1"]["mean"] -
                             rnd["top1"]["mean"], 4), "above_random": above(r["top1"], rnd["top1"]),
                             "above_whole_pool": above(r["top1"], pool["top1"])}  # fmt: skip
            out[t][f"{c:g}"] = cell
            if len(cell) == 1:  # the whole pool alone (at 1 C, above the listed levels)
                continue
            scored = {k: v for k, v in cell.items() if not v.get("over_budget")}
            best = max(scored, key=lambda k: scored[k]["top1"])
            beat = [k for k, v in scored.items() if v.get("above_whole_pool")]
            lines.append(f"{t} @ {c:g} C: best {best} ({100 * scored[best]['top1']:.2f}, whole pool "
                         f"{100 * cell['whole pool']['top1']:.2f}); above the whole pool beyond noise: "
                         f"{', '.join(beat) or 'none'}")  # fmt: skip
    return out, lines


def _cell(r: dict, scratch: dict, pool: dict) -> dict:
    g = gain_recovered(r["top1"]["mean"], scratch, pool)
    return {"top1": round(r["top1"]["mean"], 4), "std": round(r["top1"]["std"] or 0.0, 4), "n": r["top1"]["n"],
            "gain_vs_pool": None if g is None else round(g, 3), "C": r["cost"]["C"]["total"],
            "seconds": round(r["cost"]["total"]["seconds"], 1)}  # fmt: skip


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2, help="fine-tuning seeds")
    ap.add_argument("--regimes", default="tiny,lake", help="comma-separated: tiny, lake")
    ap.add_argument("--out", default=None, help="keep the studies here (resumable; default: a temporary folder)")
    args = ap.parse_args()
    clock = Clock()
    n = round(2000 * args.scale)
    epochs = max(1, round(args.epochs * args.scale))
    summary, lines, tables = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for regime, spec in pools(args.regimes.split(",")).items():
            if isinstance(spec, str):
                summary[regime] = spec
                lines.append(f"{regime}: {spec}")
                continue
            pool, budgets = spec
            results = run_study(study(pool, budgets, n, epochs, args.seeds), out / regime, log=print)
            summary[regime], found = summarize(results)
            summary[regime]["unit"] = results["unit"]["what"]
            lines += [f"{regime}, {x}" for x in found]
            tables.append(f"#### pool: {regime}\n\n{markdown_table(results)}")
    publish(
        "selection",
        {"epochs": epochs, "targets_size": n, "seeds": args.seeds, "summary": summary},
        what=__doc__.split("Usage:")[0].strip(),
        reading="; ".join(lines) + ". Beyond noise: above by more than two standard errors of the difference over "
        "seeds (pre-training x fine-tuning). gain_vs_pool: (arm - no pre-training) / (whole pool at the same compute "
        "- no pre-training).",
        minutes=clock.minutes(),
        table="\n\n".join(tables),
    )


if __name__ == "__main__":
    main()
