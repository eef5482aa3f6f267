"""Typed config of ``thresher evaluate``: which model, which target, which protocol, how many seeds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import DataConfig, RuntimeConfig, Section, added, runtime


class LinearConfig(Section):
    """Linear probe on frozen, standardised features: softmax regression solved by L-BFGS (the convex optimum, so
    only the L2 penalty is a hyper-parameter; 001's SGD learning-rate sweep converges to the same solution)."""

    l2_grid: list[float] = Field(
        default_factory=lambda: [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], description="penalties tried on validation"
    )
    default_l2: float = Field(1e-3, gt=0, description="used when the validation split is too small to choose")
    max_iter: int = Field(200, ge=1)

    @field_validator("l2_grid")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if not v or any(x <= 0 for x in v):
            raise ValueError("l2_grid needs at least one positive value")
        return v


class FinetuneConfig(Section):
    """Fine-tuning all layers with a new linear head, through the one training loop (000, 004)."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    lr_grid: list[float] = Field(default_factory=lambda: [0.01, 0.03], description="learning rates tried on validation")
    default_lr: float = Field(0.01, gt=0, description="used when the validation split is too small to choose")
    weight_decay: float = Field(5e-4, ge=0)
    transform: str = Field("train", description="augmentation of the target images")
    crop_scale: tuple[float, float] = Field(
        (0.35, 1.0), description="random-resized-crop area range: milder than pre-training's 0.08 for small targets"
    )

    @field_validator("lr_grid")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if not v or any(x <= 0 for x in v):
            raise ValueError("lr_grid needs at least one positive value")
        return v


class DenseConfig(Section):
    """The dense protocols' model (issue 20): the detectors' and the segmentation head's settings; the schedule and
    learning rates are ``finetune``'s."""

    head: Literal["auto", "c4", "fpn", "last"] = Field(
        "auto", description="detection head: c4 (torchvision ResNets: layer4 on every RoI, 000), fpn (a feature "
        "pyramid over the backbone's stages) or last (the last feature map alone); auto: c4, else fpn, else last"
    )  # fmt: skip
    hidden: int = Field(128, ge=8, description="width of the narrow heads (box, mask, segmentation)")
    rois: int = Field(32, ge=1, description="RoIs sampled per training image")
    frozen_bn: bool = Field(False, description="freeze the backbone's batch norm (statistics and affine parameters)")


class EvalConfig(Section):
    """``thresher evaluate``: a checkpoint (or a random-init backbone) on a target's train/test split."""

    checkpoint: str | None = runtime(
        None, description="pre-trained checkpoint or run folder (fingerprinted by content)"
    )
    backbone: str | None = Field(None, description="backbone name (default: the one recorded in a thresher checkpoint)")
    random_init: bool = Field(False, description="baseline: the backbone with random weights (frozen for linear)")
    encoder: str | None = added(
        None, description="a public pre-trained encoder instead of a checkpoint: torchvision:NAME:WEIGHTS (its "
        "ResNets), timm:NAME or a thresher run; its weights file from the library's cache, at this evaluation's "
        "resolution"
    )  # fmt: skip
    train: DataConfig
    test: DataConfig
    protocol: str = Field(
        "linear",
        description="linear, finetune, fewshot, lpft, zeroshot (clip models), detection, "
        "instance-segmentation or segmentation",
    )
    shots: int | None = Field(None, ge=1, description="fewshot: labels in total (every class at least once, 001)")
    shots_per_class: int | None = Field(None, ge=1, description="fewshot: labels per class instead (002)")
    fewshot_protocol: Literal["linear", "finetune"] = Field("linear", description="what trains on the few shots")
    seeds: int = Field(3, ge=1, description="repeats; the seed drives head init, data order, augmentation, draws")
    seed: int = Field(0, description="first seed")
    resolution: int = Field(32, ge=8, le=1024)
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="validation split carved from train, per class")
    min_val_per_class: int = Field(
        3, ge=1, description="below this many validation examples per class, fixed documented defaults are used"
    )
    linear: LinearConfig = LinearConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    dense: DenseConfig = added(DenseConfig(), description="the dense protocols' model settings")
    cache: str | None = runtime(None, description="folder for cached features and fine-tuned runs (default OUT/cache)")
    runtime: RuntimeConfig = RuntimeConfig()

    def finetune_values(self, *, backbone: str, init: str | None, lr: float, seed: int) -> dict:
        """The training-config values of one fine-tuning run on the training split (every fine-tuning protocol's,
        the dense ones too): ``finetune``'s schedule at ``lr``, from ``init``, at the evaluation's resolution."""
        fc = self.finetune
        return {"data": self.train.model_dump(), "backbone": backbone, "init": init, "resolution": self.resolution,
                "epochs": fc.epochs, "batch_size": fc.batch_size, "optim": {"lr": lr, "weight_decay": fc.weight_decay},
                "seed": seed, "runtime": self.runtime.model_dump()}  # fmt: skip

    @model_validator(mode="after")
    def _model_given(self) -> EvalConfig:
        from ..errors import ThresherError
        from .protocols import PROTOCOLS

        try:
            PROTOCOLS.get(self.protocol)
        except ThresherError as exc:
            raise ValueError(str(exc)) from None
        if sum((self.random_init, bool(self.checkpoint), bool(self.encoder))) != 1:
            raise ValueError("give one of --checkpoint, --encoder or --backbone NAME --random-init")
        if self.encoder:
            from ..models.encoders import parse_encoder

            try:
                parse_encoder(self.encoder)  # the name is checked now; the weights are read when the run needs them
            except ThresherError as exc:
                raise ValueError(str(exc)) from None
        if self.random_init and not self.backbone:
            raise ValueError("--random-init needs --backbone NAME")
        if self.protocol == "fewshot" and (self.shots is None) == (self.shots_per_class is None):
            raise ValueError("fewshot needs exactly one of --shots N (in total) or --shots-per-class K")
        return self
