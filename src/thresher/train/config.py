"""Typed config of a training run (the one loop's settings): data, model, objective, optimiser, LR schedule."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import DataConfig, RuntimeConfig, Section, runtime


class OptimConfig(Section):
    """Optimizer: SGD with momentum (the papers' choice) or AdamW."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0, description="base learning rate (scaled by the schedule)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    nesterov: bool = False


class LRScheduleConfig(Section):
    """Learning-rate schedule by registry name, with linear warm-up."""

    name: str = Field("cosine", description="cosine, step or constant")
    warmup_epochs: float = Field(1.0, ge=0)
    warmup_fraction: float | None = Field(
        None, ge=0, le=1, description="warm-up as a fraction of the run's length instead of warmup_epochs (short runs)"
    )
    min_factor: float = Field(0.0, ge=0, le=1, description="cosine: final rate as a fraction of the base rate")
    milestones: list[int] | None = Field(
        None, description="step: epochs at which the rate is multiplied by gamma (default: 1/3 and 2/3 of the run)"
    )
    gamma: float = Field(0.1, gt=0, le=1, description="step: decay factor at each milestone")
    milestone_fractions: list[float] | None = Field(
        None, description="step: milestones as fractions of the run's length, e.g. [0.5, 0.75] (instead of epochs)"
    )

    @model_validator(mode="after")
    def _one_way(self) -> LRScheduleConfig:
        if self.milestones is not None and self.milestone_fractions is not None:
            raise ValueError("give milestones (epochs) or milestone_fractions, not both")
        if self.milestone_fractions is not None and not all(0 < f < 1 for f in self.milestone_fractions):
            raise ValueError("milestone_fractions must lie strictly between 0 and 1")
        return self

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from ..errors import ThresherError
        from .lr_schedules import LR_SCHEDULES

        try:
            LR_SCHEDULES.get(v)
        except ThresherError as exc:  # let pydantic attach the key to the message
            raise ValueError(str(exc)) from None
        return v


class TrainConfig(Section):
    """``thresher pretrain``: data, model, objective and optimisation of one training run."""

    data: DataConfig
    backbone: str = Field("small-cnn", description="backbone registry name")
    init: str | None = runtime(
        None, description="checkpoint to initialise the backbone from (fingerprinted by content)"
    )
    init_head: bool = Field(False, description="also start the objective's head from --init (LP-FT: the probe's head)")
    objective: str = Field("supervised", description="objective registry name: supervised, moco, simclr, byol, clip")
    objective_params: dict[str, Any] = Field(
        default_factory=dict, description="the objective's hyper-parameters, e.g. {temperature: 0.2, queue_size: 4096}"
    )
    manifest: str | None = runtime(
        None, description="selection manifest folder: train on its ids, each repeated by its count (fingerprinted)"
    )
    schedule: str = Field("full", description="data schedule: full or drop-and-pick (003)")
    schedule_params: dict[str, Any] = Field(
        default_factory=dict, description="the data schedule's settings, e.g. {warmup: 4, interval: 1, keep: 0.9}"
    )
    train: str = Field("all", description="parameters to train: all, or bn (batch-norm affine only, 001's HPT-BN)")
    resolution: int = Field(32, ge=8, le=1024)
    epochs: int = Field(10, ge=1, description="the run's length in passes over the data (unless steps or images)")
    steps: int | None = Field(
        None,
        ge=0,
        description="the run's length in optimizer steps instead of epochs (0: no step, e.g. with recalibrate_bn)",
    )
    images: int | None = Field(None, ge=0, description="the run's length in images processed instead of epochs")
    recalibrate_bn: bool = Field(
        False,
        description="after the steps, recompute the backbone's batch-norm statistics on the training images "
        "(001's cheapest HPT variant 'Base': with steps 0, no gradient step at all)",
    )
    keep_at: list[int] = Field(
        default_factory=list, description="also keep the weights after these steps, as RUN@STEP (a convergence curve)"
    )
    batch_size: int = Field(128, ge=2)
    optim: OptimConfig = OptimConfig()
    lr_schedule: LRScheduleConfig = LRScheduleConfig()
    transform: str | None = Field(None, description="augmentation kind (default: the objective's own, e.g. train)")
    crop_scale: tuple[float, float] | None = Field(
        None, description="random-resized-crop area range (default: the objective's recipe, 0.08-1 supervised)"
    )
    seed: int = 0
    checkpoint_every: int = runtime(0, ge=0, description="checkpoint every N steps (0: every epoch only)")
    checkpoint_minutes: float = runtime(10.0, gt=0, description="also checkpoint when this much time passed")
    log_every: int = runtime(20, ge=1, description="log a JSONL line every N steps")
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("init")
    @classmethod
    def _kept_weights(cls, v: str | None) -> str | None:
        """``RUN@STEP`` names the file the run kept after that step, so it is fingerprinted by that file's content."""
        from pathlib import Path

        from ..errors import ThresherError
        from ..models.checkpoint import kept_step, resolve_checkpoint

        kept_at = kept_step(v)
        if kept_at and Path(kept_at[0]).is_dir():
            try:
                return str(resolve_checkpoint(v))
            except ThresherError as exc:
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="before")
    @classmethod
    def _objective_optimizer(cls, data: Any) -> Any:
        """The objective's own optimiser settings (``objective.optimizer_defaults``: clip's AdamW) fill what the config
        leaves unset; what it sets wins, and naming another optimiser drops them. The resolved config records the
        result."""
        from .objective import OBJECTIVES, optimizer_defaults

        objective = data.get("objective", "supervised") if isinstance(data, dict) else None
        if objective not in OBJECTIVES:
            return data  # not a mapping, or an unknown objective (reported by _check_named)
        defaults = optimizer_defaults(objective)
        if not defaults:
            return data
        optim = data.get("optim") or {}
        if isinstance(optim, OptimConfig):
            optim = {k: getattr(optim, k) for k in optim.model_fields_set}
        elif not isinstance(optim, dict):
            return data  # not an optimiser section: the field's own validation says so
        if optim.get("name", defaults.get("name")) != defaults.get("name"):
            return data  # another optimiser, chosen: the objective's settings are for its own
        return {**data, "optim": {**defaults, **optim}}

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if self.steps is not None and self.images is not None:
            raise ValueError("give the run's length as steps or images, not both")
        if any(k < 0 for k in self.keep_at):
            raise ValueError("keep_at steps must be >= 0")
        return self

    @model_validator(mode="after")
    def _check_named(self) -> TrainConfig:
        """Registry names and their parameters are checked here, so a typo fails before any work."""
        from ..errors import ThresherError
        from . import supervised  # noqa: F401  (registers the engine's own objective)
        from .data_schedule import DATA_SCHEDULES, schedule_params
        from .objective import OBJECTIVES, objective_params
        from .trainable import PARAMETER_SETS

        try:
            OBJECTIVES.get(self.objective)
            DATA_SCHEDULES.get(self.schedule)
            PARAMETER_SETS.get(self.train)
        except ThresherError as exc:
            raise ValueError(str(exc)) from None
        for what, name, given, accepted in (
            ("objective", self.objective, self.objective_params, objective_params(self.objective)),
            ("data schedule", self.schedule, self.schedule_params, schedule_params(self.schedule)),
        ):
            unknown = sorted(set(given) - set(accepted))
            if unknown:
                raise ValueError(
                    f"{what} {name} has no parameter {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'none'}"
                )
        return self
