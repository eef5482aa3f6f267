"""``thresher report STUDY_DIR``: the study's table (000's Table 2 shape) in Markdown and a self-contained HTML page.

The table has one row per budget x method (plus no pre-training and the whole pool), one column per target
(top-1 mean +/- std over seeds, the best of each column in bold, the fraction of the whole pool's gain over no
pre-training it recovers, n/a where the two are within noise) and a cost column (scoring + pre-training, as 000
counts it; fine-tuning apart). The HTML page adds the plots: accuracy against cost with the Pareto front, the score
distributions of every method, the source classes each selection holds, the pre-training loss curves, and a contact
sheet of each method's top-selected source images.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import atomic, svg
from .data.sources import format_shares
from .errors import ThresherError
from .scoring.table import ScoreTable
from .study import RESULTS, gain_recovered

BASELINES = ("no pre-training", "whole pool")


def load_results(study: str | Path) -> dict:
    f = Path(study) / RESULTS
    if not f.is_file():
        raise ThresherError(f"{study} holds no {RESULTS}; run thresher study first (it resumes where it stopped)")
    try:
        results = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise ThresherError(f"cannot read {f} ({type(exc).__name__}); re-run the same thresher study command") from None
    if not isinstance(results, dict):
        raise ThresherError(f"{f} is not a thresher study result; re-run the same thresher study command")
    return results


def _variant_label(v: dict) -> str:
    return ", ".join(f"{k} {v[k]}" for k in ("resolution", "objective", "schedule") if k in v)


def table_rows(results: dict) -> dict[str, list[dict]]:
    """Per section (variant, and compute level when matched, in that order): rows (arm, budget) with per-target
    cells; no pre-training is in every section."""
    by_section: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
    for r in results["rows"]:
        key = None if r["arm"] == "no pre-training" else (_variant_label(r["variant"]), r.get("compute") or 0.0)
        by_section[key][(r["arm"], r["budget"])][r["target"]] = r
    scratch = by_section.pop(None, {})
    out = {}
    for (variant, compute), rows in sorted(by_section.items()):
        rows = {**scratch, **rows}
        order = sorted(rows, key=lambda k: (k[0] not in BASELINES, BASELINES.index(k[0]) if k[0] in BASELINES else 0,
                                             float(k[1] or 0), k[0] != "random", k[0]))  # fmt: skip
        label = ", ".join(p for p in (variant, f"compute {compute:g} C" if compute else "") if p)
        out[label] = [{"arm": a, "budget": b, "cells": rows[(a, b)]} for a, b in order]
    return out


def metric_name(results: dict, target: str) -> str:
    """What a target's cells measure: top-1, or its protocol's primary metric (macro AUROC, box / mask AP, mIoU)."""
    metric = next((r.get("metric") for r in results["rows"] if r["target"] == target and r.get("metric")), "top1")
    protocol = (results.get("protocols") or {}).get(target, results.get("protocol"))
    if metric == "AP":
        return "mask AP" if protocol == "instance-segmentation" else "box AP"
    return {"top1": "top-1", "auroc_macro": "macro AUROC"}.get(metric, metric)


def _column(results: dict, target: str) -> str:
    name = metric_name(results, target)
    return target if name == "top-1" else f"{target} ({name})"


def _top1_text(top: dict) -> str:
    return f"{100 * top['mean']:.2f}" + (f" ± {100 * top['std']:.2f}" if top.get("std") is not None else "")


def markdown_table(results: dict) -> str:
    targets = results["targets"]
    matched = results.get("compute") is not None
    parts = []
    for vl, rows in table_rows(results).items():
        best = {t: max((r["cells"][t]["top1"]["mean"] for r in rows if t in r["cells"] and r["cells"][t]["top1"]),
                       default=None) for t in targets}  # fmt: skip
        pool_cost = np.mean([r["cells"][t]["cost"]["total"]["flops"] for r in rows if r["arm"] == "whole pool"
                             for t in targets if t in r["cells"]] or [0.0])  # fmt: skip
        cost_cols = ("compute (C): scoring + pre-training | seconds" if matched
                     else "cost (TFLOPs) | cost / whole pool")  # fmt: skip
        head = "| budget | method | " + " | ".join(_column(results, t) for t in targets)
        head += f" | {cost_cols} | evaluation (TFLOPs) |"
        lines = [f"### {vl}" if vl else "", "", head, "|" + "---|" * (len(targets) + 5)]
        for r in rows:
            cells = []
            for t in targets:
                c = r["cells"].get(t)
                if c is None:
                    cells.append("-")
                    continue
                if c.get("over_budget"):
                    cells.append("over budget")
                    continue
                text = _top1_text(c["top1"])
                if best[t] is not None and c["top1"]["mean"] == best[t]:
                    text = f"**{text}**"
                if r["arm"] not in BASELINES:
                    g = _gain(rows, t, c["top1"]["mean"])
                    text += f" ({'n/a' if g is None else f'{100 * g:.0f}%'})"
                cells.append(text)
            present = [r["cells"][t] for t in targets if t in r["cells"]]
            budget = "-" if r["budget"] is None else str(r["budget"])
            ft = np.mean([c["cost"]["finetuning"].get("flops", 0.0) for c in present])
            if matched:
                sc, pre = (
                    np.mean([c["cost"].get("C", {}).get(k, 0.0) for c in present]) for k in ("scoring", "pretraining")
                )
                secs = np.mean([c["cost"]["total"]["seconds"] for c in present])
                cost = f"{sc:.3f} + {pre:.3f} = {sc + pre:.3f} | {secs:,.0f}"
            else:
                flops = np.mean([c["cost"]["total"]["flops"] for c in present])
                cost = f"{flops / 1e12:.2f} | " + (f"{flops / pool_cost:.2f}" if pool_cost else "-")
            lines.append(f"| {budget} | {r['arm']} | " + " | ".join(cells) + f" | {cost} | {ft / 1e12:.2f} |")
        if matched and sum(r["arm"] != "no pre-training" for r in rows) > 1:
            lines += ["", _best_line(vl, rows, targets)]
        parts.append("\n".join(lines))
    cost_text = (
        "Compute: scoring (as if it ran alone) + pre-training, in units of "
        + (results.get("unit") or {}).get("what", "C, one whole-pool pre-training")
        + "; an arm whose scoring spends its level is over budget. Seconds: the same two, measured on this machine"
        if matched
        else "Cost: scoring + pre-training (000), mean over targets"
    )
    legend = (
        f"Top-1 on each target's test split ({results.get('protocol', 'finetune')}; a column naming another metric "
        "reports that one), mean ± std over seeds "
        "(every pre-training x evaluation seed pair one sample), in %; bold: best of the column; in parentheses: "
        "the fraction of the whole pool's gain over no pre-training the row recovers"
        + (" at the same compute" if matched else "")
        + " (n/a: whole pool and no pre-training within twice the standard error of their gap, or one seed). "
        + cost_text
        + "; the evaluation (fine-tuning, or the probe's features, and predictions) apart."
    )
    return "\n\n".join(parts + _shares_table(results)) + "\n\n" + legend + "\n"


def _shares_table(results: dict) -> list[str]:
    """A pool of several sources: each arm's share of every source (what it pre-trains on), per target."""
    rows = [r for r in results["rows"] if r.get("source_shares")]
    if not rows:
        return []
    targets = results["targets"]
    cells: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        cells[_label(r)][r["target"]] = format_shares(r["source_shares"])
    lines = ["### share of each source in what every arm pre-trains on", "",
             "| arm | " + " | ".join(targets) + " |", "|" + "---|" * (len(targets) + 1)]  # fmt: skip
    lines += [f"| {arm} | " + " | ".join(c.get(t, "-") for t in targets) + " |" for arm, c in cells.items()]
    return ["\n".join(lines)]


def _best_line(section: str, rows: list[dict], targets: list[str]) -> str:
    """The best arm of each target in a compute level's section."""
    parts = []
    for t in targets:
        scored = [(r["cells"][t]["top1"]["mean"], r) for r in rows
                  if t in r["cells"] and r["cells"][t]["top1"] and r["arm"] != "no pre-training"]  # fmt: skip
        if scored:
            top, r = max(scored, key=lambda x: x[0])
            parts.append(f"{t}: {_label(r)} ({100 * top:.2f})")
    return f"Best pre-trained arm at {section.split('compute ')[-1]}: " + ("; ".join(parts) or "none")


def _gain(rows: list[dict], target: str, value: float) -> float | None:
    scratch = next((r["cells"][target]["top1"] for r in rows if r["arm"] == "no pre-training"
                    and target in r["cells"]), None)  # fmt: skip
    pool = next((r["cells"][target]["top1"] for r in rows if r["arm"] == "whole pool" and target in r["cells"]), None)
    if scratch is None or pool is None:
        return None
    return gain_recovered(value, scratch, pool)


# --- plots ---------------------------------------------------------------------------------------------------------
def _label(r: dict) -> str:
    return r["arm"] if r["budget"] is None else f"{r['arm']} @ {r['budget']}"


def plots(results: dict, study: Path) -> list[tuple[str, str]]:
    """(caption, svg or <img>) pairs for the HTML page."""
    figs: list[tuple[str, str]] = []
    for t in results["targets"]:
        rows = [r for r in results["rows"] if r["target"] == t and r["top1"]]
        if results.get("compute") is not None:
            figs.append(_compute_plot(t, rows, metric_name(results, t)))
            continue
        pts = [(r["cost"]["total"]["flops"] / 1e12, r["top1"]["mean"], r["arm"]) for r in rows]
        figs.append((f"{t}: accuracy against cost (scoring + pre-training); dashed: the Pareto front",
                     svg.scatter(pts, f"{t}", "cost (TFLOPs)", metric_name(results, t))))  # fmt: skip
    for t in results["targets"]:
        # one figure per selection: under compute matching a selection serves every level (and variant)
        rows = list({r["select_folder"]: r for r in results["rows"] if r["target"] == t and r["score_folder"]}.values())
        if not rows:
            continue
        if not ScoreTable.exists(rows[0]["score_folder"]):
            continue
        scores = ScoreTable.read(rows[0]["score_folder"])
        table, methods, names = scores.table, scores.methods, scores.class_words
        samples = {}
        for m in methods:
            v = table.column(m).to_numpy()
            v = v[np.isfinite(v)]
            if len(v) and v.std() > 0:  # standardised so scorers on different scales share one axis
                samples[m] = ((v - v.mean()) / v.std()).tolist()
        figs.append((f"{t}: distribution of each method's scores over the pool (standardised)",
                     svg.histograms(samples, f"{t}: scores", "standardised score")))  # fmt: skip
        for r in rows:
            cov = _coverage(Path(r["select_folder"]), table, names)
            if cov:
                top_names, shares, covered = cov
                figs.append((f"{t}: source classes selected by {_label(r)} ({covered} classes covered)",
                             svg.bars(top_names, shares, f"{_label(r)}", "share of selection")))  # fmt: skip
            sheet = _top_sheet(Path(r["select_folder"]), study, f"{t}-{r['arm']}-{r['budget']}")
            if sheet:
                figs.append((f"{t}: top-selected source images of {_label(r)}", sheet))
    for t in results["targets"]:
        series = {}
        for r in results["rows"]:
            if r["target"] == t and r["pretrain_folder"]:
                log = Path(r["pretrain_folder"]) / "log.jsonl"
                if log.is_file():
                    ep = [json.loads(x) for x in log.read_text().splitlines()]
                    ep = [e for e in ep if e.get("epoch_end")]
                    series[_label(r)] = ([e["epoch"] + 1 for e in ep], [e["loss"] for e in ep])
        if series:
            figs.append((f"{t}: pre-training loss per epoch", svg.line_chart(series, f"{t}", "epoch", "loss")))
    return figs


def _compute_plot(target: str, rows: list[dict], metric: str = "top-1") -> tuple[str, str]:
    """The target's metric (top-1) against total compute (scoring + pre-training, in C): one line per method and
    budget through its compute levels, error bars of one standard deviation over seeds, the whole pool's line the
    reference to beat."""
    lines: dict[str, list[tuple[float, float, float | None]]] = defaultdict(list)
    several = len({_variant_label(r["variant"]) for r in rows if r["arm"] != "no pre-training"}) > 1
    for r in rows:
        name = "no pre-training" if r["arm"] == "no pre-training" else _label(r)
        if several and r["arm"] != "no pre-training":  # one line per variant too, never a zig-zag across them
            name += f" ({_variant_label(r['variant'])})"
        x = r["cost"].get("C", {}).get("total", 0.0)
        lines[name].append((x, r["top1"]["mean"], r["top1"].get("std")))
    series, errors = {}, {}
    for name, pts in sorted(lines.items(), key=lambda kv: kv[0] != "whole pool"):
        pts.sort()
        series[name] = ([p[0] for p in pts], [p[1] for p in pts])
        errors[name] = [p[2] for p in pts]
    pool = next((name for name in series if name.startswith("whole pool")), None)
    chart = svg.line_chart(series, target, "compute (C): scoring + pre-training", metric, errors=errors,
                           reference=pool)  # fmt: skip
    return (f"{target}: {metric} against compute; black: the whole pool at each compute, the line to beat; bars: one "
            "standard deviation over pre-training and fine-tuning seeds", chart)  # fmt: skip


def _coverage(select_folder: Path, table, names: list | None) -> tuple[list[str], list[float], int] | None:
    """The 15 source classes most present in the selection (share of its draws) and how many it covers."""
    from .data.manifest import Manifest

    if not (select_folder / "manifest.parquet").is_file():
        return None
    m = Manifest.read(select_folder)
    labels = table.column("label").to_numpy()
    pos, _, counts = m.resolve(table.column("id").to_numpy(zero_copy_only=False))
    lab = labels[pos]
    keep = lab >= 0
    if not keep.any():
        return None
    hist = np.bincount(lab[keep], weights=counts[keep])
    order = np.argsort(-hist, kind="stable")[:15]
    names = names or [str(k) for k in range(len(hist))]
    return (
        [str(names[k]) if k < len(names) else str(k) for k in order],
        (hist[order] / hist.sum()).tolist(),
        int((hist > 0).sum()),
    )


def _top_sheet(select_folder: Path, study: Path, tag: str) -> str | None:
    """A contact sheet of the 32 highest-scored selected images, as an embedded PNG."""
    from .data import open_dataset
    from .data.manifest import Manifest
    from .data.summary import contact_sheet

    if not (select_folder / "manifest.parquet").is_file():
        return None
    m = Manifest.read(select_folder)
    source = m.meta.get("source")
    if not source:
        return None
    try:
        ds = open_dataset(source, data_root=m.meta.get("source_data_root"))
    except ThresherError:
        return None
    order = np.argsort(-m.scores, kind="stable") if m.scores is not None else np.arange(len(m.ids))
    pos, _, _ = Manifest(ids=m.ids[order[:32]], weights=m.weights[order[:32]], counts=m.counts[order[:32]]).resolve(
        ds.ids
    )
    out = study / "report-files" / f"sheet-{''.join(c if c.isalnum() else '-' for c in tag)}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(ds, out, indices=pos, count=len(pos), cols=8, cell=48)
    data = base64.b64encode(out.read_bytes()).decode()
    return f'<img alt="{html.escape(tag)}" src="data:image/png;base64,{data}"/>'


# --- the page ---------------------------------------------------------------------------------------------------------
def html_page(results: dict, table_md: str, figs: list[tuple[str, str]]) -> str:
    body = [f"<h1>thresher study: {html.escape(', '.join(results['targets']))}</h1>", md_to_html(table_md)]
    for caption, fig in figs:
        body.append(f"<figure>{fig}<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:inline-block;margin:8px}"
        "figcaption{font-size:12px;max-width:460px}"
    )
    head = f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head>"
    return head + f"<body>{''.join(body)}</body></html>"


def md_to_html(md: str) -> str:
    """The pipe tables, ### headings and paragraphs of a report's markdown as HTML (bold kept)."""
    out, rows = [], []

    def flush():
        if rows:
            head, *rest = rows
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest)
            out.append("</table>")
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            rows.append([_bold(html.escape(c)) for c in cells])
        else:
            flush()
            if line.startswith("### "):
                out.append(f"<h3>{html.escape(line[4:])}</h3>")
            elif line.strip():
                out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def _bold(text: str) -> str:
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def write_report(study: str | Path, log=print) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the study folder."""
    study = Path(study)
    results = load_results(study)
    table_md = markdown_table(results)
    md = f"# thresher study: {', '.join(results['targets'])}\n\n{table_md}"
    atomic.write_text(study / "report.md", md)
    page = html_page(results, table_md, plots(results, study))
    atomic.write_text(study / "report.html", page)
    log(f"wrote {study / 'report.md'} and {study / 'report.html'}")
    return study / "report.md", study / "report.html"
