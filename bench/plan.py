"""The planner against what it predicts (issue 19): does `thresher plan`'s recommendation, run at the full budget,
land in its predicted interval, and does the whole pool at the whole budget land in its own?

Pool tiny-imagenet-32 (30,000 images, 200 classes); targets cifar10 and fashion-mnist (2,000 training images, the
pilots' validation split carved from them; 2,000 test images read by --check alone); budgets 4 C and 6 C (C = the whole
pool for 8 epochs of small-cnn at 32 px; the planner's minimum here is 3.8 C); the planner's defaults otherwise: kNN and
random at 10% and 30% and the whole pool, 4 compute levels x 2 seeds of pilots, 25% of the budget for scoring and
pilots. For each: the recommendation, its prediction and interval, what --check measured on validation (the quantity
predicted) and on test, the same for the whole pool, and the share of the budget the planning spent (FLOPs and
wall-clock). Resumable: ``--out DIR`` keeps every plan.
Usage: python bench/plan.py [--scale 1.0] [--budgets 4C,6C] [--targets cifar10,fashion-mnist] [--out DIR]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import POOL, TARGETS, Clock, parser
from _report import publish

from thresher.config import build_config
from thresher.plan.config import PlanConfig
from thresher.plan.run import check_plan, run_plan


def plan_config(target: str, budget: str, n: int, epochs: int) -> PlanConfig:
    spec = TARGETS[target]
    return build_config(PlanConfig, values={
        "source": {"spec": POOL},
        "target": {"spec": f"{spec}:train", "subset": n},
        "target_test": {"spec": f"{spec}:test", "subset": n},
        "budget": budget,
        "epochs": epochs,
        "runtime": {"progress": False},
    })  # fmt: skip


def _arm(row: dict) -> dict:
    p = row["predicted"]
    return {"candidate": row["candidate"], "predicted": round(p["mean"], 4), "interval": [round(p["low"], 4),
            round(p["high"], 4)], "measured": round(row["measured"], 4), "in_interval": row["in_interval"],
            "test_top1": round(row["test_top1"], 4), "total_C": round(row["total_C"], 3),
            "within_budget": row["within_budget"]}  # fmt: skip


def main() -> None:
    ap = parser(__doc__, scale_help="multiply the target sizes and C's epochs (GPU machines)")
    ap.add_argument("--budgets", default="4C,6C")
    ap.add_argument("--targets", default="cifar10,fashion-mnist")
    ap.add_argument("--out", default=None, help="keep the plans here (resumable; default: a temporary folder)")
    args = ap.parse_args()
    clock = Clock()
    n = round(2000 * args.scale)
    epochs = max(1, round(8 * args.scale))
    summary, lines, table = {}, [], []
    table.append("| target | budget | arm | predicted (90% interval) | measured (validation) | in interval "
                 "| test top-1 | total (C) |")  # fmt: skip
    table.append("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for target in args.targets.split(","):
            for budget in args.budgets.split(","):
                folder = out / f"{target}-{budget}"
                doc = run_plan(plan_config(target, budget, n, epochs), folder, log=print)
                check = check_plan(folder, log=print)
                rows = {role: _arm(r) for role, r in check["rows"].items()}
                pilots_s = sum(v["seconds"] for v in doc["overhead"].values())
                run_s = sum(r["pretraining"]["seconds"] for r in check["rows"].values())
                summary[f"{target} @ {budget}"] = {
                    **rows,
                    "runner_up": doc["runner_up"],
                    "told_apart": doc["told_apart"],
                    "no_pretraining": round(doc["no_pretraining"], 4),
                    "planning_share_flops": round(doc["share_spent"], 3),
                    "planning_seconds": round(pilots_s, 1),
                    "plan_wall_seconds": doc["seconds"],
                    "full_budget_runs_seconds": round(run_s, 1),
                }
                for role, r in rows.items():
                    table.append(f"| {target} | {budget} | {role.replace('_', ' ')}: {r['candidate']} | "
                                 f"{r['predicted']:.3f} ({r['interval'][0]:.3f}-{r['interval'][1]:.3f}) | "
                                 f"{r['measured']:.3f} | {'yes' if r['in_interval'] else 'no'} | {r['test_top1']:.3f} "
                                 f"| {r['total_C']:.3g} |")  # fmt: skip
                rec, whole = rows["recommended"], rows["whole_pool"]
                lines.append(f"{target} @ {budget}: recommended {rec['candidate']} (measured {rec['measured']:.3f}, "
                             f"{'in' if rec['in_interval'] else 'outside'} its interval) vs the whole pool "
                             f"{whole['measured']:.3f} ({'in' if whole['in_interval'] else 'outside'}); planning "
                             f"{doc['share_spent']:.0%} of the budget")  # fmt: skip
    covered = [r["in_interval"] for s in summary.values() for r in (s["recommended"], s["whole_pool"])]
    publish(
        "plan",
        {"targets_size": n, "epochs": epochs, "coverage": f"{sum(covered)}/{len(covered)}", "summary": summary},
        what=__doc__.split("Usage:")[0].strip(),
        reading="; ".join(lines) + f". Measurements inside their predicted 90% interval: {sum(covered)} of "
        f"{len(covered)}.",
        minutes=clock.minutes(),
        table="\n".join(table),
    )


if __name__ == "__main__":
    main()
