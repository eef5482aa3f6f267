"""Shared by the evidence benchmarks: the data they use, the argument parser with ``--scale``, and the three steps
most of them repeat (pre-train small-cnn, score the pool against a target, evaluate a model on a target).

Everything runs through thresher's public functions, as a user's script would; each step is quiet.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from thresher.config import build_config
from thresher.evaluate.config import EvalConfig
from thresher.evaluate.run import evaluate
from thresher.pretrain.run import pretrain
from thresher.scoring.pipeline import ScoreConfig, score
from thresher.train.config import TrainConfig

POOL = "builtin:tiny-imagenet-32:train"
TARGETS = {"cifar10": "builtin:cifar10", "fashion-mnist": "builtin:fashion-mnist"}
QUIET = {"log": lambda *_: None}


def parser(doc: str, scale_help: str = "multiply epochs and target sizes (GPU machines)") -> argparse.ArgumentParser:
    """An argument parser described by the script's docstring, with the ``--scale`` every benchmark takes."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help=scale_help)
    return ap


class Clock:
    """Minutes since the script started, for the section's stamp."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60


def small_cnn(epochs: int, resolution: int = 32, **values) -> dict:
    """The training values every supervised arm shares: small-cnn, batch 128, no progress bar."""
    return {"backbone": "small-cnn", "resolution": resolution, "epochs": epochs, "batch_size": 128,
            "runtime": {"progress": False}, **values}  # fmt: skip


def train(folder: Path, **values) -> dict:
    """Pre-train with ``values`` (a TrainConfig as a dict) into ``folder``; returns the run's summary."""
    return pretrain(build_config(TrainConfig, values=values), folder, **QUIET)


def score_pool(folder: Path, target: str, source_model: Path, epochs: int, methods: list[str]) -> Path:
    """Score the pool against ``target`` (a dataset spec) with the given pool model and the papers' other models
    (preset paper); returns scores.parquet."""
    cfg = build_config(ScoreConfig, values={
        "source": {"spec": POOL}, "target": {"spec": target}, "methods": methods, "source_model": str(source_model),
        "models": {"preset": "paper", "source_epochs": epochs}, "runtime": {"progress": False},
    })  # fmt: skip
    return score(cfg, folder, **QUIET)


def top1(folder: Path, model: dict, target: str, *, protocol: str = "linear", seeds: int = 3,
         n_train: int | None = None, n_test: int | None = None, **values) -> dict:  # fmt: skip
    """Evaluate ``model`` ({"checkpoint": ...} or {"backbone": ..., "random_init": True}) on ``target`` (e.g.
    builtin:cifar10); returns the summary's top-1 (mean, std, ...)."""
    train_split = {"spec": f"{target}:train", **({"subset": n_train} if n_train else {})}
    test_split = {"spec": f"{target}:test", **({"subset": n_test} if n_test else {})}
    cfg = build_config(EvalConfig, values={
        **model, "train": train_split, "test": test_split, "protocol": protocol, "seeds": seeds,
        "runtime": {"progress": False}, **values,
    })  # fmt: skip
    return evaluate(cfg, folder, **QUIET)["summary"]["top1"]
