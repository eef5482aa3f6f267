"""``thresher select`` and ``thresher inspect``: scores -> a Manifest in a run folder, and a look at what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from .config import Section
from .data.manifest import Manifest, file_sha256
from .data.sources import format_shares, source_shares
from .errors import ThresherError
from .runs import RunFolder, read_run_config
from .scoring.table import ScoreTable, describe_cost
from .selection import SELECTORS, parse_budget, select

#: modes that pick a fixed set (hand-picked classes, a given manifest): no score column, budget optional
FIXED_SET_MODES = ("classes", "given")


class SelectConfig(Section):
    """Which scores, which method's column, how much and how (000 top-k; 004 weighted / elastic; class lists)."""

    scores: str = Field(description="scores.parquet, or the thresher score run folder holding it")
    method: str | None = Field(None, description="score column (not needed for mode classes)")
    budget: float | int | str | None = Field(None, description="fraction of the pool (0.1) or a count (3000)")
    mode: str = Field("top", description="top, weighted, elastic or classes")
    params: dict[str, Any] = Field(default_factory=dict, description="mode parameters, e.g. transform: rank")
    seed: int = 0
    include_near_duplicates: bool = Field(False, description="allow near-duplicates of target images")

    @field_validator("mode")
    @classmethod
    def _known(cls, v: str) -> str:
        try:
            SELECTORS.get(v)
        except ThresherError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("budget")
    @classmethod
    def _budget(cls, v):
        if v is not None:
            try:
                parse_budget(v)
            except ThresherError as exc:
                raise ValueError(str(exc)) from None
        return v


def run_select(cfg: SelectConfig, out: str | Path, *, force: bool = False, log=print) -> Manifest:
    """Select from a score table into ``out`` (manifest.parquet + manifest.json); re-running is a no-op."""
    scores_table = ScoreTable.read(cfg.scores)
    path, table, report = scores_table.path, scores_table.table, scores_table.report
    methods = scores_table.methods
    fixed = cfg.mode in FIXED_SET_MODES
    if not fixed and cfg.method is None:
        raise ThresherError(f"name the score column with --method (available: {', '.join(methods)})")
    if cfg.method is not None and cfg.method not in methods:
        raise ThresherError(f"{path} has no scores of method {cfg.method!r} (available: {', '.join(methods)})")
    if not fixed and cfg.budget is None:
        raise ThresherError("give a --budget: a fraction of the pool (0.1) or a count (3000)")
    inputs = {"scores_sha256": file_sha256(path)}
    if cfg.mode == "given" and cfg.params.get("manifest"):  # an edited fixed set is a new selection, not a resume
        inputs["manifest_sha256"] = file_sha256(Manifest.parquet_of(cfg.params["manifest"]))
    with RunFolder(out, "select", cfg, force=force, inputs=inputs) as run:
        # the manifest's two files are written in turn: a run killed between them is redone, not read half-written
        if (run.path / "manifest.parquet").is_file() and (run.path / "manifest.json").is_file():
            log(f"{run.path}: already complete, nothing to do")
            return Manifest.read(run.path)
        labels = table.column("label").to_numpy()
        ids = table.column("id").to_numpy(zero_copy_only=False)
        scores = table.column(cfg.method).to_numpy() if cfg.method else None
        dup = table.column("near_duplicate").to_numpy() if "near_duplicate" in table.column_names else None
        excluding = (
            report.get("near_duplicates", {}).get("excluded_by_default", True) and not cfg.include_near_duplicates
        )
        exclude = dup if (dup is not None and excluding) else None
        if "unreadable" in table.column_names:  # images that could not be read are never selected
            bad = table.column("unreadable").to_numpy()
            exclude = bad if exclude is None else (exclude | bad)
        sel = select(
            scores,
            budget=cfg.budget,
            mode=cfg.mode,
            labels=labels,
            seed=cfg.seed,
            exclude=exclude,
            class_names=report.get("classes"),
            ids=ids,
            **cfg.params,
        )
        score_run = path.parent / "config.yaml"
        score_fp = read_run_config(path.parent)["thresher"]["fingerprint"] if score_run.is_file() else None
        meta = {
            "source": report.get("source"),
            "source_data_root": report.get("source_data_root"),
            "target": report.get("target"),
            "method": cfg.method,
            "scorer_params": report.get("reports", {}).get(cfg.method, {}).get("params") if cfg.method else None,
            "scoring_cost": scores_table.paid(cfg.method) if cfg.method else None,
            "source_shares": None,  # filled below for a pool of several sources
            "scores_path": str(path.resolve()),
            "score_run_fingerprint": score_fp,
            "inputs": inputs,
        }
        if report.get("sources"):  # each source's share of the selection's draws
            meta["source_shares"] = source_shares(ids[sel.positions], sel.counts)
        manifest = sel.to_manifest(ids, labels, scores, meta)
        manifest.write(run.path)
        n_excl = int(exclude.sum()) if exclude is not None else 0
        log(
            f"selected {manifest.n_unique} unique examples ({manifest.total_count} draws) of {len(labels)} "
            f"by {cfg.mode} on {cfg.method or cfg.mode}" + (f"; {n_excl} near-duplicates excluded" if n_excl else "")
        )
        if cfg.method:
            log(f"scoring with {cfg.method} cost {describe_cost(meta['scoring_cost'])}")
        if meta["source_shares"]:
            log(f"share of each source: {format_shares(meta['source_shares'])}")
        return manifest


def inspect_selection(folder: str | Path, *, log=print, sheet_count: int = 32) -> dict:
    """Class histogram of a selection against its pool, and contact sheets of the top and bottom examples."""
    from .data import open_dataset
    from .data.summary import contact_sheet

    folder = Path(folder)
    manifest = Manifest.read(folder)
    path = Path(manifest.meta.get("scores_path", ""))
    if not path.is_file():
        raise ThresherError(f"{folder}: the scores it was selected from ({path}) are gone; cannot compare to the pool")
    scores_table = ScoreTable.read(path)
    table, report = scores_table.table, scores_table.report
    want = manifest.meta.get("inputs", {}).get("scores_sha256")
    if want and file_sha256(path) != want:
        raise ThresherError(f"{path} changed since {folder} was selected from it; re-run thresher select")
    labels = table.column("label").to_numpy()
    names = scores_table.class_words or [str(k) for k in range(int(labels.max()) + 1)]
    pos, _, counts = manifest.resolve(table.column("id").to_numpy(zero_copy_only=False))
    n_cls = max(len(names), int(labels.max()) + 1)
    pool_hist = np.bincount(labels[labels >= 0], minlength=n_cls).astype(float)
    sel_lab = labels[pos]
    sel_hist = np.bincount(sel_lab[sel_lab >= 0], weights=counts[sel_lab >= 0], minlength=n_cls)
    pool_share, sel_share = pool_hist / max(1, pool_hist.sum()), sel_hist / max(1, sel_hist.sum())
    order = np.argsort(-sel_share, kind="stable")
    log(
        f"{folder}: {manifest.n_unique} unique examples, {manifest.total_count} draws, "
        f"{int((sel_hist > 0).sum())} of {int((pool_hist > 0).sum())} classes covered"
    )
    log(f"  {'class':<32} {'selected':>9} {'pool':>7} {'enrichment':>10}")
    for k in order[:15]:
        enrich = sel_share[k] / pool_share[k] if pool_share[k] else float("inf")
        log(f"  {str(names[k])[:32]:<32} {sel_share[k]:>8.1%} {pool_share[k]:>7.1%} {enrich:>9.2f}x")
    paid = manifest.meta.get("scoring_cost")
    if paid:
        log(f"  scoring cost: {describe_cost(paid)}")
    shares = manifest.meta.get("source_shares")
    if shares:
        pool = source_shares(table.column("id").to_numpy(zero_copy_only=False))
        log(f"  share of each source: {format_shares(shares)} (pool: {format_shares(pool)})")
    out = {
        "scoring_cost": paid,
        "source_shares": shares,
        "classes_covered": int((sel_hist > 0).sum()),
        "selected_share": sel_share.tolist(),
        "pool_share": pool_share.tolist(),
    }
    method = manifest.meta.get("method")
    source = manifest.meta.get("source")
    if method and source:
        ds = open_dataset(source, data_root=report.get("source_data_root"))
        s = table.column(method).to_numpy().astype(np.float64)
        if manifest.meta.get("selection", {}).get("excluded") and "near_duplicate" in table.column_names:
            s = np.where(table.column("near_duplicate").to_numpy(), -np.inf, s)  # rank what selection could pick
        s = np.where(np.isnan(s), -np.inf, s)  # unreadable images
        rank = np.argsort(-s, kind="stable")
        rank = rank[np.isfinite(s[rank])]  # excluded rows are in neither sheet
        index = table.column("index").to_numpy()
        for which, rows in (("top", rank[:sheet_count]), ("bottom", rank[::-1][:sheet_count])):
            f = contact_sheet(ds, folder / f"{which}.png", indices=index[rows])
            log(f"  {which} {len(rows)} by {method}: {f}")
            out[f"{which}_sheet"] = str(f)
    return out
