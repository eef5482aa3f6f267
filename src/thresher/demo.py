"""``thresher demo``: a small study on built-in real data, from the pool to the report.

Source tiny-imagenet-32 (30k images, 200 classes); targets cifar10 (small shift) and fashion-mnist (large shift);
random, domain-classifier, cluster-min and importance at a 10% budget, against no pre-training and the whole pool,
compute-matched at half of C (C = the whole pool for 8 epochs; issue 18): every arm pre-trains for 0.5 C minus what
its scoring cost, so a 10% subset trains about 40 epochs, and the whole pool is shown at 0.5 C and at C; supervised
pre-training of a small CNN at 32 px; fine-tuning on a 2,000-image subset of each target's training split, tested on
2,000 test images, two seeds; then the report. Scoring uses the shared proxy models (one cheap target model per
target, issue 17), and every result says what it cost.

The settings below were fixed from the time budget (under 15 minutes on 2 CPU cores; ``--quick`` under 3) before
any result was seen, and the output is reported as it comes: no seed or setting is chosen so that a method wins.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import build_config
from .data import open_dataset
from .data.summary import dataset_info, format_info
from .report import markdown_table, write_report
from .study import StudyConfig, run_study

POOL = "builtin:tiny-imagenet-32:train"
TARGETS = {"cifar10": "builtin:cifar10", "fashion-mnist": "builtin:fashion-mnist"}


def demo_config(*, quick: bool = False, data_root: str | None = None) -> StudyConfig:
    """The demo's study, fixed in advance (``quick``: a smaller pool and shorter runs)."""
    n_train, n_test = (1000, 1000) if quick else (2000, 2000)
    epochs = 3 if quick else 8

    def split(spec: str, n: int) -> dict:
        return {"spec": spec, "subset": n, "data_root": data_root}

    return build_config(
        StudyConfig,
        values={
            "source": {"spec": POOL, "subset": 6000 if quick else None, "data_root": data_root},
            "targets": [
                {"name": name, "train": split(f"{spec}:train", n_train), "test": split(f"{spec}:test", n_test)}
                for name, spec in TARGETS.items()
            ],
            "methods": ["domain-classifier", "cluster-min", "importance"],
            "budgets": [0.1],
            "compute": [0.5],
            "resolutions": [32],
            "objectives": ["supervised"],
            "pretrain": {"backbone": "small-cnn", "epochs": epochs, "batch_size": 128, "lr": 0.1},
            "score": {
                "models": {"target_epochs": 4 if quick else 15},
                "params": {"domain-classifier": {"epochs": 2 if quick else 4}},
            },
            "evaluation": {
                "protocol": "finetune",
                "seeds": 1 if quick else 2,
                # one learning rate for every arm: the same tuning budget for all, and half the time of a grid
                # batches of 32: a few thousand target images need more than a handful of steps per epoch
                "finetune": {"epochs": 4 if quick else 8, "batch_size": 32, "lr_grid": [0.03], "default_lr": 0.03},
            },
            "runtime": {"progress": False},
        },
    )


def run_demo(out: Path, *, quick: bool = False, data_root: str | None = None, force: bool = False, echo=print) -> dict:
    """Describe the data, run the demo study (resumable), print its table and write the report."""
    t0 = time.perf_counter()
    out = Path(out)
    echo("== the data")
    for spec in (POOL, *(f"{s}:train" for s in TARGETS.values())):
        echo(format_info(dataset_info(open_dataset(spec, data_root=data_root))))
    echo("\n== the study (every stage cached: re-running resumes)")
    results = run_study(demo_config(quick=quick, data_root=data_root), out, force=force, log=echo)
    echo("\n== results\n")
    echo(markdown_table(results))
    md, page = write_report(out, log=echo)
    echo(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; open {page}")
    return results
