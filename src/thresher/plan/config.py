"""Typed config of ``thresher plan`` (issue 19): the pool, the target, the budget, the candidates, the pilots."""

from __future__ import annotations

from pydantic import Field, field_validator

from ..config import DataConfig, RuntimeConfig, Section
from ..errors import ThresherError
from ..study import StudyScore, StudyTrainExtra
from .budget import Budget


class PlanConfig(Section):
    """``thresher plan``: what to pre-train on, and for how long, for ``budget`` (C, images or hours)."""

    source: DataConfig
    target: DataConfig = Field(
        description="the target's training split; the pilots' validation split is carved from it"
    )
    target_test: DataConfig | None = Field(
        None, description="the target's test split: read by `thresher plan DIR --check` only, never by the pilots"
    )
    budget: str = Field(description="0.5C (one whole-pool pre-training = 1C), 2e6images, or 3h / 90min on this machine")
    methods: list[str] = Field(default_factory=lambda: ["knn"], description="scorers compared (random is always in)")
    fractions: list[float] = Field(
        default_factory=lambda: [0.1, 0.3], description="subset sizes, fractions of the pool"
    )
    resolutions: list[int] = Field(default_factory=lambda: [32], min_length=1, description="pre-training resolutions")
    objective: str = Field("supervised", description="the pre-training objective of every candidate")
    selection_mode: str = Field("top", description="how every method's scores become a subset")
    backbone: str = "small-cnn"
    epochs: int = Field(8, ge=1, description="C: the whole pool for this many epochs at the largest resolution")
    batch_size: int = Field(128, ge=2)
    lr: float | None = Field(
        None, gt=0, description="base learning rate (default: the objective's: 0.1 with SGD, clip's AdamW 1e-3)"
    )
    warmup_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="linear warm-up as a share of each run: a pilot of a few dozen steps is not all warm-up (an epoch "
        "of the whole pool would be), and every run, pilot or final, has the same schedule's shape",
    )
    extra: StudyTrainExtra = Field(
        default_factory=StudyTrainExtra, description="further training-config keys (optim, lr_schedule, ...)"
    )
    share: float = Field(0.25, gt=0, lt=1, description="the budget's share scoring and pilots may spend")
    levels: int = Field(4, ge=4, le=8, description="compute levels every candidate is piloted at (geometric)")
    ratio: float = Field(2.0, gt=1, le=4, description="between consecutive pilot levels")
    pilot_seeds: int = Field(2, ge=2, le=5, description="pre-training seeds per pilot (the interval's bootstrap)")
    min_steps: int = Field(10, ge=1, description="the shortest pilot's optimizer steps; below, plan refuses")
    val_fraction: float = Field(0.2, gt=0, lt=0.5, description="the validation split carved from the target, per class")
    calibration_steps: int = Field(30, ge=5, description="a budget in hours: steps of the speed-measuring run")
    score: StudyScore = Field(default_factory=StudyScore, description="score-config keys (models, params, ...)")
    seed: int = 0
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, v: object) -> str:
        try:
            return str(Budget.parse(v if isinstance(v, str) else float(v)))  # type: ignore[arg-type]
        except (ThresherError, TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        from ..scoring.registry import compared_methods

        return compared_methods(v)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not (0 < f < 1) for f in v):
            raise ValueError("fractions are subset sizes strictly between 0 and 1 of the pool, e.g. [0.1, 0.3]")
        return sorted(set(v))

    @field_validator("resolutions")
    @classmethod
    def _resolutions(cls, v: list[int]) -> list[int]:
        if any(not (8 <= r <= 1024) for r in v):
            raise ValueError("resolutions are between 8 and 1024 pixels")
        return sorted(set(v))

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: str) -> str:
        from ..train.objective import OBJECTIVES

        OBJECTIVES.validate(v)
        return v

    @field_validator("selection_mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        from ..selection import SELECTORS

        SELECTORS.validate(v)
        return v

    @property
    def parsed_budget(self) -> Budget:
        return Budget.parse(self.budget.replace(" ", ""))
