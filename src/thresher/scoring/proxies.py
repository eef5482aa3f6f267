"""The models scorers read by default, and how big they are (issue 17: scoring must cost a small fraction of the
pre-training it saves).

Two presets. ``proxy`` (the default) trains one cheap shared model per target: a target proxy, small-cnn at half
width (a quarter of the FLOPs) at 32 px, on the target's labels with a cap on the images it processes. Clustering,
entropy and kNN read its embeddings; importance's source classifier is softmax regression fitted on the pool's
labels over its embeddings of the pool; the domain classifier's fold CNNs start from it and train on a sample of the
pool. A source proxy (the pool classifier on a sample of the pool, started from the target proxy) serves
``source_features: source-model``. Measured on tiny-imagenet-32 against cifar10 (issue 17's sweep), source proxies
that cost under 0.10 C selected worse than the target proxy's features (top-10% share of cifar-like classes, seed 0:
kNN 0.14-0.21, importance 0.05-0.30, against 0.215 and 0.35 from the target proxy); ``bench/score_cost.py``
measures the defaults over three seeds.
``paper`` is the behaviour before issue 17, the papers' own settings: small-cnn trained on the whole pool for 8
epochs (004's source classifier, also behind kNN), fold CNNs started from pool models trained on the other folds
(000). At the demo's settings every scorer costs at most 0.10 C under ``proxy`` (C: one whole-pool pre-training,
8 epochs at 32 px); ``paper`` costs 0.36-1.6 C per scorer.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import Section
from ..errors import ThresherError

#: every preset's settings, in one place; a key the user sets wins over its preset's value
PRESETS: dict[str, dict[str, Any]] = {
    "proxy": {
        "backbone": "small-cnn-half",
        "resolution": 32,
        "source_features": "target-model",
        "source_sample": 0.35,
        "source_epochs": 4,
        "source_init": "target-model",
        "target_epochs": 15,
        "target_images": 40_000,
        "fold_init": "target-model",
        "fold_pool_sample": 2_500,
    },
    "paper": {
        "backbone": "small-cnn",
        "resolution": 32,
        "source_features": "source-model",
        "source_sample": 1.0,
        "source_epochs": 8,
        "source_init": "none",
        "target_epochs": 15,
        "target_images": 0,
        "fold_init": "source-model",
        "fold_pool_sample": 1.0,
    },
}
FOLD_INITS = ("source-model", "target-model", "none")


class FeatureModelConfig(Section):
    """The models scorers read by default: ``preset`` fills every setting left unset (``proxy``: cheap shared
    proxies; ``paper``: the papers' whole-pool models, as before issue 17)."""

    preset: Literal["proxy", "paper"] = Field("proxy", description="proxy (cheap shared models) or paper")
    backbone: str | None = Field(None, description="backbone of the target and source models")
    resolution: int | None = Field(None, ge=8, le=1024, description="resolution the models train and embed at")
    source_features: Literal["source-model", "target-model"] | None = Field(
        None,
        description="whose embeddings importance, kNN and feature near-duplicates read: the source model (its head "
        "is importance's source classifier) or the target model (importance fits a softmax head on the pool's "
        "features and labels)",
    )
    source_sample: int | float | None = Field(
        None, gt=0, description="pool examples the source model trains on: a fraction (<= 1) or a count"
    )
    source_epochs: int | None = Field(None, ge=1, description="epochs of the model trained on the source labels")
    source_init: Literal["none", "target-model"] | None = Field(
        None, description="what the source model starts from: random weights, or the target model's backbone"
    )
    target_epochs: int | None = Field(None, ge=1, description="epochs of the model trained on the target")
    target_images: int | None = Field(
        None, ge=0, description="at most this many images processed by the target model (fewer epochs); 0: no cap"
    )
    fold_init: Literal["source-model", "target-model", "none"] | None = Field(
        None, description="what the domain classifier's fold CNNs start from"
    )
    fold_pool_sample: int | float | None = Field(
        None, gt=0, description="pool examples each domain-classifier fold CNN trains on: a fraction or a count"
    )
    batch_size: int = Field(128, ge=2)
    lr: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _fill_from_preset(self) -> FeatureModelConfig:
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                self.__dict__[key] = value  # not an assignment: model_fields_set keeps what the user set
        return self


def sample_size(sample: float, n: int, what: str) -> int:
    """A sample given as a fraction (<= 1) or a count, as a number of examples out of ``n``."""
    if sample <= 1:
        return max(1, min(n, round(sample * n)))
    if sample != int(sample):
        raise ThresherError(f"{what}: a count must be a whole number, got {sample}")
    return min(n, int(sample))


def sample_positions(n: int, sample: float, seed: int, what: str) -> np.ndarray | None:
    """Sorted positions of a seeded random sample of ``n`` examples, or None when the sample is all of them."""
    k = sample_size(sample, n, what)
    if k >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def target_epochs(models: FeatureModelConfig, n_target: int) -> int:
    """The target model's epochs: ``target_epochs``, fewer when ``target_images`` caps the images it processes."""
    epochs = int(models.target_epochs)
    if models.target_images:
        epochs = max(1, min(epochs, models.target_images // max(1, n_target)))
    return epochs
