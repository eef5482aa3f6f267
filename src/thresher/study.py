"""Studies: the whole comparison in one command (000's Table 2 is the shape of the answer).

A study config names a source pool, targets, scorers, budgets, resolutions, objectives, schedules, the evaluation
protocol and seeds. It expands to a plan of stages: pre-training on the whole pool, scoring the pool against each
target, selecting at every budget, pre-training on every selection, evaluating every arm on its target. Baselines are
always in: no pre-training, the whole pool, and a random subset at every budget. Every subset is pre-trained for the
same number of epochs as the whole pool (000's protocol, so cost scales with size); ``schedule_per_arm: same-steps``
gives every subset the whole pool's number of optimizer steps instead (a step budget).

Every stage is a normal thresher run in ``OUT/stages/<kind>-<key>``, its key a hash of its settings and of the keys
of the stages it reads, so a stage is computed once and serves every arm that needs it, and a killed study resumes
stage by stage. ``plan`` (``--dry-run``) lists the stages with their estimated cost before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from . import atomic
from .config import DataConfig, RuntimeConfig, Section, build_config, merge, partial_section
from .data.loader import open_data
from .errors import ThresherError
from .evaluate.config import EvalConfig
from .models.checkpoint import checkpoint_path, training_cost
from .registry import Registry
from .runs import RunFolder
from .scoring.pipeline import ScoreConfig
from .scoring.table import ScoreTable
from .train.config import TrainConfig

RESULTS = "results.json"
WORKSPACE = "workspace"  # under OUT/stages: the derived artefacts every score and evaluate stage of the study shares


class StudyTarget(Section):
    """One target task: its name (a table column), training and test splits."""

    name: str
    train: DataConfig
    test: DataConfig


#: the training-config keys a study leaves to its file (the rest it sets per arm: data, resolution, objective, ...)
StudyTrainExtra = partial_section(
    TrainConfig,
    "StudyTrainExtra",
    exclude={"data", "backbone", "init", "manifest", "resolution", "objective", "schedule", "epochs", "steps", "images",
             "batch_size", "seed", "runtime"},
    doc="Further training-config keys for every arm (optim, lr_schedule, objective_params, schedule_params, ...).",
)  # fmt: skip

#: the score-config keys of a study (source, target, methods, seed and the source model are the study's)
StudyScore = partial_section(
    ScoreConfig,
    "StudyScore",
    exclude={"source", "target", "target_test", "methods", "seed", "runtime", "cache", "source_model", "reference"},
    doc="Score settings of every target's score run (models, params, near_duplicates, ...).",
)

#: the evaluate-config keys of a study (the model, splits, resolution and seed are the study's); a study fine-tunes
#: three seeds unless told otherwise
StudyEvaluation = partial_section(
    EvalConfig,
    "StudyEvaluation",
    exclude={"checkpoint", "backbone", "random_init", "train", "test", "resolution", "seed", "runtime", "cache"},
    defaults={"protocol": "finetune", "seeds": 3},
    doc="Evaluation of every arm (protocol, seeds, finetune, linear, shots, ...).",
)


class StudyPretrain(Section):
    """How every arm is pre-trained (the whole pool and every subset alike)."""

    backbone: str = "small-cnn"
    epochs: int = Field(8, ge=1, description="epochs of the whole pool; subsets get the same (000) by default")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(0.1, gt=0)
    schedule_per_arm: Literal["same-epochs", "same-steps"] = Field(
        "same-epochs",
        description="same-epochs: every subset gets the whole pool's epochs (000, so cost scales with size); "
        "same-steps: every subset gets the whole pool's optimizer steps (a step budget, cut mid-epoch)",
    )

    #: keys of older study files, and what to write instead (``config._check_unknown`` says so)
    __replaced_keys__ = {"equal_steps": "write schedule_per_arm: same-steps (or same-epochs, the default)"}
    extra: StudyTrainExtra = Field(
        default_factory=StudyTrainExtra, description="further training-config keys (optim, lr_schedule, ...)"
    )


class StudyConfig(Section):
    """``thresher study``: the grid of a comparison, its baselines always included."""

    source: DataConfig
    targets: list[StudyTarget] = Field(min_length=1)
    methods: list[str] = Field(min_length=1, description="scorers compared with random (which is always in)")
    budgets: list[float | int] = Field(min_length=1, description="fractions of the pool (0.1) or counts (3000)")
    selection_mode: str = Field("top", description="selection mode for every method")
    resolutions: list[int] = Field(default_factory=lambda: [32], min_length=1, description="pre-training resolutions")
    evaluation_resolution: int | None = Field(
        None, ge=8, le=1024, description="every arm is evaluated at this resolution (default: the largest)"
    )
    objectives: list[str] = Field(default_factory=lambda: ["supervised"], min_length=1)
    schedules: list[str] = Field(default_factory=lambda: ["full"], min_length=1)
    pretrain: StudyPretrain = StudyPretrain()
    score: StudyScore = Field(default_factory=StudyScore, description="score-config keys (params, models, ...)")
    evaluation: StudyEvaluation = Field(
        default_factory=StudyEvaluation, description="evaluate-config keys (protocol, seeds, finetune, ...)"
    )
    reuse_pool_model: bool = Field(
        True, description="the whole pool's supervised model is the scorers' source model (importance, kNN, ...)"
    )
    seed: int = 0
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        from .scoring import SCORERS

        SCORERS.validate(v)
        return [m for m in dict.fromkeys(v) if m != "random"]

    @model_validator(mode="after")
    def _names(self) -> StudyConfig:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("two targets have the same name")
        return self


# --- the plan -------------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """One run of the study: ``kind`` (pretrain, score, select, evaluate), its config values, what it reads."""

    kind: str
    name: str
    values: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    est_images: float = 0.0  # training + forward images, for --dry-run
    est_scale: float = 1.0  # cost of an image relative to one at 32 px (pixels)
    key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return f"{self.kind}-{self.name}-{self.key}"


def _key(values: dict, deps: list[str]) -> str:
    blob = json.dumps({"values": values, "deps": deps}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _slug(x: Any) -> str:
    return str(x).replace(".", "p").replace("/", "-")


def variants(cfg: StudyConfig) -> list[dict]:
    return [
        {"resolution": r, "objective": o, "schedule": s}
        for r in cfg.resolutions
        for o in cfg.objectives
        for s in cfg.schedules
    ]


def _variant_name(v: dict, cfg: StudyConfig) -> str:
    """The part of a stage name that tells variants apart (empty for the no-pre-training arm, which has none)."""
    parts = []
    if len(cfg.resolutions) > 1 and "resolution" in v:
        parts.append(f"{v['resolution']}px")
    if len(cfg.objectives) > 1 and "objective" in v:
        parts.append(v["objective"])
    if len(cfg.schedules) > 1 and "schedule" in v:
        parts.append(v["schedule"])
    return " ".join(parts)


def plan(cfg: StudyConfig) -> list[Stage]:
    """Every stage of the study, in an order that runs each after what it reads; shared stages appear once."""
    pool_ds, pool_idx = open_data(cfg.source)
    n_pool = len(pool_idx)
    pt = cfg.pretrain
    stages: dict[str, Stage] = {}

    def add(stage: Stage) -> Stage:
        stage.key = _key(stage.values, [stages[d].key for d in stage.deps])
        uid = f"{stage.kind}:{stage.name}:{stage.key}"
        stages.setdefault(uid, stage)
        return stages[uid]

    def uid(stage: Stage) -> str:
        return f"{stage.kind}:{stage.name}:{stage.key}"

    def train_values(v: dict, epochs: int) -> dict:
        return {
            "data": cfg.source.model_dump(),
            "backbone": pt.backbone,
            "resolution": v["resolution"],
            "objective": v["objective"],
            "schedule": v["schedule"],
            "epochs": epochs,
            "batch_size": pt.batch_size,
            "seed": cfg.seed,
            **merge({"optim": {"lr": pt.lr}}, pt.extra.values()),
        }

    pool_stage = {}
    for v in variants(cfg):
        s = add(Stage("pretrain", f"pool-{_slug(_variant_name(v, cfg) or 'base')}", train_values(v, pt.epochs),
                      est_images=pt.epochs * n_pool, est_scale=(v["resolution"] / 32) ** 2))  # fmt: skip
        s.meta = {"arm": "whole pool", "variant": v}
        pool_stage[json.dumps(v, sort_keys=True)] = uid(s)
    models = cfg.score.models  # typed: the score config's own defaults where the study file sets nothing
    reusable = next(
        (
            pool_stage[json.dumps(v, sort_keys=True)]
            for v in variants(cfg)
            if cfg.reuse_pool_model
            and models.source_features == "source-model"
            and v["objective"] == "supervised"
            and v["schedule"] == "full"
            and v["resolution"] == models.resolution
            and pt.backbone == models.backbone
            and ("source_epochs" not in models.model_fields_set or pt.epochs == models.source_epochs)
        ),
        None,
    )
    for target in cfg.targets:
        t_ds, t_idx = open_data(target.train)
        score_values = {
            "source": cfg.source.model_dump(),
            "target": target.train.model_dump(),
            "target_test": target.test.model_dump(),  # its near-duplicates in the pool are excluded too
            "methods": ["random", *cfg.methods],
            "seed": cfg.seed,
            # C, the unit scoring costs are reported in: this study's whole-pool pre-training
            "reference": {"backbone": pt.backbone, "resolution": max(cfg.resolutions), "epochs": pt.epochs},
            **cfg.score.values(),
        }
        if reusable:  # the source model is the whole-pool run: same backbone, resolution and (by default) epochs
            score_values.setdefault("models", {})
            score_values["models"] = {**score_values["models"], "source_epochs": pt.epochs}
        deps = [reusable] if reusable else []
        sc = add(Stage("score", target.name, score_values, deps=deps,
                       est_images=_score_estimate(cfg, n_pool, len(t_idx), bool(reusable))))  # fmt: skip
        sc.meta = {"target": target.name, "source_model": reusable}
        for budget in cfg.budgets:
            for method in ["random", *cfg.methods]:
                sel = add(Stage("select", f"{target.name}-{method}-{_slug(budget)}",
                                {"method": method, "budget": budget, "mode": cfg.selection_mode, "seed": cfg.seed},
                                deps=[uid(sc)]))  # fmt: skip
                sel.meta = {"target": target.name, "method": method, "budget": budget}
                n_sub = _budget_count(budget, n_pool)
                for v in variants(cfg):
                    vals = train_values(v, pt.epochs)
                    images = pt.epochs * n_sub
                    if pt.schedule_per_arm == "same-steps":  # the whole pool's optimizer steps, as the loop counts them
                        pool_steps = pt.epochs * (n_pool // min(pt.batch_size, n_pool))
                        vals["steps"] = pool_steps
                        images = pool_steps * min(pt.batch_size, n_sub)
                    name = f"{target.name}-{method}-{_slug(budget)}" + (f"-{_slug(_variant_name(v, cfg))}"
                                                                        if _variant_name(v, cfg) else "")  # fmt: skip
                    p = add(Stage("pretrain", name, vals, deps=[uid(sel)],
                                  est_images=images, est_scale=(v["resolution"] / 32) ** 2))  # fmt: skip
                    p.meta = {"target": target.name, "arm": method, "budget": budget, "variant": v}
        # evaluation of every arm on this target
        arms = [("no pre-training", None, None, {})]
        arms += [("whole pool", pool_stage[json.dumps(v, sort_keys=True)], None, v) for v in variants(cfg)]
        for s in list(stages.values()):
            if s.kind == "pretrain" and s.meta.get("target") == target.name:
                arms.append((s.meta["arm"], uid(s), s.meta["budget"], s.meta["variant"]))
        for arm, pre, budget, v in arms:
            ev_values = {
                "train": target.train.model_dump(),
                "test": target.test.model_dump(),
                "resolution": cfg.evaluation_resolution or max(cfg.resolutions),  # one for every arm (000)
                "seed": cfg.seed,
                **cfg.evaluation.values(),
            }
            if pre is None:
                ev_values.update(random_init=True, backbone=pt.backbone)
            name = f"{target.name}-{_slug(arm).replace(' ', '_')}" + (f"-{_slug(budget)}" if budget is not None else "")
            if _variant_name(v, cfg):
                name += f"-{_slug(_variant_name(v, cfg))}"
            e = add(Stage("evaluate", name, ev_values, deps=[pre] if pre else [],
                          est_images=_eval_estimate(cfg, target)))  # fmt: skip
            e.meta = {"target": target.name, "arm": arm, "budget": budget, "variant": v, "pretrain": pre}
    return list(stages.values())


def _budget_count(budget: float | int, n: int) -> int:
    from .selection import parse_budget

    kind, value = parse_budget(budget)
    return max(1, min(n, round(value * n) if kind == "fraction" else int(value)))


def _score_estimate(cfg: StudyConfig, n_pool: int, n_target: int, reused: bool) -> float:
    """Images a score run processes with the default models (trainings plus embedding passes), roughly; ``thresher
    score --dry-run`` gives each method's FLOPs."""
    from .scoring.proxies import sample_size, target_epochs

    m = cfg.score.models
    images = target_epochs(m, n_target) * n_target + 2 * (n_pool + n_target)
    if not reused and m.source_features == "source-model":
        images += m.source_epochs * sample_size(m.source_sample, n_pool, "models.source_sample")
    if "domain-classifier" in cfg.methods:  # k=2 folds: a CNN each on a pool sample, then its held-out half
        fold_pool = min(sample_size(m.fold_pool_sample, n_pool, "models.fold_pool_sample"), n_pool // 2)
        images += 2 * (4 * (fold_pool + n_target / 2) + (n_pool + n_target) / 2)
        if m.fold_init == "source-model":  # a pool model on the other half, per fold
            images += 2 * m.source_epochs * n_pool / 2
    return images


def _eval_estimate(cfg: StudyConfig, target: StudyTarget) -> float:
    try:
        n_train = len(open_data(target.train)[1])
    except ThresherError:
        return 0.0
    ev = cfg.evaluation
    if ev.protocol in ("finetune", "lpft"):
        return ev.seeds * len(ev.finetune.lr_grid) * ev.finetune.epochs * n_train
    return n_train


def describe_plan(stages: list[Stage], images_per_second: float = 2400.0) -> str:
    """The plan as text: every stage with its estimated images and time at ``images_per_second`` (small-cnn, 32 px,
    2 CPU cores: about 2,400 training images/s)."""
    lines = [f"{len(stages)} stages:"]
    total = minutes = 0.0
    for s in stages:
        m = s.est_images * s.est_scale / images_per_second / 60
        total, minutes = total + s.est_images, minutes + m
        lines.append(f"  {s.kind:<9} {s.name:<44} ~{s.est_images:>12,.0f} images  ~{m:6.1f} min")
    lines.append(
        f"total ~{total:,.0f} images, ~{minutes:.0f} min at {images_per_second:,.0f} images/s (small-cnn, 32 px)"
    )
    return "\n".join(lines)


# --- running it -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageKind:
    """How a study runs one kind of stage: the stage's typed config, its ``run(cfg, out, *, log)``, how the folders of
    the stages it reads enter its values, and a check of what the config alone cannot say (e.g. scorer parameters)."""

    config: type[Section]
    run: Callable[..., Any]
    wire: Callable[[dict, list[Path], Path, RuntimeConfig], dict]
    check: Callable[[Any], Any] = lambda cfg: None


#: kind -> a factory of its StageKind (imports of the stages stay inside, where they are used)
STAGE_KINDS: Registry[StageKind] = Registry("study stage kind")


@STAGE_KINDS.register("pretrain")
def _pretrain_stage() -> StageKind:
    from .pretrain.run import pretrain

    def wire(values: dict, deps: list[Path], root: Path, rt: RuntimeConfig) -> dict:
        return {**values, "runtime": rt.model_dump(), **({"manifest": str(deps[0])} if deps else {})}

    return StageKind(TrainConfig, pretrain, wire)


@STAGE_KINDS.register("score")
def _score_stage() -> StageKind:
    from .scoring.pipeline import build_scorers, score

    def wire(values: dict, deps: list[Path], root: Path, rt: RuntimeConfig) -> dict:
        # one workspace for the study: models that depend on the pool alone (the domain classifier's per-fold pool
        # models) are trained once for all targets, and evaluations read the embeddings scoring made
        out = {**values, "runtime": rt.model_dump(), "cache": str(root / WORKSPACE)}
        if deps:
            out["source_model"] = str(checkpoint_path(deps[0]))
        return out

    return StageKind(ScoreConfig, score, wire, check=build_scorers)


@STAGE_KINDS.register("select")
def _select_stage() -> StageKind:
    from .select_run import SelectConfig, run_select

    def wire(values: dict, deps: list[Path], root: Path, rt: RuntimeConfig) -> dict:
        return {**values, "scores": str(deps[0])}

    return StageKind(SelectConfig, run_select, wire)


@STAGE_KINDS.register("evaluate")
def _evaluate_stage() -> StageKind:
    from .evaluate.run import evaluate

    def wire(values: dict, deps: list[Path], root: Path, rt: RuntimeConfig) -> dict:
        return {
            **values,
            "runtime": rt.model_dump(),
            "cache": str(root / WORKSPACE),  # a runtime field: the stage's key does not change
            **({"checkpoint": str(deps[0])} if deps else {}),
        }

    return StageKind(EvalConfig, evaluate, wire)


def stage_configs(cfg: StudyConfig, stages: list[Stage], root: Path) -> list[tuple[Stage, StageKind, Section]]:
    """Every stage's validated config, built before anything runs: a bad key or value anywhere in the study file
    stops ``--dry-run`` and the study itself before the first stage, not when its stage comes."""
    by_uid = {f"{s.kind}:{s.name}:{s.key}": s for s in stages}
    out = []
    for s in stages:
        kind = STAGE_KINDS.create(s.kind)
        values = kind.wire(s.values, [root / by_uid[d].folder for d in s.deps], root, cfg.runtime)
        try:
            stage_cfg = build_config(kind.config, values=values)
            kind.check(stage_cfg)
        except ThresherError as exc:
            raise ThresherError(f"study stage {s.kind} {s.name}: {exc}") from None
        out.append((s, kind, stage_cfg))
    return out


def run_study(cfg: StudyConfig, out: str | Path, *, force: bool = False, dry_run: bool = False, log=print) -> dict:
    """Run (or resume) every stage of the study into ``out``; write ``results.json``; return the results."""
    stages = plan(cfg)
    out = Path(out)
    configs = stage_configs(cfg, stages, out / "stages")
    if dry_run:
        log(describe_plan(stages))
        return {"plan": [{"kind": s.kind, "name": s.name, "images": s.est_images} for s in stages]}
    # every stage folder is keyed by its own inputs: --force replaces the study's results, not its stages
    with RunFolder(out, "study", cfg, force=force, keep=("stages",)) as run:
        root = run.path / "stages"
        t0 = time.perf_counter()
        for k, (s, kind, stage_cfg) in enumerate(configs):
            log(f"[{k + 1}/{len(stages)}] {s.kind} {s.name}")
            kind.run(stage_cfg, root / s.folder, log=log)
        results = collect(cfg, stages, root)
        results["seconds"] = round(time.perf_counter() - t0, 1)
        atomic.write_json(run.file(RESULTS), results)
        return results


def collect(cfg: StudyConfig, stages: list[Stage], root: Path) -> dict:
    """Every evaluated arm with its accuracy, and its cost: scoring + pre-training (000), fine-tuning apart."""
    by_uid = {f"{s.kind}:{s.name}:{s.key}": s for s in stages}
    rows = []
    for s in stages:
        if s.kind != "evaluate":
            continue
        metrics = atomic.read_json(root / s.folder / "metrics.json", fix="delete that stage and run the study again")
        pre = by_uid.get(s.meta["pretrain"]) if s.meta["pretrain"] else None
        pre_cost = _cost_of(root / pre.folder) if pre else _zero()
        score_cost = _zero()
        method = s.meta["arm"]
        if pre is not None and pre.deps:  # a subset: its selection's scoring run pays for the method's scorer
            sel = by_uid[pre.deps[0]]
            sc = by_uid[sel.deps[0]]
            score_cost = ScoreTable.read(root / sc.folder).method_cost(method)
        rows.append(
            {
                "target": s.meta["target"],
                "arm": method,
                "budget": s.meta["budget"],
                "variant": s.meta["variant"],
                "top1": metrics["summary"][metrics.get("primary", "top1")],  # macro AUROC for multi-label targets
                "metric": metrics.get("primary", "top1"),
                "mean_per_class": metrics["summary"].get("mean_per_class"),
                "tuned": metrics["tuned"],
                "cost": {
                    "scoring": score_cost,
                    "pretraining": pre_cost,
                    "total": {k: score_cost[k] + pre_cost[k] for k in score_cost},
                    "finetuning": metrics["cost"]["evaluation"],
                },
                "pretrain_folder": str(root / pre.folder) if pre else None,
                "select_folder": str(root / by_uid[pre.deps[0]].folder) if pre is not None and pre.deps else None,
                "score_folder": str(root / by_uid[by_uid[pre.deps[0]].deps[0]].folder)
                if pre is not None and pre.deps
                else None,
                "evaluate_folder": str(root / s.folder),
            }
        )
    return {
        "targets": [t.name for t in cfg.targets],
        "methods": ["random", *cfg.methods],
        "budgets": cfg.budgets,
        "protocol": cfg.evaluation.protocol,
        "rows": rows,
    }


def _zero() -> dict:
    return {"images": 0.0, "flops": 0.0, "seconds": 0.0}


def _cost_of(run: Path) -> dict:
    """What a pre-training stage cost, as its run recorded it."""
    cost = training_cost(checkpoint_path(run)) or {}
    return {k: float(cost.get(k, 0.0)) for k in ("images", "flops", "seconds")}


def gain_recovered(value: float, scratch: dict, pool: dict) -> float | None:
    """(method - scratch) / (whole pool - scratch); None when whole pool and scratch are within noise: the gap is
    under twice its standard error sqrt(s_pool^2 / n_pool + s_scratch^2 / n_scratch) (about a 95% two-sided
    test), or a single seed leaves no measure of noise at all."""
    if pool.get("std") is None or scratch.get("std") is None or pool.get("n", 0) < 2 or scratch.get("n", 0) < 2:
        return None
    gap = pool["mean"] - scratch["mean"]
    se = math.sqrt(pool["std"] ** 2 / pool["n"] + scratch["std"] ** 2 / scratch["n"])
    if gap <= 0 or gap <= 2 * se:  # seeds that agree exactly (se 0) measure no noise: any gap counts
        return None
    return (value - scratch["mean"]) / gap
