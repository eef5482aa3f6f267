"""Command-line interface (thin: parse, build a config, call the library). Errors are one line, exit code 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import ThresherError, one_line

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="thresher: score a source pool against your target, select, pre-train, evaluate.",
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets named by spec strings.")
app.add_typer(data_app, name="data")
models_app = typer.Typer(no_args_is_help=True, help="Backbones thresher can build.")
app.add_typer(models_app, name="models")

_STATE = {"debug": False}

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (CLI flags override it).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Dotted config override, e.g. --set resolution=64 (repeatable).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace results of a different config in --out.")]
DataRootOpt = Annotated[str | None, typer.Option("--data-root", help="Folder searched first for built-in datasets.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable image instead of skipping it.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto (default), cpu, cuda or cuda:N.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Data-loading worker processes (default 0).")]
SubsetOpt = Annotated[int | None, typer.Option("--subset", help="Use a random subset of this many examples.")]
EngineOpt = Annotated[
    str | None, typer.Option("--engine", help="Embedding forward passes: local (default) or ray (Ray Data).")
]
RayAddressOpt = Annotated[
    str | None, typer.Option("--ray-address", help="Ray cluster to join with --engine ray (default: a local Ray).")
]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False) -> None:
    _STATE["debug"] = debug


def _values(**kw) -> dict:
    """Nested config values from CLI flags, dropping those not given (so the YAML file or defaults stand)."""
    out: dict = {}
    for key, value in kw.items():
        if value is None:
            continue
        node = out
        parts = key.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


# --- data -------------------------------------------------------------------------------------------


@data_app.command("list")
def data_list(data_root: DataRootOpt = None) -> None:
    """List the built-in datasets, where each was found, and the spec kinds thresher reads."""
    from .data import DATASETS
    from .data.builtin import BUILTINS, locate

    for b in BUILTINS.values():
        found = {s: locate(b, s, data_root) for s in b.splits}
        fallback = "not found locally"
        if b.debian and Path(b.debian).is_dir():
            fallback = f"from {b.debian}"
        elif b.download:
            fallback = f"not found locally; obtained on first use or by `thresher data download {b.name}`"
        where = (
            fallback
            if not any(found.values())
            else ", ".join(f"{s}: {p}" if p else f"{s}: {fallback}" for s, p in found.items())
        )
        typer.echo(f"builtin:{b.name:<22} {b.description}\n    {where}")
    typer.echo("spec kinds: " + ", ".join(f"{k}:" for k in DATASETS))


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="A built-in: tiny-imagenet-32, tiny-imagenet-32-full, cifar10, ...")],
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from", help="Convert this tiny-imagenet-200.zip (or its unpacked folder) instead of downloading."
        ),
    ] = None,
    to: Annotated[
        Path | None, typer.Option("--to", help="Data root to write into (default: the cache's data folder).")
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="A mirror of the archive (the checksum still applies).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Obtain it again even when the copy is complete.")] = False,
) -> None:
    """Download (or convert an archive you have) a built-in dataset into the cache, where the lookup finds it."""
    _check_out(to, "--to")
    from .data.builtin import download_builtin

    download_builtin(name, source=from_, dest_root=to, url=url, force=force, log=typer.echo)


@data_app.command("make-dense")
def data_make_dense(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for train.json, test.json and their images.")] = ...,
    size: Annotated[int | None, typer.Option(help="Image side in pixels (default 96).")] = None,
    train: Annotated[int | None, typer.Option(help="Training images (default 1000).")] = None,
    test: Annotated[int | None, typer.Option(help="Test images (default 400).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed: the same folder comes out for the same seed.")] = None,
    data_root: DataRootOpt = None,
    force: ForceOpt = False,
) -> None:
    """A small real detection / segmentation task in COCO format: Fashion-MNIST silhouettes on real backgrounds."""
    _check_out(out)
    from .config import build_config
    from .data.make_dense import MakeDenseConfig, make_dense

    cfg = build_config(MakeDenseConfig, values=_values(size=size, train=train, test=test, seed=seed,
                                                       data_root=data_root))  # fmt: skip
    make_dense(cfg, out, force=force, log=typer.echo)


@data_app.command("info")
def data_info(
    spec: Annotated[str, typer.Argument(help="Dataset spec, e.g. builtin:tiny-imagenet-32:train or folder:PATH.")],
    sheet: Annotated[Path | None, typer.Option("--sheet", help="Write a PNG contact sheet of samples here.")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Decode every image and report unreadable ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    data_root: DataRootOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Count, classes, image shapes and label histogram of a dataset."""
    _check_out(sheet, "--sheet", file=True)
    from .data import open_dataset
    from .data.summary import contact_sheet, dataset_info, format_info

    ds = open_dataset(spec, data_root=data_root, strict=strict)
    info = dataset_info(ds, verify=verify or strict)  # --strict asks for every image to be checked
    if strict and info.get("unreadable", {}).get("count"):
        raise ThresherError(
            f"{info['unreadable']['count']} unreadable image(s) in {spec} "
            f"(first: {', '.join(info['unreadable']['first'])})"
        )
    typer.echo(json.dumps(info, indent=2) if as_json else format_info(info))
    if sheet is not None:
        typer.echo(f"contact sheet: {contact_sheet(ds, sheet)}")


@models_app.command("list")
def models_list() -> None:
    """Registered backbones with their feature dimension and parameter count."""
    from .models import BACKBONES, create_backbone

    for name in BACKBONES:
        m = create_backbone(name)
        params = sum(p.numel() for p in m.parameters()) / 1e6
        typer.echo(f"{name:<16} feature_dim {m.feature_dim:>5}   {params:6.2f}M parameters")
    typer.echo("timm:<name>      any timm model (pip install 'thresher[timm]')")


# --- embed --------------------------------------------------------------------------------------------


@app.command()
def embed(
    spec: Annotated[str | None, typer.Argument(help="Dataset spec to embed (or data.spec in --config).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for the embedding store.")] = ...,
    backbone: Annotated[str | None, typer.Option(help="Backbone name (see: thresher models list).")] = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="Weights: thresher run/checkpoint, torchvision, timm or MoCo.")
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="A pre-trained encoder by name instead of --backbone/--checkpoint: torchvision:NAME:WEIGHTS, "
            "timm:NAME or a thresher run, at its own resolution and normalisation."
        ),
    ] = None,
    resolution: Annotated[int | None, typer.Option(help="Square input resolution in pixels.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 (default) or float16.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per forward pass.")] = None,
    shard_size: Annotated[int | None, typer.Option(help="Rows per .npy shard (unit of resume).")] = None,
    subset: SubsetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    data_root: DataRootOpt = None,
    strict: StrictOpt = False,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Embed a dataset with a backbone into a resumable, memory-mapped store (.npy shards + ids.parquet)."""
    _check_out(out)
    from .config import build_config
    from .embed import EmbedConfig
    from .embed import embed as run_embed

    checkpoint = _checkpoint_file(checkpoint)
    values = _values(
        data__spec=spec,
        data__subset=subset,
        data__data_root=data_root,
        data__strict=strict or None,
        backbone=backbone,
        checkpoint=checkpoint,
        encoder=encoder,
        resolution=resolution,
        dtype=dtype,
        batch_size=batch_size,
        shard_size=shard_size,
        runtime__device=device,
        runtime__num_workers=workers,
        runtime__engine=engine,
        runtime__ray_address=ray_address,
    )
    cfg = build_config(EmbedConfig, file=config, values=values, overrides=set_)
    store = run_embed(cfg, out, force=force, log=typer.echo)
    typer.echo(f"{store.path}: {store.shape[0]} x {store.shape[1]} {store.dtype}")


# --- pretrain (the one training loop: objectives, data schedules, HPT chains) ---------------------------------


@app.command()
def pretrain(
    spec: Annotated[str | None, typer.Argument(help="Training dataset spec (or data.spec in --config).")] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run folder (its checkpoint, log.jsonl, summary.json).")
    ] = ...,
    backbone: Annotated[str | None, typer.Option(help="Backbone name, e.g. small-cnn, resnet18.")] = None,
    objective: Annotated[str | None, typer.Option(help="Objective name (default supervised).")] = None,
    init: Annotated[str | None, typer.Option(help="Initialise the backbone from this checkpoint.")] = None,
    resolution: Annotated[int | None, typer.Option(help="Square training resolution in pixels.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Number of epochs.")] = None,
    steps: Annotated[
        int | None, typer.Option(help="The run's length in optimizer steps instead of epochs (0: no step).")
    ] = None,
    images: Annotated[int | None, typer.Option(help="The run's length in images processed instead of epochs.")] = None,
    keep_at: Annotated[
        str | None, typer.Option("--keep-at", help="Also keep the weights after these steps (e.g. 50,500): RUN@STEP.")
    ] = None,
    recalibrate_bn: Annotated[
        bool,
        typer.Option(
            "--recalibrate-bn", help="Recompute batch-norm statistics on the training images after the steps (001)."
        ),
    ] = False,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Base learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of init, data order and augmentation.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Checkpoint every N steps (default: each epoch, and every 10 minutes).")
    ] = None,
    manifest: Annotated[
        str | None, typer.Option(help="Selection manifest folder: train on its ids, repeated by their counts.")
    ] = None,
    schedule: Annotated[str | None, typer.Option(help="Data schedule: full (default) or drop-and-pick.")] = None,
    train: Annotated[str | None, typer.Option(help="Parameters to train: all (default) or bn (HPT-BN).")] = None,
    chain: Annotated[
        Path | None, typer.Option(help="Chain YAML (base, defaults, stages): run each stage from the previous one.")
    ] = None,
    subset: SubsetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    data_root: DataRootOpt = None,
    strict: StrictOpt = False,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Pre-train a backbone with the one training loop; re-running on the same --out resumes."""
    _check_out(out)
    from .config import build_config
    from .pretrain.run import pretrain as run_pretrain
    from .train.config import TrainConfig

    if chain is not None:
        from .pretrain.chain import ChainConfig, run_chain

        if spec or config or manifest:
            raise ThresherError("--chain takes its data from the chain file; drop the dataset, --config and --manifest")
        ccfg = build_config(ChainConfig, file=chain, overrides=set_)
        result = run_chain(
            ccfg,
            out,
            force=force,
            log=typer.echo,
            runtime_values=_values(runtime__device=device, runtime__num_workers=workers),
        )
        cost = result["cost"]
        typer.echo(f"{out}: {len(result['stages'])} stages, {cost['images']} images in {cost['seconds']:.1f} s")
        typer.echo(f"final checkpoint: {result['checkpoint']}")
        return
    if manifest and not spec:
        from .data.manifest import Manifest

        spec = Manifest.source_of(manifest)
    values = _values(
        data__spec=spec,
        data__subset=subset,
        data__data_root=data_root,
        data__strict=strict or None,
        backbone=backbone,
        objective=objective,
        init=_checkpoint_file(init),
        resolution=resolution,
        epochs=epochs,
        steps=steps,
        images=images,
        keep_at=_listed(keep_at, "--keep-at"),
        recalibrate_bn=recalibrate_bn or None,
        batch_size=batch_size,
        optim__lr=lr,
        seed=seed,
        checkpoint_every=checkpoint_every,
        manifest=manifest,
        schedule=schedule,
        train=train,
        runtime__device=device,
        runtime__num_workers=workers,
    )
    cfg = build_config(TrainConfig, file=config, values=values, overrides=set_)
    summary = run_pretrain(cfg, out, force=force, log=typer.echo)
    from .distributed import info

    if not info().main:  # under torchrun, rank 0 reports
        return
    losses = ", ".join(f"{v:.3f}" for v in summary["epoch_loss"])
    cost = summary["cost"]
    typer.echo(
        f"{out}: {summary['steps']} steps, loss per epoch [{losses}], {cost['images']} images in "
        f"{cost['seconds']:.1f} s, computation {cost['computation']:.0%} of the full schedule"
    )


@app.command()
def score(
    source: Annotated[
        str | None, typer.Option("--source", help="Source pool spec, e.g. builtin:tiny-imagenet-32.")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Target spec, e.g. builtin:cifar10:train.")] = None,
    target_test: Annotated[
        str | None,
        typer.Option(
            "--target-test",
            help="The target's test split (e.g. builtin:cifar10:test): pool images near-identical to it are excluded.",
        ),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            "-m",
            help="Scorer (repeatable): domain-classifier, cluster-min, cluster-avg, entropy, inverse-entropy, "
            "importance, knn, random.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for scores.parquet.")] = ...,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="Score with a pre-trained encoder, paying only forward passes: torchvision:NAME:WEIGHTS, timm:NAME "
            "or a thresher checkpoint/run (weights from the libraries' caches)."
        ),
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="Embedding store of the source, or a checkpoint/run to embed both sides with.")
    ] = None,
    target_features: Annotated[
        str | None, typer.Option(help="Embedding store of the target (with a source store).")
    ] = None,
    features_backbone: Annotated[
        str | None, typer.Option(help="Backbone of a non-thresher --features checkpoint.")
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            help="Workspace of models and embeddings, computed once and shared between runs (default OUT/cache)."
        ),
    ] = None,
    source_subset: Annotated[int | None, typer.Option(help="Score a random subset of the pool of this size.")] = None,
    target_subset: Annotated[int | None, typer.Option(help="Use a random subset of the target of this size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of models, folds and tie-breaking.")] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Default models: proxy (cheap shared proxies, the default) or paper (whole-pool models)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Estimate each method's cost (FLOPs, fraction of C) and stop.")
    ] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    data_root: DataRootOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Score every source example against the target with one or more methods; one scores.parquet, a column each."""
    _check_out(out)
    from .config import build_config
    from .scoring.pipeline import ScoreConfig
    from .scoring.pipeline import score as run_score

    values = _values(
        source__spec=source,
        source__subset=source_subset,
        source__data_root=data_root,
        target__spec=target,
        target__subset=target_subset,
        target__data_root=data_root,
        target_test__spec=target_test,
        target_test__data_root=data_root if target_test else None,
        methods=method or None,
        encoder=encoder,
        features=features,
        target_features=target_features,
        features_backbone=features_backbone,
        cache=cache,
        seed=seed,
        models__preset=preset,
        runtime__device=device,
        runtime__num_workers=workers,
        runtime__engine=engine,
        runtime__ray_address=ray_address,
    )
    cfg = build_config(ScoreConfig, file=config, values=values, overrides=set_)
    if dry_run:
        from .scoring.estimate import estimate, format_estimate
        from .scoring.pipeline import build_scorers

        typer.echo(format_estimate(estimate(cfg, build_scorers(cfg))))
        return
    path = run_score(cfg, out, force=force, log=typer.echo)
    typer.echo(f"scores: {path}")


@app.command("select")
def select_cmd(
    scores: Annotated[str | None, typer.Option("--scores", help="scores.parquet or the score run folder.")] = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Score column to select by.")] = None,
    budget: Annotated[str | None, typer.Option(help="Fraction of the pool (0.1) or a count (3000).")] = None,
    mode: Annotated[str | None, typer.Option(help="top (default), weighted, elastic, classes or given.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for manifest.parquet and manifest.json.")] = ...,
    classes: Annotated[
        str | None,
        typer.Option(help="Mode classes: comma-separated class names or ids, or hand-picked:TARGET (cifar10, ...)."),
    ] = None,
    manifest: Annotated[str | None, typer.Option(help="Mode given: the fixed set's manifest (or its folder).")] = None,
    ancestor: Annotated[str | None, typer.Option(help="Mode classes: every class under this ancestor.")] = None,
    hierarchy: Annotated[str | None, typer.Option(help="Mode classes: file of 'child parent' lines.")] = None,
    transform: Annotated[
        str | None,
        typer.Option(help="Weighted/elastic: score-to-weight transform (auto, identity, rank, softmax, shift)."),
    ] = None,
    include_near_duplicates: Annotated[
        bool, typer.Option("--include-near-duplicates", help="Allow near-duplicates of target images.")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling and tie-breaking.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Turn scores into a pre-training set: a Manifest (ids with weights and counts) any training run can read."""
    _check_out(out)
    from .config import build_config
    from .select_run import SelectConfig, run_select

    params = {
        k: v
        for k, v in (
            ("classes", classes),
            ("ancestor", ancestor),
            ("hierarchy", hierarchy),
            ("transform", transform),
            ("manifest", manifest),
        )
        if v is not None
    }
    values = _values(
        scores=scores,
        method=method,
        budget=budget,
        mode=mode,
        seed=seed,
        include_near_duplicates=include_near_duplicates or None,
        params=params or None,
    )
    cfg = build_config(SelectConfig, file=config, values=values, overrides=set_)
    m = run_select(cfg, out, force=force, log=typer.echo)
    typer.echo(f"manifest: {Path(out) / 'manifest.parquet'} ({m.n_unique} unique, {m.total_count} draws)")


@app.command()
def inspect(folder: Annotated[Path, typer.Argument(help="A select run folder (holding manifest.parquet).")]) -> None:
    """Class histogram of a selection against its pool; contact sheets of the top and bottom examples."""
    from .select_run import inspect_selection

    inspect_selection(folder, log=typer.echo)


@app.command("evaluate")
def evaluate_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for metrics.json and predictions.npz.")] = ...,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Pre-trained checkpoint or run folder to evaluate.")
    ] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone name (needed for non-thresher checkpoints).")] = None,
    random_init: Annotated[
        bool, typer.Option("--random-init", help="Baseline: the backbone with random weights (needs --backbone).")
    ] = False,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="A public pre-trained encoder instead of --checkpoint: torchvision:NAME:WEIGHTS (its ResNets), "
            "timm:NAME or a thresher run, from the library's cache."
        ),
    ] = None,
    train: Annotated[str | None, typer.Option("--train", help="Target training split spec.")] = None,
    test: Annotated[str | None, typer.Option("--test", help="Target test split spec.")] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help="linear (default), finetune, fewshot, lpft, zeroshot (clip models); detection, "
            "instance-segmentation, segmentation."
        ),
    ] = None,
    shots: Annotated[int | None, typer.Option(help="fewshot: labels in total, every class at least once.")] = None,
    shots_per_class: Annotated[int | None, typer.Option(help="fewshot: labels per class instead.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Repeats (default 3): mean, std and 95% interval.")] = None,
    resolution: Annotated[int | None, typer.Option(help="Square input resolution in pixels.")] = None,
    cache: Annotated[
        str | None,
        typer.Option(help="Workspace of features and fine-tuning runs, shareable with score (default OUT/cache)."),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    data_root: DataRootOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Measure what a checkpoint buys on a target: linear probe, fine-tune, few-shot, LP-FT or a dense protocol
    (detection, instance-segmentation, segmentation), over seeds."""
    _check_out(out)
    from .config import build_config
    from .evaluate.config import EvalConfig
    from .evaluate.run import evaluate

    values = _values(
        checkpoint=_checkpoint_file(checkpoint),
        backbone=backbone,
        random_init=random_init or None,
        encoder=encoder,
        train__spec=train,
        train__data_root=data_root,
        test__spec=test,
        test__data_root=data_root,
        protocol=protocol,
        shots=shots,
        shots_per_class=shots_per_class,
        seeds=seeds,
        resolution=resolution,
        cache=cache,
        runtime__device=device,
        runtime__num_workers=workers,
    )
    cfg = build_config(EvalConfig, file=config, values=values, overrides=set_)
    doc = evaluate(cfg, out, force=force, log=typer.echo)
    main_metric = doc["primary"]
    top1 = doc["summary"][main_metric]
    spread = f" +/- {top1['std']:.4f} (95% CI {top1['ci95'][0]:.4f}-{top1['ci95'][1]:.4f})" if top1["std"] else ""
    notes = sorted({d.get("note") for d in doc["seeds"] if d.get("note")})
    tuned = "" if doc["tuned"] else f" [not chosen on validation: {'; '.join(notes) or 'validation split too small'}]"
    name = {"top1": "top-1", "auroc_macro": "macro AUROC", "AP": "box AP" if doc["protocol"] == "detection"
            else "mask AP"}.get(main_metric, main_metric)  # fmt: skip
    typer.echo(
        f"{out}: {doc['protocol']} {name} {top1['mean']:.4f}{spread} over {top1['n']} seed(s){tuned}; "
        f"{_evaluation_cost(doc['cost'])}"
    )


def _evaluation_cost(cost: dict) -> str:
    """What an evaluation cost, and what the model it evaluated cost to pre-train when thresher trained it."""
    ev, pre = cost.get("evaluation") or {}, cost.get("pretraining")
    text = f"cost: evaluation {ev.get('flops', 0.0) / 1e12:.2f} TFLOPs, {ev.get('seconds', 0.0):.0f} s"
    if pre:
        text += f"; pre-training {pre.get('flops', 0.0) / 1e12:.2f} TFLOPs, {pre.get('seconds', 0.0):.0f} s"
    return text


@app.command("search-source")
def search_source_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for ranking.json.")] = ...,
    candidate: Annotated[
        list[str] | None, typer.Option("--candidate", help="Candidate source: dataset spec or checkpoint (repeatable).")
    ] = None,
    base: Annotated[str | None, typer.Option(help="Base checkpoint every candidate starts from.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone (default: recorded in the base checkpoint).")] = None,
    train: Annotated[str | None, typer.Option("--train", "--target", help="Target training split spec.")] = None,
    test: Annotated[str | None, typer.Option("--test", help="Target test split spec.")] = None,
    proxy: Annotated[str | None, typer.Option(help="none (linear probe, default), logme, or both.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Rank candidate sources for a target: short pre-training from the base, then a linear probe (or LogME)."""
    _check_out(out)
    from .config import build_config
    from .evaluate.search import SearchConfig, search_source

    values = _values(
        base=_checkpoint_file(base),
        backbone=backbone,
        candidates=candidate or None,
        train__spec=train,
        test__spec=test,
        proxy=proxy,
        runtime__device=device,
    )
    cfg = build_config(SearchConfig, file=config, values=values, overrides=set_)
    result = search_source(cfg, out, force=force, log=typer.echo)
    typer.echo(f"ranked by {result['ranked_by']}:")
    for r in result["rows"]:
        val = f"validation {r['validation']['mean']:.4f}" if "validation" in r else ""
        lm = f"LogME {r['logme']:.4f}" if "logme" in r else ""
        test = f"(test {r['test']['mean']:.4f})" if "test" in r else ""
        typer.echo(" ".join(f"  {r['rank']}. {r['candidate']}  {val}  {lm}  {test}".split("  ")).rstrip())


@app.command("compare")
def compare_cmd(
    run_a: Annotated[Path, typer.Argument(help="A thresher evaluate folder.")],
    run_b: Annotated[Path, typer.Argument(help="Another, on the same test set.")],
    test: Annotated[str | None, typer.Option("--test", help="The test split spec: adds RV2 of the features.")] = None,
    layer: Annotated[
        str | None, typer.Option(help="RV2 at this module (e.g. layer3, features.6); default the pooled features.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write comparison.json here.")] = None,
) -> None:
    """Two evaluated models on one test set: paired bootstrap, error IoU and (with --test) RV2 of their features."""
    from .evaluate.compare import compare

    _check_out(out)
    res = compare(run_a, run_b, test=test, layer=layer, out=out)
    pb = res["paired_bootstrap"]
    typer.echo(f"A {run_a}: top-1 {res['a']['top1']['mean']:.4f}   B {run_b}: top-1 {res['b']['top1']['mean']:.4f}")
    typer.echo(
        f"A - B = {pb['difference']:+.4f} (95% CI {pb['ci95'][0]:+.4f} to {pb['ci95'][1]:+.4f}, paired bootstrap "
        f"p = {pb['p_value']:.4f}); error IoU {res['error_iou']:.3f}"
        + (f"; RV2 of features {res['rv2']:.3f}" if "rv2" in res else "")
    )


@app.command("study")
def study_cmd(
    config: Annotated[Path, typer.Argument(help="Study YAML: source, targets, methods, budgets, evaluation, ...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Study folder (stages/, results.json, report).")] = ...,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan with its estimated cost; run nothing.")
    ] = False,
    set_: SetOpt = None,
    force: ForceOpt = False,
    device: DeviceOpt = None,
    report: Annotated[bool, typer.Option(help="Write report.md and report.html when done.")] = True,
) -> None:
    """Run a whole comparison (every stage cached by its inputs; a killed study resumes), then report it."""
    _check_out(out)
    from .config import build_config
    from .report import markdown_table, write_report
    from .study import StudyConfig, run_study

    cfg = build_config(StudyConfig, file=config, values=_values(runtime__device=device), overrides=set_)
    results = run_study(cfg, out, force=force, dry_run=dry_run, log=typer.echo)
    if dry_run:
        return
    typer.echo(markdown_table(results))
    if report:
        write_report(out, log=typer.echo)


@app.command("plan")
def plan_cmd(
    folder: Annotated[
        Path | None, typer.Argument(help="With --check: a finished plan's folder (its recommendation is run).")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="Source pool spec.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Target training split spec.")] = None,
    target_test: Annotated[
        str | None, typer.Option("--target-test", help="Target test split spec (read by --check only).")
    ] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="0.5C (C: one whole-pool pre-training), 2e6images, 3h or 90min.")
    ] = None,
    methods: Annotated[
        str | None, typer.Option("--methods", help="Scorers, comma-separated (random always in).")
    ] = None,
    fractions: Annotated[str | None, typer.Option("--fractions", help="Subset fractions, e.g. 0.1,0.3.")] = None,
    resolutions: Annotated[str | None, typer.Option("--resolutions", help="Resolutions, e.g. 16,32.")] = None,
    objective: Annotated[str | None, typer.Option(help="Pre-training objective (default supervised).")] = None,
    epochs: Annotated[int | None, typer.Option(help="C: the whole pool for this many epochs (default 8).")] = None,
    share: Annotated[float | None, typer.Option(help="Budget share for scoring and pilots (0.25).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Plan folder (plan.md, plan.html, stages/).")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Run the plan's recommendation and the whole pool at the full budget.")
    ] = False,
    subset: SubsetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    data_root: DataRootOpt = None,
    device: DeviceOpt = None,
) -> None:
    """What to pre-train on, and for how long, for a compute budget: cheap pilots, fitted curves, a recommendation."""
    from .plan.run import check_plan, run_plan

    if check:
        if folder is None:
            raise ThresherError("--check takes the plan's folder: thresher plan DIR --check")
        result = check_plan(folder, target_test=target_test, log=typer.echo)
        for role, r in result["rows"].items():
            p = r["predicted"]
            typer.echo(f"{role.replace('_', ' ')}: {r['candidate']}: predicted {p['mean']:.3f} ({p['low']:.3f}-"
                       f"{p['high']:.3f}), measured {r['measured']:.3f} ({'in' if r['in_interval'] else 'outside'} "
                       f"the interval), test top-1 {r['test_top1']:.3f}, {r['total_C']:.3g} C")  # fmt: skip
        return
    if folder is not None:
        raise ThresherError(f"a folder argument ({folder}) goes with --check; to plan, give --out DIR")
    if out is None:
        raise ThresherError("give --out DIR: the plan's folder")
    _check_out(out)
    from .config import build_config
    from .plan.config import PlanConfig

    values = _values(
        source__spec=source,
        source__subset=subset,
        source__data_root=data_root,
        target__spec=target,
        target__data_root=data_root if target else None,
        target_test__spec=target_test,
        target_test__data_root=data_root if target_test else None,
        budget=budget,
        methods=_listed(methods, "--methods", str),
        fractions=_listed(fractions, "--fractions", float),
        resolutions=_listed(resolutions, "--resolutions"),
        objective=objective,
        epochs=epochs,
        share=share,
        runtime__device=device,
    )
    cfg = build_config(PlanConfig, file=config, values=values, overrides=set_)
    doc = run_plan(cfg, out, force=force, log=typer.echo)
    rec = doc["candidates"][doc["recommended"]]["prediction"]
    whole = doc["whole_pool_at_budget"]
    typer.echo(f"recommended: {doc['recommended']}: predicted {rec['mean']:.3f} ({rec['low']:.3f}-{rec['high']:.3f}); "
               f"the whole pool at the full budget: {whole['mean']:.3f} ({whole['low']:.3f}-{whole['high']:.3f}); "
               f"planning spent {doc['share_spent']:.0%} of the budget. See {Path(out) / 'plan.md'}")  # fmt: skip


@app.command("report")
def report_cmd(study: Annotated[Path, typer.Argument(help="A study folder (holding results.json).")]) -> None:
    """Write report.md and a self-contained report.html (table and plots) for a finished study."""
    from .report import write_report

    write_report(study, log=typer.echo)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's runs.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A smaller, faster version.")] = False,
    data_root: DataRootOpt = None,
    force: ForceOpt = False,
) -> None:
    """A small study on built-in real data: score, select, pre-train, fine-tune, report (under 15 min on 2 cores)."""
    _check_out(out)
    from .demo import run_demo

    run_demo(out, quick=quick, data_root=data_root, force=force, echo=typer.echo)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    data_root: DataRootOpt = None,
) -> None:
    """What to know before a long run: versions, device and threads, built-ins present and where, free disk."""
    from .doctor import diagnose, format_diagnosis

    report = diagnose(data_root=data_root)
    typer.echo(json.dumps(report, indent=2) if as_json else format_diagnosis(report))


def _check_out(path: Path | None, flag: str = "--out", *, file: bool = False) -> None:
    """Fail early, in one line, when ``path`` (a folder, or a ``file``) cannot be written: a file where a folder is
    needed, or a folder without write permission."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and path.is_dir() == file:
        raise ThresherError(f"{flag} {path} is a {'folder' if file else 'file'}; give a {'file' if file else 'folder'}")
    parent = path.absolute()
    while not parent.exists():
        parent = parent.parent
    if parent != path.absolute() and not parent.is_dir():
        raise ThresherError(f"{flag} {path}: {parent} is a file, not a folder; choose another {flag}")
    writable = parent if parent.is_dir() else parent.parent
    if not os.access(writable, os.W_OK | os.X_OK):
        raise ThresherError(f"{flag} {path}: no permission to write in {writable}; choose another {flag}")


def _listed(text: str | None, flag: str, cast: type = int) -> list | None:
    """``50,500`` as [50, 500] (``cast`` each item: int, float or str); a clear error for anything else."""
    if text is None:
        return None
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        what = {int: "whole numbers", float: "numbers"}.get(cast, "values")
        raise ThresherError(f"{flag} takes {what} separated by commas, e.g. 50,500; got {text!r}") from None


def _checkpoint_file(path: str | None) -> str | None:
    """A run folder stands for its checkpoint, ``RUN@STEP`` for the weights it kept after that step; other paths
    pass unchanged (a chain folder too: evaluate resolves it and reads the whole chain's cost from it)."""
    from .models.checkpoint import checkpoint_path, kept_step, resolve_checkpoint

    if path and Path(path).is_dir() and checkpoint_path(path).is_file():
        return str(checkpoint_path(path))
    if kept_step(path):
        return str(resolve_checkpoint(path))
    return path


def _is_click_error(exc: BaseException) -> bool:
    """A command-line usage error raised by typer's click (missing option, bad value, unknown command)."""
    root = type(exc).__module__.split(".")[0]
    return (
        root in ("click", "typer")
        and hasattr(exc, "format_message")
        and isinstance(getattr(exc, "exit_code", None), int)
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line on errors (exit 2), full traceback only with --debug.

    Usage errors (a missing option, a bad value, an unknown command) are one line too, naming the --help to read.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    _STATE["debug"] = False
    try:
        code = app(args=args, prog_name="thresher", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except ThresherError as exc:
        if _STATE["debug"]:
            raise
        typer.echo(f"thresher: error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if _is_click_error(exc):
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command (group): typer has printed its help
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"thresher: error: {one_line(exc.format_message()).rstrip('.')}{where}", err=True)
            sys.exit(exc.exit_code)
        if _STATE["debug"]:
            raise
        # an unexpected failure is still one line without --debug
        typer.echo(
            f"thresher: internal error: {type(exc).__name__}: {one_line(str(exc))} "
            "(re-run with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)
    if code == 130:  # typer turns Ctrl-C into exit code 130
        typer.echo("thresher: interrupted; re-run the same command to resume", err=True)
    sys.exit(code if isinstance(code, int) else 0)  # as typer's standalone mode: always SystemExit
