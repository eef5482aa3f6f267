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

import numpy as np
from pydantic import Field, field_validator, model_validator

from . import atomic
from .compute_match import ComputeUnit
from .config import DataConfig, RuntimeConfig, Section, added, build_config, merge, partial_section
from .data.loader import open_data
from .data.manifest import Manifest
from .data.sources import source_shares
from .errors import ThresherError
from .evaluate.config import EvalConfig
from .models.checkpoint import checkpoint_path, training_cost
from .registry import Registry
from .runs import RunFolder
from .scoring.pipeline import ScoreConfig
from .scoring.table import ScoreTable, method_cost
from .train.config import TrainConfig

RESULTS = "results.json"
HPT_BASE = "whole pool + BN recalibration"  # 001's cheapest HPT variant "Base", as a study arm
WORKSPACE = "workspace"  # under OUT/stages: the derived artefacts every score and evaluate stage of the study shares


class StudyReference(Section):
    """A hand-picked arm (004 4.2): source classes (names, ids, ``hand-picked:TARGET``, or every class under an
    ancestor) or a given manifest, drawn with replacement to each budget's size when it holds fewer examples (the
    manifest keeps its unique count). It pays no scoring: a person picked it."""

    name: str = Field(description="the arm's name in the table, e.g. hand-picked")
    classes: list[str | int] | str | None = Field(None, description="class names or ids, or hand-picked:TARGET")
    ancestor: str | None = Field(None, description="every class under this ancestor (with hierarchy)")
    hierarchy: str | None = Field(None, description="a file of 'child parent' lines, for ancestor")
    manifest: str | None = Field(None, description="a fixed set's manifest (or the folder holding it)")

    @model_validator(mode="after")
    def _one_kind(self) -> StudyReference:
        """Checked before any stage runs: one kind of set, a hand-picked list that exists, a manifest that exists
        (made absolute: the select stage runs from the study's folder, not the study file's)."""
        from .data.hand_picked import HAND_PICKED, PREFIX

        if (self.manifest is None) == (self.classes is None and self.ancestor is None):
            raise ValueError(f"reference {self.name!r}: give classes (or ancestor) or a manifest, one of the two")
        if isinstance(self.classes, list) and any(str(c).startswith(PREFIX) for c in self.classes):
            raise ValueError(f"reference {self.name!r}: write classes: {PREFIX}TARGET alone, not in a list")
        if isinstance(self.classes, str) and self.classes.startswith(PREFIX):
            if self.classes.removeprefix(PREFIX) not in HAND_PICKED:
                raise ValueError(f"reference {self.name!r}: no {self.classes} list (known: {', '.join(HAND_PICKED)})")
        if self.manifest is not None:
            path = Path(self.manifest).expanduser().resolve()
            if not path.exists():
                raise ValueError(f"reference {self.name!r}: manifest {path} does not exist")
            self.__dict__["manifest"] = str(path)
        return self

    def select_values(self) -> dict:
        """The select stage's mode and parameters."""
        if self.manifest is not None:
            return {"mode": "given", "params": {"manifest": self.manifest, "fill": True}}
        params = {"classes": self.classes, "ancestor": self.ancestor, "hierarchy": self.hierarchy, "fill": True}
        return {"mode": "classes", "params": {k: v for k, v in params.items() if v is not None}}


class StudyTarget(Section):
    """One target task: its name (a table column), training and test splits, and its hand-picked reference arms."""

    name: str
    train: DataConfig
    test: DataConfig
    references: list[StudyReference] = Field(
        default_factory=list, description="hand-picked arms (source classes or a manifest), at every budget"
    )
    protocol: str | None = added(
        None,
        description="this target's evaluation protocol instead of evaluation.protocol, e.g. detection or "
        "segmentation for a dense target (its table column shows that protocol's metric)",
    )

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v: str | None) -> str | None:
        if v is not None:
            from .evaluate.protocols import PROTOCOLS

            PROTOCOLS.validate(v)
        return v


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
    exclude={
        "checkpoint",
        "backbone",
        "random_init",
        "encoder",
        "train",
        "test",
        "resolution",
        "seed",
        "runtime",
        "cache",
    },
    defaults={"protocol": "finetune", "seeds": 3},
    doc="Evaluation of every arm (protocol, seeds, finetune, linear, shots, ...).",
)


class StudyPretrain(Section):
    """How every arm is pre-trained (the whole pool and every subset alike)."""

    backbone: str = "small-cnn"
    epochs: int = Field(8, ge=1, description="epochs of the whole pool; subsets get the same (000) by default")
    batch_size: int = Field(128, ge=2)
    lr: float | None = Field(
        None, gt=0, description="base learning rate (default: the objective's: 0.1 with SGD, clip's AdamW 1e-3)"
    )
    seeds: int = Field(
        1,
        ge=1,
        le=20,
        description="pre-train every arm this many times (seeds seed, seed+1, ...); the table's spread "
        "is over these and the evaluation's seeds",
    )
    seeded_arms: list[str] | None = Field(
        None,
        description="the arms repeated over the pre-training seeds (default: every arm), e.g. [whole pool, random, "
        "importance]: the baselines and the best scorer, when seeds for every arm cost too much",
    )
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
    compute: list[float] | None = Field(
        None,
        description="compute levels in C (one whole-pool pre-training at pretrain.epochs): every arm pre-trains for "
        "what its level allows after its scoring cost; the whole pool too (and at 1.0)",
    )
    hpt_base: bool = Field(
        False,
        description="also evaluate 001's HPT 'Base': the whole-pool model with its batch-norm statistics recomputed "
        "on each target's training images, no gradient step (at compute 1.0 under compute)",
    )
    reuse_pool_model: bool = Field(
        True,
        description="the whole pool's supervised model is the scorers' source model (importance, kNN, ...); never "
        "under compute (it would charge each such scorer 1.0 C)",
    )
    seed: int = 0
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        from .scoring.registry import compared_methods

        return compared_methods(v)

    @field_validator("compute")
    @classmethod
    def _compute(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if not v or any(not (0 < c <= 100) for c in v):
                raise ValueError("compute levels are positive fractions of C, e.g. [0.25, 0.5, 1.0]")
            v = sorted(set(float(c) for c in v))
        return v

    @model_validator(mode="after")
    def _names(self) -> StudyConfig:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("two targets have the same name")
        for t in self.targets:
            arms = [r.name for r in t.references]
            clash = set(arms) & {"random", "whole pool", "no pre-training", HPT_BASE, *self.methods}
            if clash or len(set(arms)) != len(arms):
                why = f"{sorted(clash)} name other arms" if clash else "a name is given twice"
                raise ValueError(f"target {t.name}: reference names must be unique and not a method's: {why}")
        arms = {"whole pool", "random", *self.methods, *(r.name for t in self.targets for r in t.references)}
        unknown = sorted(set(self.pretrain.seeded_arms or []) - arms)
        if unknown:
            raise ValueError(f"pretrain.seeded_arms names no arm of this study: {unknown} (arms: {sorted(arms)})")
        if self.compute and "schedule_per_arm" in self.pretrain.model_fields_set:
            raise ValueError("compute sets every arm's length; drop pretrain.schedule_per_arm (or compute)")
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
    keyed: dict[str, Any] = field(default_factory=dict)  # settings that key the stage but are not config values

    @property
    def folder(self) -> str:
        return f"{self.kind}-{self.name}-{self.key}"


def stage_key(values: dict, deps: list[str]) -> str:
    """A stage's key: a hash of its settings and of the keys of the stages it reads (its folder's suffix)."""
    blob = json.dumps({"values": values, "deps": deps}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def slug(x: Any) -> str:
    """A value as part of a stage's folder name (no dots, no slashes)."""
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


def compute_unit(cfg: StudyConfig, n_pool: int | None = None) -> ComputeUnit | None:
    """The study's C (None without ``compute``): the whole pool at ``pretrain.epochs``, largest resolution, first
    objective."""
    if not cfg.compute:
        return None
    n = n_pool if n_pool is not None else len(open_data(cfg.source)[1])
    pt = cfg.pretrain
    return ComputeUnit(pt.backbone, max(cfg.resolutions), cfg.objectives[0], pt.epochs, n)


def plan(cfg: StudyConfig, n_pool: int | None = None) -> list[Stage]:
    """Every stage of the study, in an order that runs each after what it reads; shared stages appear once.

    Under ``compute``, a subset arm's pre-training carries its level and the method whose scoring it pays
    (``meta["compute"]``, ``meta["pays_for"]``): its length in images is set when it runs, from what its score run
    recorded (``arm_images``); the whole pool's length at each level is known here.
    """
    n_pool = n_pool if n_pool is not None else len(open_data(cfg.source)[1])
    pt = cfg.pretrain
    unit = compute_unit(cfg, n_pool)
    stages: dict[str, Stage] = {}

    def add(stage: Stage) -> Stage:
        stage.key = stage_key({**stage.values, **stage.keyed}, [stages[d].key for d in stage.deps])
        stages.setdefault(uid(stage), stage)
        return stages[uid(stage)]

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
            **merge({"optim": {"lr": pt.lr}} if pt.lr is not None else {}, pt.extra.values()),
        }

    def tags(v: dict, c: float | None, k: int) -> str:
        """What tells one arm's runs apart in a stage's name: its variant, its compute level (none at 1.0: C itself,
        so the whole-pool run is the one a study without compute has) and its pre-training seed (none for the first,
        so a study given more seeds later keeps the runs it has: a stage's folder is its name and key)."""
        variant = f"-{slug(_variant_name(v, cfg))}" if _variant_name(v, cfg) else ""
        return variant + (f"-c{slug(c)}" if c not in (None, 1.0) else "") + (f"-seed{cfg.seed + k}" if k else "")

    def pretrains(name: str, values: dict, deps: list[str], meta: dict, images: float, v: dict, keyed: dict) -> list:
        """One pre-training per seed of ``pretrain.seeds`` (the seed only in the name when there are several)."""
        out = []
        seeds = pt.seeds if pt.seeded_arms is None or meta["arm"] in pt.seeded_arms else 1
        for k in range(seeds):
            st = add(Stage("pretrain", name + tags(v, meta["compute"], k), {**values, "seed": cfg.seed + k}, deps=deps,
                           est_images=images, est_scale=(v["resolution"] / 32) ** 2, keyed=keyed))  # fmt: skip
            st.meta = {**meta, "variant": v, "pretrain_seed": cfg.seed + k}
            out.append(uid(st))
        return out

    levels: list[float | None] = list(cfg.compute) if cfg.compute else [None]
    pool_levels = sorted({*levels, 1.0}) if cfg.compute else [None]
    pool_stage: dict[tuple[str, float | None], list[str]] = {}
    for v in variants(cfg):
        for c in pool_levels:
            vals = train_values(v, pt.epochs)
            images = pt.epochs * n_pool
            if unit is not None:  # the whole pool at compute c: c x E epochs (C's FLOPs at another resolution)
                length = unit.whole_pool_length(
                    c, v["resolution"], v["objective"], v["schedule"], min(pt.batch_size, n_pool)
                )
                vals.update(length)
                images = length.get("images", length.get("epochs", 0) * n_pool)
            name = "pool" if _variant_name(v, cfg) else "pool-base"
            pool_stage[(_vkey(v), c)] = pretrains(name, vals, [], {"arm": "whole pool", "compute": c}, images, v, {})
    models = cfg.score.models  # typed: the score config's own defaults where the study file sets nothing
    reusable = next(
        (
            pool_stage[(_vkey(v), None)][0]
            for v in variants(cfg)
            if cfg.reuse_pool_model
            and not cfg.compute  # under compute, it would charge each scorer using it 1.0 C
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
        arms = [(m, {"method": m, "mode": cfg.selection_mode}, m) for m in ["random", *cfg.methods]]
        arms += [(r.name, r.select_values(), None) for r in target.references]  # a person's pick: no scoring paid
        for budget in cfg.budgets:
            for arm, how, pays_for in arms:
                sel = add(Stage("select", f"{target.name}-{slug(arm)}-{slug(budget)}",
                                {**how, "budget": budget, "seed": cfg.seed}, deps=[uid(sc)]))  # fmt: skip
                sel.meta = {"target": target.name, "method": arm, "budget": budget}
                n_sub = _budget_count(budget, n_pool)
                for v in variants(cfg):
                    for c in levels:
                        vals = train_values(v, pt.epochs)
                        images = pt.epochs * n_sub
                        if c is not None:  # sized when it runs, from its scoring's recorded cost (at most c C)
                            images = c * unit.flops / unit.per_image(v["resolution"], v["objective"])
                        elif pt.schedule_per_arm == "same-steps":  # the whole pool's optimizer steps
                            pool_steps = pt.epochs * (n_pool // min(pt.batch_size, n_pool))
                            vals["steps"] = pool_steps
                            images = pool_steps * min(pt.batch_size, n_sub)
                        name = f"{target.name}-{slug(arm)}-{slug(budget)}"
                        meta = {"target": target.name, "arm": arm, "budget": budget, "compute": c,
                                "score": uid(sc), "pays_for": pays_for, "batch": min(pt.batch_size, n_sub)}  # fmt: skip
                        # its length is set when it runs, from C: C's own settings key it too
                        keyed = {"_compute": [c, unit.resolution, unit.objective]} if c is not None else {}
                        pretrains(name, vals, [uid(sel)], meta, images, v, keyed)
        # evaluation of every arm on this target: every pre-training (each seed) is fine-tuned
        evaluated = [("no pre-training", None, None, {}, None, None)]
        for v in variants(cfg):
            for c in pool_levels:
                evaluated += [("whole pool", pre, None, v, c, stages[pre].meta["pretrain_seed"])
                              for pre in pool_stage[(_vkey(v), c)]]  # fmt: skip
        for key, st in list(stages.items()):
            if st.kind == "pretrain" and st.meta.get("target") == target.name:
                m = st.meta
                evaluated.append((m["arm"], key, m["budget"], m["variant"], m["compute"], m["pretrain_seed"]))
        if cfg.hpt_base:  # 001's "Base": the whole-pool model, batch-norm statistics recomputed on the target's images
            c = 1.0 if cfg.compute else None
            for v in variants(cfg):
                for pre in pool_stage[(_vkey(v), c)]:
                    seed = stages[pre].meta["pretrain_seed"]
                    vals = {"data": target.train.model_dump(), "backbone": pt.backbone, "resolution": v["resolution"],
                            "steps": 0, "recalibrate_bn": True, "batch_size": pt.batch_size, "seed": seed}  # fmt: skip
                    name = f"{target.name}-base" + tags(v, None, seed - cfg.seed)
                    rb = add(Stage("recalibrate", name, vals, deps=[pre], est_images=len(t_idx),
                                   est_scale=(v["resolution"] / 32) ** 2))  # fmt: skip
                    rb.meta = {"target": target.name, "arm": HPT_BASE, "variant": v, "pretrain_seed": seed}
                    evaluated.append((HPT_BASE, uid(rb), None, v, c, seed))
        for arm, pre, budget, v, c, pre_seed in evaluated:
            ev_values = {
                "train": target.train.model_dump(),
                "test": target.test.model_dump(),
                "resolution": cfg.evaluation_resolution or max(cfg.resolutions),  # one for every arm (000)
                "seed": cfg.seed,
                **cfg.evaluation.values(),
                **({"protocol": target.protocol} if target.protocol else {}),
            }
            if pre is None:
                ev_values.update(random_init=True, backbone=pt.backbone)
            name = f"{target.name}-{slug(arm).replace(' ', '_')}" + (f"-{slug(budget)}" if budget is not None else "")
            name += tags(v, c, pre_seed - cfg.seed if pre else 0)
            e = add(Stage("evaluate", name, ev_values, deps=[pre] if pre else [],
                          est_images=_eval_estimate(cfg, target)))  # fmt: skip
            e.meta = {"target": target.name, "arm": arm, "budget": budget, "variant": v, "pretrain": pre, "compute": c}
    return list(stages.values())


def uid(stage: Stage) -> str:
    return f"{stage.kind}:{stage.name}:{stage.key}"


def _vkey(v: dict) -> str:
    return json.dumps(v, sort_keys=True)


def _scoring_forecast(cfg: StudyConfig, unit: ComputeUnit, target: str, score_cfg: Section) -> str:
    """For ``--dry-run``: each method's estimated scoring cost in C (``thresher score --dry-run``'s estimate) and the
    compute levels it would leave over budget (the run itself decides from the measured cost)."""
    from .scoring.estimate import estimate
    from .scoring.pipeline import build_scorers

    est = estimate(score_cfg, build_scorers(score_cfg))["methods"]
    spent = {m: est[m]["flops"] / unit.flops for m in cfg.methods}
    over = [f"{m} at {c:g} C" for m in cfg.methods for c in cfg.compute if spent[m] >= c]
    costs = ", ".join(f"{m} {v:.3f}" for m, v in spent.items())
    return f"{target}: estimated scoring (C): {costs}; over budget: {', '.join(over) or 'none'}"


def scoring_paid(stage: Stage, score_folder: Path) -> dict[str, float]:
    """What a subset arm's scoring cost, as its score run recorded it (as if it ran alone); zero for random and a
    person's pick. A scorer without a recorded cost cannot be matched: a one-line error, not a free arm."""
    method = stage.meta["pays_for"]
    if not method:
        return _zero()
    cost = method_cost(ScoreTable.read_report(score_folder), method)
    if method != "random" and cost["flops"] <= 0:
        raise ThresherError(f"{score_folder} recorded no cost for {method}; compute matching needs it (re-run that "
                            "score stage with this thresher: delete its folder)")  # fmt: skip
    return cost


def arm_images(unit: ComputeUnit, stage: Stage, spent: float) -> int | None:
    """A compute-matched subset arm's training images: its level's FLOPs after ``spent`` FLOPs of scoring
    (``scoring_paid``); None: over budget."""
    v = stage.meta["variant"]
    return unit.arm_images(stage.meta["compute"], spent, v["resolution"], v["objective"], stage.meta["batch"])


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
    from .evaluate.dense import DenseProtocol
    from .evaluate.protocols import PROTOCOLS

    ev = cfg.evaluation
    protocol = target.protocol or ev.protocol
    if protocol in ("finetune", "lpft") or isinstance(PROTOCOLS.get(protocol), DenseProtocol):  # every lr trained
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


@STAGE_KINDS.register("recalibrate")
def _recalibrate_stage() -> StageKind:
    """A training run of no step that starts from the stage it reads and recomputes batch-norm statistics (001)."""
    from .pretrain.run import pretrain

    def wire(values: dict, deps: list[Path], root: Path, rt: RuntimeConfig) -> dict:
        return {**values, "runtime": rt.model_dump(), "init": str(checkpoint_path(deps[0]))}

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


def stage_configs(cfg: StudyConfig, stages: list[Stage], root: Path) -> list[tuple[Stage, StageKind, dict, Section]]:
    """Every stage's wired values and validated config, built before anything runs: a bad key or value anywhere in
    the study file stops ``--dry-run`` and the study itself before the first stage, not when its stage comes."""
    by_uid = {uid(s): s for s in stages}
    out = []
    for s in stages:
        kind = STAGE_KINDS.create(s.kind)
        values = kind.wire(s.values, [root / by_uid[d].folder for d in s.deps], root, cfg.runtime)
        out.append((s, kind, values, _build(s, kind, values)))
    return out


def _build(s: Stage, kind: StageKind, values: dict) -> Section:
    try:
        stage_cfg = build_config(kind.config, values=values)
        kind.check(stage_cfg)
    except ThresherError as exc:
        raise ThresherError(f"study stage {s.kind} {s.name}: {exc}") from None
    return stage_cfg


def run_study(cfg: StudyConfig, out: str | Path, *, force: bool = False, dry_run: bool = False, log=print) -> dict:
    """Run (or resume) every stage of the study into ``out``; write ``results.json``; return the results."""
    n_pool = len(open_data(cfg.source)[1])
    stages = plan(cfg, n_pool)
    out = Path(out)
    configs = stage_configs(cfg, stages, out / "stages")
    unit = compute_unit(cfg, n_pool)
    if dry_run:
        log(describe_plan(stages))
        if unit is not None:
            log(f"{unit.describe()}; each subset arm is sized after its scoring run, from the cost it recorded")
            for s, _, _, score_cfg in (x for x in configs if x[0].kind == "score"):
                log(_scoring_forecast(cfg, unit, s.name, score_cfg))
        return {"plan": [{"kind": s.kind, "name": s.name, "images": s.est_images} for s in stages]}
    # every stage folder is keyed by its own inputs: --force replaces the study's results, not its stages
    with RunFolder(out, "study", cfg, force=force, keep=("stages",)) as run:
        root = run.path / "stages"
        by_uid = {uid(s): s for s in stages}
        skipped: set[str] = set()  # over-budget arms and what reads them
        t0 = time.perf_counter()
        for k, (s, kind, values, stage_cfg) in enumerate(configs):
            if any(d in skipped for d in s.deps):
                skipped.add(uid(s))
                continue
            if s.meta.get("compute") is not None and s.meta.get("score"):  # a subset arm, sized by its scoring
                spent = scoring_paid(s, root / by_uid[s.meta["score"]].folder)["flops"]
                images = arm_images(unit, s, spent)
                if images is None:
                    log(f"[{k + 1}/{len(stages)}] {s.name}: over budget (its scoring cost {spent / unit.flops:.3f} C "
                        f"of its {s.meta['compute']:g} C: less than one batch of pre-training is left)")  # fmt: skip
                    skipped.add(uid(s))
                    continue
                stage_cfg = _build(s, kind, {**values, "images": images})
            log(f"[{k + 1}/{len(stages)}] {s.kind} {s.name}")
            kind.run(stage_cfg, root / s.folder, log=log)
        results = collect(cfg, stages, root, unit)
        results["seconds"] = round(time.perf_counter() - t0, 1)
        atomic.write_json(run.file(RESULTS), results)
        return results


def collect(cfg: StudyConfig, stages: list[Stage], root: Path, unit: ComputeUnit | None) -> dict:
    """Every arm with its accuracy over all its seeds (pre-training x evaluation), and its cost: scoring +
    pre-training (000; the mean over pre-training seeds), fine-tuning apart; under ``compute``, also in C, and the
    arms whose scoring spent their level as over budget."""
    from .evaluate.metrics import summarize

    by_uid = {uid(s): s for s in stages}
    pool_ds, pool_idx = open_data(cfg.source)
    pool_shares = source_shares(pool_ds.ids[pool_idx]) if getattr(pool_ds, "source_names", None) else None
    groups: dict[tuple, list[Stage]] = {}
    for s in stages:
        if s.kind == "evaluate":
            m = s.meta
            groups.setdefault((m["target"], m["arm"], m["budget"], _vkey(m["variant"]), m["compute"]), []).append(s)
    rows = []
    for evals in groups.values():
        meta = evals[0].meta
        pres = [by_uid[e.meta["pretrain"]] for e in evals if e.meta["pretrain"]]
        score_cost, score_folder, select_folder = _zero(), None, None
        sel = by_uid[pres[0].deps[0]] if pres and pres[0].deps else None
        subset = sel is not None and sel.kind == "select"
        if subset:  # a subset: its selection's scoring run pays for the method's scorer
            score_folder, select_folder = root / by_uid[sel.deps[0]].folder, root / sel.folder
            score_cost = scoring_paid(pres[0], score_folder)
        row = {
            "target": meta["target"],
            "arm": meta["arm"],
            "budget": meta["budget"],
            "variant": meta["variant"],
            "compute": meta["compute"],
            "pretrain_seeds": len(pres),
            "over_budget": bool(
                pres
                and meta["compute"] is not None
                and subset
                and arm_images(unit, pres[0], score_cost["flops"]) is None
            ),  # fmt: skip
            "source_shares": Manifest.read(select_folder).meta.get("source_shares")
            if select_folder
            else (pool_shares if pres else None),  # fmt: skip
            "score_folder": str(score_folder) if score_folder else None,
            "select_folder": str(select_folder) if select_folder else None,
            "pretrain_folder": str(root / pres[0].folder) if pres else None,
            "evaluate_folder": str(root / evals[0].folder),
        }
        if row["over_budget"]:
            row.update(top1=None, metric=None, mean_per_class=None, tuned=None,
                       cost=_costs(score_cost, _zero(), _zero(), unit))  # fmt: skip
            rows.append(row)
            continue
        docs = [atomic.read_json(root / e.folder / "metrics.json", fix="delete that stage and run the study again")
                for e in evals]  # fmt: skip
        primary = docs[0].get("primary", "top1")  # macro AUROC for multi-label targets
        pre_cost = _mean_cost([_run_cost(p, by_uid, root) for p in pres] or [_zero()])
        ft = [d["cost"]["evaluation"] for d in docs]
        row.update(
            top1=summarize([seed[primary] for d in docs for seed in d["seeds"]]),
            metric=primary,
            mean_per_class=_merged(docs, "mean_per_class", summarize),
            tuned=all(d["tuned"] for d in docs),
            cost=_costs(score_cost, pre_cost, _mean_cost(ft), unit),
        )
        rows.append(row)
    return {
        "targets": [t.name for t in cfg.targets],
        "methods": ["random", *cfg.methods],
        "references": sorted({r.name for t in cfg.targets for r in t.references}),
        "budgets": cfg.budgets,
        "compute": cfg.compute,
        "unit": None if unit is None else {"flops": unit.flops, "what": unit.describe()},
        "protocol": cfg.evaluation.protocol,
        "protocols": {t.name: t.protocol or cfg.evaluation.protocol for t in cfg.targets},
        "rows": rows,
    }


def _run_cost(stage: Stage, by_uid: dict[str, Stage], root: Path) -> dict:
    """A pre-training stage's cost; a recalibrated base (001) adds its base model's pre-training to its own pass."""
    costs = [run_cost(root / stage.folder)]
    if stage.kind == "recalibrate":
        costs += [run_cost(root / by_uid[d].folder) for d in stage.deps]
    return {k: sum(c[k] for c in costs) for k in costs[0]}


def _mean_cost(costs: list[dict]) -> dict:
    """The mean of several runs' costs (pre-training or evaluation seeds); non-numeric fields from the first."""
    return {k: float(np.mean([c.get(k, 0.0) for c in costs])) if isinstance(v, int | float) else v
            for k, v in costs[0].items()}  # fmt: skip


def _merged(docs: list[dict], metric: str, summarize: Callable) -> dict | None:
    values = [seed.get(metric) for d in docs for seed in d["seeds"]]
    return summarize(values) if values and all(v is not None for v in values) else None


def _costs(scoring: dict, pretraining: dict, finetuning: dict, unit: ComputeUnit | None) -> dict:
    total = {k: scoring[k] + pretraining[k] for k in scoring}
    out = {"scoring": scoring, "pretraining": pretraining, "total": total, "finetuning": finetuning}
    if unit is not None:  # the arm's compute as a fraction of C, in FLOPs
        out["C"] = {k: round(out[k]["flops"] / unit.flops, 4) for k in ("scoring", "pretraining", "total")}
    return out


def _zero() -> dict:
    return {"images": 0.0, "flops": 0.0, "seconds": 0.0}


def run_cost(run: Path) -> dict:
    """What a pre-training stage cost, as its run recorded it (images, FLOPs, seconds; zeros when not recorded)."""
    cost = training_cost(checkpoint_path(run)) or {}
    return {k: float(cost.get(k, 0.0)) for k in ("images", "flops", "seconds")}


def above(a: dict, b: dict) -> bool | None:
    """Is ``a``'s mean above ``b``'s by more than twice the standard error of the difference, sqrt(s_a^2 / n_a +
    s_b^2 / n_b) (about a 95% one-sided test over seeds)? None when one side has a single seed (no measure of noise).
    A study's n counts every pre-training x evaluation seed pair as one sample: with few pre-training seeds that
    understates the noise of pre-training itself, so a "beyond noise" there is optimistic."""
    if a.get("std") is None or b.get("std") is None or a.get("n", 0) < 2 or b.get("n", 0) < 2:
        return None
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return a["mean"] - b["mean"] > 2 * se  # seeds that agree exactly (se 0) measure no noise: any gap counts


def gain_recovered(value: float, scratch: dict, pool: dict) -> float | None:
    """(method - scratch) / (whole pool - scratch); None when the whole pool is not above scratch beyond noise
    (``above``), or a single seed leaves no measure of noise at all."""
    if not above(pool, scratch):
        return None
    return (value - scratch["mean"]) / (pool["mean"] - scratch["mean"])
