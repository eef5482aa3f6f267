"""``thresher demo``: the most complete pipeline so far on built-in real data (inspect -> pre-train -> embed).

Settings are fixed here, before any result was seen; the study issue replaces this with the full comparison.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import DataConfig
from .data import open_dataset
from .data.summary import contact_sheet, dataset_info, format_info
from .embed import EmbedConfig, embed
from .pretrain.config import TrainConfig
from .pretrain.run import pretrain

POOL = "builtin:tiny-imagenet-32:train"
TARGETS = ("builtin:cifar10:train", "builtin:fashion-mnist:train")


def run_demo(out: Path, *, quick: bool = False, data_root: str | None = None, force: bool = False, echo=print) -> dict:
    """Inspect the built-in data, pre-train a small CNN on the pool, embed pool and targets with it."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    echo("== 1. the data")
    for spec in (POOL, *TARGETS):
        echo(format_info(dataset_info(open_dataset(spec, data_root=data_root))))
    sheet = contact_sheet(open_dataset(POOL, data_root=data_root), out / "pool_sheet.png")
    echo(f"contact sheet of the pool: {sheet}")

    echo("\n== 2. supervised pre-training on the pool (small-cnn, 32 px)")
    pool_subset = 6000 if quick else None  # --quick shrinks the pool only; the targets are small already
    train_cfg = TrainConfig(
        data=DataConfig(spec=POOL, subset=pool_subset, data_root=data_root),
        backbone="small-cnn",
        resolution=32,
        epochs=2 if quick else 8,
        batch_size=128,
    )
    summary = pretrain(train_cfg, out / "pretrain", force=force, log=echo)
    echo(
        f"loss per epoch: {summary['epoch_loss']}, train accuracy per epoch: "
        f"{[round(a, 3) for a in summary['epoch_acc']]}"
    )
    echo(
        f"cost: {summary['cost']['images']} images, {summary['cost']['flops'] / 1e12:.2f} TFLOPs, "
        f"{summary['cost']['seconds']:.0f} s"
    )

    echo("\n== 3. embeddings of the pool and the targets with the pre-trained backbone")
    stores = {}
    for name, spec in (("pool", POOL), ("cifar10", TARGETS[0]), ("fashion-mnist", TARGETS[1])):
        cfg = EmbedConfig(
            data=DataConfig(spec=spec, subset=pool_subset if spec == POOL else None, data_root=data_root),
            backbone="small-cnn",
            checkpoint=str(out / "pretrain" / "checkpoint.pt"),
            resolution=32,
        )
        stores[name] = embed(cfg, out / f"embed-{name}", force=force, log=echo)
    echo(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; results under {out}")
    return {"pretrain": summary, "stores": {k: v.shape for k, v in stores.items()}}
