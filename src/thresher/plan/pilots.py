"""The planner's runs (issue 19): scoring, selections, pilot pre-trainings and their transfer measurement.

Every run is a study stage (``study.Stage``, run through ``study.STAGE_KINDS``) in ``OUT/stages/<kind>-<name>-<key>``,
its key a hash of its settings and of what it reads, so a killed plan resumes run by run and ``--check`` finds the
plan's score run and selections. The measurement is the linear probe's top-1 on a validation split carved from the
target's training split (``evaluate.run.validation_metric``): it never opens the target's test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import atomic
from ..compute_match import ComputeUnit
from ..config import build_config, merge, semantic_dict
from ..errors import ThresherError
from ..evaluate.config import EvalConfig
from ..study import STAGE_KINDS, WORKSPACE, Stage, run_cost, slug, stage_key
from .config import PlanConfig
from .grid import Candidate

WHOLE_POOL = "whole pool"


@dataclass
class Runs:
    """The plan's stages under ``root`` (OUT/stages), each run once; ``log`` reports progress."""

    cfg: PlanConfig
    root: Path
    unit: ComputeUnit
    log: Any = print

    def stage(self, kind: str, name: str, values: dict, deps: tuple[Stage, ...] = ()) -> Stage:
        st = Stage(kind, name, values, deps=[d.folder for d in deps])
        st.key = stage_key(values, [d.key for d in deps])
        return st

    def folder(self, stage: Stage) -> Path:
        return self.root / stage.folder

    def run_values(self, stage: Stage) -> dict:
        """The config values a stage runs with: its own, wired to the folders of what it reads."""
        kind = STAGE_KINDS.create(stage.kind)
        return kind.wire(stage.values, [self.root / d for d in stage.deps], self.root, self.cfg.runtime)

    def run(self, stage: Stage) -> Path:
        """Run (or resume: a finished run returns at once) ``stage``; its folder."""
        kind = STAGE_KINDS.create(stage.kind)
        try:
            stage_cfg = build_config(kind.config, values=self.run_values(stage))
            kind.check(stage_cfg)
        except ThresherError as exc:
            raise ThresherError(f"plan stage {stage.kind} {stage.name}: {exc}") from None
        kind.run(stage_cfg, self.folder(stage), log=self.log)
        return self.folder(stage)

    # --- the stages ---------------------------------------------------------------------------------------------
    def score(self) -> Stage:
        """The pool scored against the target's training split with the shared proxy models (issue 17); the test
        split is not given (its near-duplicates are a --check concern, not the pilots')."""
        cfg = self.cfg
        values = {
            "source": cfg.source.model_dump(),
            "target": cfg.target.model_dump(),
            "methods": ["random", *cfg.methods],
            "seed": cfg.seed,
            "reference": {"backbone": cfg.backbone, "resolution": self.unit.resolution, "epochs": cfg.epochs},
            **cfg.score.values(),
        }
        return self.stage("score", "plan", values)

    def select(self, score: Stage, method: str, fraction: float) -> Stage:
        values = {"method": method, "mode": self.cfg.selection_mode, "budget": fraction, "seed": self.cfg.seed}
        return self.stage("select", f"{slug(method)}-{slug(fraction)}", values, (score,))

    def train_values(self, resolution: int, images: int, seed: int, batch: int) -> dict:
        """A pre-training of ``images`` training images: pilots and the plan's final runs alike."""
        cfg = self.cfg
        return {
            "data": cfg.source.model_dump(),
            "backbone": cfg.backbone,
            "resolution": resolution,
            "objective": cfg.objective,
            "images": int(images),
            "batch_size": batch,
            "seed": seed,
            **merge({"lr_schedule": {"warmup_fraction": cfg.warmup_fraction}, **self.optim()}, cfg.extra.values()),
        }

    def optim(self) -> dict:
        """The plan's learning rate where it sets one (else the objective's default, ``TrainConfig``)."""
        return {"optim": {"lr": self.cfg.lr}} if self.cfg.lr is not None else {}

    def pretrain(self, name: str, cand: Candidate, images: int, seed: int, n_pool: int, sel: Stage | None) -> Stage:
        values = self.train_values(cand.resolution, images, seed, self.batch(cand, n_pool))
        return self.stage("pretrain", name, values, (sel,) if sel is not None else ())

    def batch(self, cand: Candidate, n_pool: int) -> int:
        n = n_pool if cand.method == WHOLE_POOL else max(1, round(cand.fraction * n_pool))
        return min(self.cfg.batch_size, n)

    def calibration(self) -> Stage:
        """A short run on the pool at C's resolution and objective: this machine's training speed, for a budget in
        hours (its warm-up makes the speed a little low, so the budget's FLOPs err on the safe side)."""
        cfg = self.cfg
        values = self.train_values(self.unit.resolution, 0, cfg.seed, cfg.batch_size)
        values.pop("images")
        values["steps"] = cfg.calibration_steps
        return self.stage("pretrain", "calibration", values)

    # --- the measurement ----------------------------------------------------------------------------------------
    def probe_config(self, checkpoint: Path | None) -> EvalConfig:
        """The pilots' transfer measurement: a linear probe on a fixed validation split of the target's training
        split (one split for every pilot: their comparison is paired)."""
        cfg = self.cfg
        return EvalConfig(
            checkpoint=str(checkpoint) if checkpoint else None,
            backbone=None if checkpoint else cfg.backbone,
            random_init=checkpoint is None,
            train=cfg.target,
            test=cfg.target,  # a required field; validation_metric never opens a test split
            protocol="linear",
            seeds=1,
            seed=cfg.seed,
            resolution=max(cfg.resolutions),
            val_fraction=cfg.val_fraction,
            cache=str(self.root / WORKSPACE),
            runtime=cfg.runtime,
        )

    def measure(self, trained: Stage | None) -> dict:
        """The probe's validation top-1 of a pre-trained stage (None: the backbone at random init), and its cost;
        kept in ``measure-<name>-<key>.json`` beside the stage, so a resumed plan does not probe twice."""
        from ..evaluate.run import validation_metric

        probe = self.probe_config(self.folder(trained) if trained else None)
        name = trained.name if trained else "no-pretraining"
        settings = semantic_dict(probe)  # what decides the measurement (not the paths, not later-added defaults)
        key = stage_key({"stage": trained.key if trained else None, "probe": settings}, [])
        path = self.root / f"measure-{name}-{key}.json"
        if path.is_file():
            return atomic.read_json(path, fix=f"delete {path} and run the plan again")
        doc = validation_metric(probe, log=self.log)
        out = {"accuracy": float(doc["values"][0]), "cost": {k: doc["cost"][k] for k in ("images", "flops", "seconds")}}
        atomic.write_json(path, out)
        return out

    def cost(self, trained: Stage) -> dict[str, float]:
        """What a pre-training stage cost, as its run recorded it."""
        return run_cost(self.folder(trained))
