"""The plan's answer as a reader sees it (issue 19): ``plan.md`` and a self-contained ``plan.html`` (its curves)."""

from __future__ import annotations

import html
import math
import shlex
from pathlib import Path

import numpy as np

from .. import atomic, svg
from ..report import md_to_html
from .config import PlanConfig
from .curves import Curve

#: how many points draw a fitted curve (log-spaced from the first pilot level to the recommended run's compute)
CURVE_POINTS = 40


def _pm(p: dict) -> str:
    return f"{p['mean']:.3f} ({p['low']:.3f}-{p['high']:.3f})"


def _data_flags(flag: str, d: dict) -> list[str]:
    out = [f"--{flag}", d["spec"]]
    if d.get("subset"):
        out += ["--set", f"{flag}.subset={d['subset']}"]
        if d.get("subset_seed"):
            out += ["--set", f"{flag}.subset_seed={d['subset_seed']}"]
    return out


def commands(folder: Path, doc: dict, cfg: PlanConfig) -> list[str]:
    """The exact commands that carry the plan out: the recommended pre-training (the plan's own config file, reading
    the selection the plan made), its linear probe on the target, and the plan's own check."""
    rec = doc["final"]["recommended"]
    run = f"runs/plan-{Path(folder).name}"
    evaluate = [
        "thresher",
        "evaluate",
        "--checkpoint",
        f"{run}/pretrain",
        *_data_flags("train", cfg.target.model_dump()),
    ]
    if cfg.target_test is not None:
        evaluate += _data_flags("test", cfg.target_test.model_dump())
    else:
        evaluate += ["--test", "TARGET_TEST_SPEC"]
    evaluate += ["--protocol", "linear", "--resolution", str(max(cfg.resolutions)), "--out", f"{run}/evaluate"]
    if cfg.target.data_root:
        evaluate += ["--data-root", cfg.target.data_root]
    return [
        shlex.join(["thresher", "pretrain", "--config", rec["config"], "--out", f"{run}/pretrain"]),
        shlex.join(evaluate),
        shlex.join(["thresher", "plan", str(folder), "--check"]),
    ]


def markdown(folder: Path, doc: dict, cfg: PlanConfig, check: dict | None = None) -> str:
    rows = doc["candidates"]
    rec, whole = rows[doc["recommended"]], doc["whole_pool_at_budget"]
    f = doc["final"]["recommended"]
    left, b = doc["left_C"], doc["budget"]["C"]
    lines = [f"# thresher plan: {cfg.target.spec} from {cfg.source.spec}, budget {doc['budget']['given']} "
             f"({b:.3g} C)", ""]  # fmt: skip
    what = "the whole pool" if rec["candidate"]["method"] == "whole pool" else (
        f"the {f['subset_size']:,} images {rec['candidate']['method']} selects ({rec['candidate']['fraction']:.0%} "
        "of the pool)")  # fmt: skip
    lines += [
        f"**Recommended: {doc['recommended']}.** Pre-train on {what} for {f['images']:,} images ({f['epochs']:.1f} "
        f"epochs of it; batch {f['batch_size']}, lr {f.get('lr', cfg.lr):g}, {cfg.objective}, "
        f"{rec['candidate']['resolution']} px): "
        f"the {left:.3g} C the plan leaves of the budget. Predicted validation top-1 (linear probe) "
        f"{_pm(rec['prediction'])}, a 90% interval: {doc['extrapolation']:.0f}x the compute of the largest pilot, so "
        "the fitted curve's form carries the prediction (its interval holds the pilots' seed noise and how far the "
        "curve missed the largest pilot level when fitted without it, times the level ratios it is extrapolated).",
        "",
        f"**The whole pool with the whole budget** ({b:.3g} C, no planning): predicted {_pm(whole)}.",
    ]
    if doc["runner_up"]:
        lines += ["", f"**Runner-up:** {doc['runner_up']}, predicted {_pm(rows[doc['runner_up']]['prediction'])}."]
    if not doc["told_apart"]:
        lines += ["", f"**The pilots cannot tell these apart** (their intervals overlap the leader's, "
                  f"{doc['leader']}): {', '.join(doc['indistinguishable'])}; recommended is the one of them with the "
                  "lowest total cost (its scoring, as if run alone, plus the pre-training)."]  # fmt: skip
    o = doc["overhead"]
    unit = doc["unit"]["flops"]
    parts = ", ".join(f"{k} {v['flops'] / unit:.3g} C ({v['seconds']:.0f} s)" for k, v in o.items())
    lines += [
        "",
        f"**What planning cost:** {parts}: {doc['spent_C']:.3g} C, {doc['share_spent']:.0%} of the budget (allowed "
        f"{doc['share_allowed']:.0%}). Without pre-training the probe gives {doc['no_pretraining']:.3f}. "
        f"C: {doc['unit']['what']}.",
        "",
        "### Candidates at the budget",
        "",
        f"| candidate | scoring (C, alone) | fitted curve a - b C^-alpha | predicted at {left:.3g} C | seed part | "
        "held-out-level part (x ratios) | total cost (C) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["prediction"]["mean"]):
        c, p = r["curve"], r["prediction"]
        bold = "**" if name == doc["recommended"] else ""
        curve = f"{c['a']:.3f} - {c['b']:.3g} C^-{c['alpha']:.2f}"
        lines.append(f"| {bold}{name}{bold} | {r['scoring_C']:.3f} | {curve} | {_pm(p)} | {p['seed_halfwidth']:.3f} "
                     f"| {p['holdout_error']:.3f} (x {p['holdout_steps']:.1f}) | {r['total_C']:.3g} |")  # fmt: skip
    lines += ["", "### Pilots (validation top-1, mean over seeds)", "",
              "| candidate | " + " | ".join(f"{c:.3g} C" for c in doc["levels_C"]) + " |",
              "|---|" + "---|" * len(doc["levels_C"])]  # fmt: skip
    for name in rows:
        cells = []
        for level in doc["levels_C"]:
            acc = [p["accuracy"] for p in doc["pilots"] if p["candidate"] == name and p["level"] == level]
            cells.append(f"{np.mean(acc):.3f} ± {np.std(acc):.3f}" if acc else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "### Commands", "", "```", *commands(folder, doc, cfg), "```", ""]
    if check:
        lines += ["### Check: predicted against measured", "",
                  f"The runs at the full budget, measured as the pilots were (validation top-1) and on {check['test']} "
                  "(test top-1, the only time the plan reads it).", "",
                  "| run | predicted | measured | in interval | test top-1 | total compute (C) | within budget |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for role, r in check["rows"].items():
            lines.append(f"| {role.replace('_', ' ')}: {r['candidate']} | {_pm(r['predicted'])} | {r['measured']:.3f} "
                         f"| {'yes' if r['in_interval'] else 'no'} | {r['test_top1']:.3f} | {r['total_C']:.3g} | "
                         f"{'yes' if r['within_budget'] else 'no'} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def curves_figure(doc: dict) -> str:
    """Pilots (mean and one standard deviation over seeds) and each fitted curve up to the recommended run's compute,
    against log10 of compute in C."""
    series, marks = {}, {}
    lo = math.log10(min(doc["levels_C"]))
    hi = math.log10(max(doc["left_C"], doc["budget"]["C"]))
    xs = np.linspace(lo, hi, CURVE_POINTS)
    several = len({r["candidate"]["resolution"] for r in doc["candidates"].values()}) > 1
    for name, r in doc["candidates"].items():
        label = name if several else name.rsplit(",", 1)[0]
        curve = Curve(**r["curve"])
        series[label] = (list(xs), [float(curve.predict(10**x)) for x in xs])
        mine = [p for p in doc["pilots"] if p["candidate"] == name]
        levels = sorted({p["compute_C"] for p in mine})
        acc = [[p["accuracy"] for p in mine if p["compute_C"] == c] for c in levels]
        marks[label] = ([math.log10(c) for c in levels], [float(np.mean(a)) for a in acc],
                        [float(np.std(a)) or None for a in acc])  # fmt: skip
    whole = next((k for k in series if k.startswith("whole pool")), None)
    return svg.line_chart(series, "accuracy against pre-training compute", "log10 compute (C)", "validation top-1",
                          reference=whole, marks=marks)  # fmt: skip


def write_plan(folder: Path, doc: dict, cfg: PlanConfig, *, check: dict | None = None, log=print) -> None:
    """``plan.md`` and ``plan.html`` in the plan's folder (the check's table too, once it ran)."""
    md = markdown(folder, doc, cfg, check)
    atomic.write_text(folder / "plan.md", md)
    caption = ("points: the pilots (one standard deviation over seeds); lines: the fitted curves, extrapolated to the "
               "budget; black: the whole pool")  # fmt: skip
    body = [f"<h1>{html.escape(md.splitlines()[0].lstrip('# '))}</h1>", md_to_html("\n".join(md.splitlines()[1:])),
            f"<figure>{curves_figure(doc)}<figcaption>{html.escape(caption)}</figcaption></figure>"]  # fmt: skip
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}")  # fmt: skip
    page = f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{''.join(body)}"
    atomic.write_text(folder / "plan.html", page + "</body></html>")
    log(f"wrote {folder / 'plan.md'} and {folder / 'plan.html'}")
