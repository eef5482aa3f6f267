"""Task-aware source search (001 section 3): which candidate source is worth pre-training on, for this target?

Each candidate dataset gets a short pre-training from the base checkpoint (001's HPT step), then a linear probe on the
target; candidates that already are checkpoints are probed as they are. The base itself is always a row (no source
pre-training). ``proxy: logme`` ranks by LogME on the target's training features instead of the probe (no probe
training, no test predictions; candidates given as checkpoints then need no training at all); ``both`` puts the two
rankings side by side with their Spearman correlation. ``ranking.json`` and ``ranking.md`` hold the table with the
cost of each candidate's pre-training and probe.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import atomic
from ..config import DataConfig, RuntimeConfig, Section, build_config, runtime
from ..data.loader import open_data
from ..embed import EmbedConfig, embed_dataset
from ..errors import ThresherError
from ..models.checkpoint import checkpoint_backbone
from ..pretrain.config import TrainConfig
from ..pretrain.run import pretrain
from ..runs import RunFolder, file_digest
from .config import EvalConfig
from .logme import logme
from .run import evaluate, resolve_checkpoint

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
            if as_file.is_file() or (as_file / "checkpoint.pt").is_file():  # a ready checkpoint
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
            log(f"candidate {k + 1}/{len(cfg.candidates)}: {tcfg.objective} on {cand} from the base -> {folder}")
            summary = pretrain(tcfg, folder / "pretrain", log=log)
            rows.append({"candidate": cand, "checkpoint": str(folder / "pretrain" / "checkpoint.pt"),
                         "pretraining": summary["cost"]})  # fmt: skip
        if base is None:  # no base: the first row is the random-init backbone (no pre-training at all)
            rows[0]["candidate"] = "(random init, no pre-training)"
        train_ds, train_idx = open_data(cfg.train)
        for k, row in enumerate(rows):
            folder = run.path / f"eval-{k:02d}"
            ckpt = row["checkpoint"]
            if cfg.proxy in ("none", "both"):
                ecfg = EvalConfig(
                    checkpoint=ckpt, backbone=backbone, random_init=ckpt is None, train=cfg.train, test=cfg.test,
                    protocol="linear", seeds=cfg.seeds, resolution=cfg.resolution, runtime=cfg.runtime,
                )  # fmt: skip
                doc = evaluate(ecfg, folder, log=log)
                row["top1"] = doc["summary"][doc["primary"]]  # macro AUROC for a multi-label target
                row["probe_cost"] = doc["cost"]["evaluation"]
            if cfg.proxy in ("logme", "both"):
                ecfg = EmbedConfig(data=cfg.train, backbone=backbone, checkpoint=ckpt, resolution=cfg.resolution,
                                   runtime=cfg.runtime)  # fmt: skip
                labeled = train_idx[train_ds.labels[train_idx] >= 0]
                store = embed_dataset(train_ds, labeled, ecfg, folder / "logme-features", log=log)
                row["logme"] = logme(np.asarray(store), train_ds.labels[labeled])
        key = "top1" if cfg.proxy in ("none", "both") else "logme"
        value = (lambda r: r["top1"]["mean"]) if key == "top1" else (lambda r: r["logme"])
        ranked = sorted(rows, key=value, reverse=True)
        for i, r in enumerate(ranked):
            r["rank"] = i + 1
        result = {"ranked_by": "linear-probe top-1" if key == "top1" else "LogME", "rows": ranked}
        if cfg.proxy == "both":
            result["spearman_logme_vs_top1"] = _spearman(
                [r["logme"] for r in ranked], [r["top1"]["mean"] for r in ranked]
            )
        atomic.write_json(run.file(RANKING), json.loads(json.dumps(result, default=float)))
        atomic.write_text(run.file("ranking.md"), ranking_table(result))
        return result


def ranking_table(result: dict) -> str:
    """The ranking as a Markdown table: accuracy (mean +/- std), LogME, and what pre-training and probing cost."""

    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    lines = [
        f"Ranked by {result['ranked_by']}.",
        "",
        "| rank | candidate | linear top-1 | LogME | pre-training images | pre-training FLOPs | pre-training s "
        "| probe s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        top1 = r.get("top1")
        acc = "-" if not top1 else f"{top1['mean']:.4f}" + (f" +/- {top1['std']:.4f}" if top1.get("std") else "")
        pt = r.get("pretraining") or {}
        probe = r.get("probe_cost") or {}
        lines.append(
            f"| {r['rank']} | {r['candidate']} | {acc} | {num(r.get('logme'), '.4f')} | {num(pt.get('images'), ',')} "
            f"| {num(pt.get('flops'), '.3g')} | {num(pt.get('seconds'), '.1f')} | {num(probe.get('seconds'), '.1f')} |"
        )
    if result.get("spearman_logme_vs_top1") is not None:
        lines += ["", f"Spearman rank correlation of LogME and top-1: {result['spearman_logme_vs_top1']:.3f}"]
    return "\n".join(lines) + "\n"
