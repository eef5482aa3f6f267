"""Task-aware source search (001 section 3): which candidate source is worth pre-training on, for this target?

Each candidate dataset gets a short pre-training from the base checkpoint (001's HPT step), then a linear probe on the
target; candidates that already are checkpoints are probed as they are. The base itself is always a row (no source
pre-training). Candidates are ranked on validation data, as 001 selects: the probe trains on part of the target's
training split and is scored on a per-class split carved from the rest; only once the ranking is fixed is each
candidate's probe evaluated on the test split, reported beside it. ``proxy: logme`` ranks by LogME on the target's
training features instead of the probe (no probe training; candidates given as checkpoints then need no training at
all); ``both`` puts the two rankings side by side with their Spearman correlation. ``ranking.json`` and
``ranking.md`` hold the table with the cost of each candidate's pre-training and probe.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import atomic
from ..config import DataConfig, RuntimeConfig, Section, build_config, runtime
from ..data.loader import open_data
from ..errors import ThresherError
from ..models.checkpoint import checkpoint_backbone, checkpoint_path, resolve_checkpoint
from ..runs import RunFolder, file_digest
from ..train.config import TrainConfig
from ..workspace import Workspace
from . import metrics as M
from .config import EvalConfig
from .logme import logme
from .run import evaluate, validation_metric

RANKING = "ranking.json"


class SearchConfig(Section):
    """``thresher search-source``: candidates, the base they start from, the target, how to rank them."""

    base: str | None = runtime(None, description="base checkpoint every candidate starts from (fingerprinted)")
    backbone: str | None = Field(None, description="backbone (default: the one the base checkpoint records)")
    candidates: list[str] = Field(min_length=1, description="dataset specs (pre-trained briefly) or checkpoints")
    train: DataConfig
    test: DataConfig
    proxy: Literal["none", "logme", "both"] = Field("none", description="none: linear probe; logme; both")
    pretrain: dict[str, Any] = Field(
        default_factory=lambda: {"objective": "moco", "epochs": 2},
        description="training-config keys of each candidate's short pre-training (001: a short MoCo run)",
    )
    resolution: int = Field(32, ge=8, le=1024)
    seeds: int = Field(1, ge=1, description="linear-probe repeats per candidate")
    runtime: RuntimeConfig = RuntimeConfig()


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "candidate"


def search_source(cfg: SearchConfig, out: str | Path, *, force: bool = False, log=print) -> dict:
    """Pre-train (briefly) from the base on every candidate, score each on the target; write ``ranking.json``."""
    base = resolve_checkpoint(cfg.base) if cfg.base else None
    backbone = cfg.backbone or (checkpoint_backbone(base) if base else None)
    if not backbone:
        raise ThresherError("give --base CHECKPOINT or --backbone NAME")
    inputs = {"base_sha256": file_digest(base)} if base else {}
    with RunFolder(out, "search-source", cfg, force=force, inputs=inputs) as run:
        rows = [{"candidate": "(base, no source)", "checkpoint": str(base) if base else None, "pretraining": None}]
        for k, cand in enumerate(cfg.candidates):
            folder = run.path / f"{k + 1:02d}-{_slug(cand)}"
            as_file = Path(cand)
            if as_file.is_file() or checkpoint_path(as_file).is_file():  # a ready checkpoint
                rows.append({"candidate": cand, "checkpoint": str(resolve_checkpoint(cand)), "pretraining": None})
                continue
            values = {
                "data": {"spec": cand, "data_root": cfg.train.data_root},
                "backbone": backbone,
                "init": str(base) if base else None,
                "resolution": cfg.resolution,
                "runtime": cfg.runtime.model_dump(),
                **cfg.pretrain,
            }
            try:
                tcfg = build_config(TrainConfig, values=values)
            except ThresherError as exc:
                raise ThresherError(f"candidate {cand}: {exc}") from None
            from ..pretrain.run import pretrain  # candidates are pre-trained (001's HPT step); probing needs none of it

            log(f"candidate {k + 1}/{len(cfg.candidates)}: {tcfg.objective} on {cand} from the base -> {folder}")
            summary = pretrain(tcfg, folder / "pretrain", log=log)
            rows.append({"candidate": cand, "checkpoint": str(checkpoint_path(folder / "pretrain")),
                         "pretraining": summary["cost"]})  # fmt: skip
        if base is None:  # no base: the first row is the random-init backbone (no pre-training at all)
            rows[0]["candidate"] = "(random init, no pre-training)"
        train_ds, train_idx = open_data(cfg.train)
        # one workspace for every candidate: probe features, LogME features and the reported test evaluations
        ws = Workspace(run.path / "workspace", runtime=cfg.runtime, log=log)
        probes: dict[int, EvalConfig] = {}
        for k, row in enumerate(rows):
            ckpt = row["checkpoint"]
            if cfg.proxy in ("none", "both"):
                # 001 chooses the source on validation data: the probe is scored on a split carved from the target's
                # training split; the test split is predicted only once the ranking is fixed
                probes[k] = EvalConfig(
                    checkpoint=ckpt, backbone=backbone, random_init=ckpt is None, train=cfg.train, test=cfg.test,
                    protocol="linear", seeds=cfg.seeds, resolution=cfg.resolution, runtime=cfg.runtime,
                    cache=str(ws.root),
                )  # fmt: skip
                val = validation_metric(probes[k], log=log)
                row["validation"], row["validation_cost"] = M.summarize(val["values"]), val["cost"]
            if cfg.proxy in ("logme", "both"):  # the probe's own features: the readable, labeled training images
                dec, at, ok = ws.decoded(train_ds, train_idx, cfg.resolution)
                labeled = at[ok][dec.labels[at[ok]] >= 0]
                store = ws.embeddings(dec, labeled, backbone=backbone, checkpoint=ckpt,
                                      resolution=cfg.resolution).value  # fmt: skip
                row["logme"] = logme(np.asarray(store), dec.labels[labeled])
        key = "validation" if cfg.proxy in ("none", "both") else "logme"
        value = (lambda r: r["validation"]["mean"]) if key == "validation" else (lambda r: r["logme"])
        order = sorted(range(len(rows)), key=lambda i: value(rows[i]), reverse=True)
        ranked = [rows[i] for i in order]
        for i, r in enumerate(ranked):
            r["rank"] = i + 1
        # the ranking is fixed: only now is the test split predicted, to report what each candidate buys
        for i, r in zip(order, ranked, strict=True):
            if i in probes:
                doc = evaluate(probes[i], run.path / f"eval-{i:02d}", log=log)
                r["test"] = doc["summary"][doc["primary"]]  # macro AUROC for a multi-label target
                r["probe_cost"] = doc["cost"]["evaluation"]
        result = {
            "ranked_by": "linear-probe validation score" if key == "validation" else "LogME",
            "validation": "a per-class split carved from the target's training split (the probe trains on the rest)",
            "rows": ranked,
        }
        if cfg.proxy == "both":
            result["spearman_logme_vs_validation"] = _spearman(
                [r["logme"] for r in ranked], [r["validation"]["mean"] for r in ranked]
            )
        atomic.write_json(run.file(RANKING), result)
        atomic.write_text(run.file("ranking.md"), ranking_table(result))
        return result


def ranking_table(result: dict) -> str:
    """The ranking as a Markdown table: the validation score it was ranked by, LogME, the test score reported after
    the ranking, and what pre-training and probing cost."""

    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    def summary(s):
        return "-" if not s else f"{s['mean']:.4f}" + (f" +/- {s['std']:.4f}" if s.get("std") else "")

    lines = [
        f"Ranked by {result['ranked_by']}; the test column was computed after the ranking and did not choose it.",
        "",
        "| rank | candidate | validation | LogME | test | pre-training images | pre-training FLOPs | pre-training s "
        "| probe s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        pt = r.get("pretraining") or {}
        probe = r.get("probe_cost") or {}
        lines.append(
            f"| {r['rank']} | {r['candidate']} | {summary(r.get('validation'))} | {num(r.get('logme'), '.4f')} "
            f"| {summary(r.get('test'))} | {num(pt.get('images'), ',')} | {num(pt.get('flops'), '.3g')} "
            f"| {num(pt.get('seconds'), '.1f')} | {num(probe.get('seconds'), '.1f')} |"
        )
    if result.get("spearman_logme_vs_validation") is not None:
        lines += ["", f"Spearman rank correlation of LogME and the validation score: "
                  f"{result['spearman_logme_vs_validation']:.3f}"]  # fmt: skip
    return "\n".join(lines) + "\n"
