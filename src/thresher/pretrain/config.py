"""Typed config of a training run (the one loop's settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

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

    name: str = Field("cosine", description="cosine or constant")
    warmup_epochs: float = Field(1.0, ge=0)
    min_factor: float = Field(0.0, ge=0, le=1, description="final rate as a fraction of the base rate")

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
    objective: str = Field("supervised", description="objective registry name")
    resolution: int = Field(32, ge=8, le=1024)
    epochs: int = Field(10, ge=1)
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
