"""``thresher score``: prepare what each scorer needs, run them, write one ``scores.parquet``.

By default every scorer gets the kind of input its paper used, trained through the one training loop and cached in
the workspace (resumable, trained once and shared by every scorer that needs them): a target model trained on the
labeled target (000: clustering, active learning), a source model trained on the source labels (004: importance
weights; also kNN and near-duplicate detection), and for the domain classifier CNNs trained on images (000). How big
these models are is ``models.preset`` (``scoring/proxies.py``): cheap proxies by default, the papers' whole-pool
models one setting away. ``features`` replaces all of them with given embeddings or a given backbone.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from .. import atomic
from ..config import DataConfig, RuntimeConfig, Section, runtime
from ..data.loader import data_identity, open_data
from ..data.spec import absolute_spec
from ..embed import EmbeddingStore
from ..errors import ThresherError
from ..models.checkpoint import (
    checkpoint_backbone,
    describe_checkpoint,
    resolve_checkpoint,
)
from ..runs import RunFolder, file_digest
from ..train.config import LRScheduleConfig, OptimConfig, TrainConfig
from ..workspace import Artefact, Cost, Workspace
from .base import ScoringContext, Side, check_scores
from .cost import CostReference, in_units, run_total
from .duplicates import PixelDescriptors, near_duplicates
from .proxies import FeatureModelConfig, sample_positions, target_epochs
from .registry import SCORERS
from .table import SCORES_FILE, ScoreTable


class NearDuplicateConfig(Section):
    """Source images nearly identical to target images (004 removed them) are flagged and, by default, excluded."""

    descriptor: Literal["pixels", "features"] = Field(
        "pixels", description="pixels: 16x16 RGB tiny-image descriptor; features: the scoring embeddings"
    )
    threshold: float = Field(0.98, gt=0, le=1, description="cosine similarity from which an image is a duplicate")
    exclude: bool = Field(True, description="exclude flagged images from selection")


class ScoreConfig(Section):
    """``thresher score``: which pool against which target, with which methods and inputs."""

    source: DataConfig
    target: DataConfig
    methods: list[str] = Field(min_length=1, description="scorer names, e.g. [domain-classifier, cluster-min]")
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method hyper-parameters")
    encoder: str | None = Field(
        None,
        description="a pre-trained encoder to score with, paying only forward passes: torchvision:NAME:WEIGHTS, "
        "timm:NAME or a thresher checkpoint/run, at its own resolution and normalisation",
    )
    target_test: DataConfig | None = Field(
        None,
        description="the target's test split: pool images near-identical to its images are flagged and excluded too "
        "(DataComp removes its evaluation sets' duplicates); it is read for that only",
    )
    features: str | None = runtime(None, description="embedding store of the source, or a checkpoint for both sides")
    target_features: str | None = runtime(None, description="embedding store of the target (with a source store)")
    features_backbone: str | None = Field(None, description="backbone of --features when it is not a thresher run")
    source_model: str | None = runtime(
        None,
        description="a thresher checkpoint trained on the source labels, used as the source model instead of "
        "training one (a study's whole-pool model); fingerprinted by content",
    )
    resolution: int = Field(32, ge=8, le=1024, description="embedding resolution for a --features checkpoint")
    models: FeatureModelConfig = FeatureModelConfig()
    near_duplicates: NearDuplicateConfig = NearDuplicateConfig()
    reference: CostReference = Field(
        default_factory=CostReference, description="C, the whole-pool pre-training costs are reported against"
    )
    seed: int = 0
    cache: str | None = runtime(None, description="folder for cached models and embeddings (default: OUT/cache)")
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        SCORERS.validate(v)
        if len(set(v)) != len(v):
            raise ValueError("a method is listed twice")
        return v

    @field_validator("encoder")
    @classmethod
    def _encoder(cls, v: str | None) -> str | None:
        if v is not None:
            from ..models.encoders import parse_encoder

            parse_encoder(v)  # the name is checked now; weights are read when the run needs them
        return v

    @model_validator(mode="after")
    def _one_feature_source(self) -> ScoreConfig:
        if self.encoder and (self.features or self.target_features):
            raise ValueError("give --encoder or --features, not both (--encoder replaces --features CHECKPOINT)")
        return self


def build_scorers(cfg: ScoreConfig) -> dict:
    """Instantiate every scorer with its parameters (bad parameter names fail here, before any work)."""
    unknown = set(cfg.params) - set(cfg.methods)
    if unknown:
        raise ThresherError(f"params given for methods not requested: {', '.join(sorted(unknown))}")
    scorers = {}
    for name in cfg.methods:
        params = dict(cfg.params.get(name, {}))
        if "seed" in _init_params(name):
            params.setdefault("seed", cfg.seed)
        try:
            scorers[name] = SCORERS.create(name, **params)
        except TypeError as exc:
            raise ThresherError(
                f"bad parameters for {name}: {exc}; accepted: {', '.join(_init_params(name))}"
            ) from None
        scorers[name].resolve_inputs(features_given=cfg.features is not None or cfg.encoder is not None)
    return scorers


def _init_params(name: str) -> list[str]:
    import inspect

    return [p for p in inspect.signature(SCORERS.get(name)).parameters if p not in ("self",)]


class Inputs:
    """What the scorers of one score run are given, drawn from the workspace: the default feature models (000's
    target model, 004's source model), their embeddings and head outputs, or the features the user gave."""

    def __init__(self, cfg: ScoreConfig, ws: Workspace, source: tuple, target: tuple):
        self.cfg, self.ws = cfg, ws
        self.data = {"source": source, "target": target}
        self.data_cfg = {"source": cfg.source, "target": cfg.target}
        self._given: tuple | None = None
        self.raw = self.data  # the original images of each side (readable rows), for an encoder
        self._labeled = {side: bool((ds.labels[idx] >= 0).any()) for side, (ds, idx) in self.data.items()}
        #: what the score stage offers scorers, the same for every one
        self.context = ScoringContext(ws, cfg.models, cfg.runtime, ws.log, self.model, features_checkpoint(cfg))

    # --- the default models -------------------------------------------------------------------------
    def model(self, which: str, positions: np.ndarray | None = None) -> Path:
        """Checkpoint of the ``target-model`` or ``source-model`` (supervised, through the engine), sized by
        ``models`` (proxies by default: the source model on a seeded sample of the pool; ``scoring/proxies.py``).

        ``positions``: train on these examples of the side only (a model that never saw the others, for scorers
        that must score out of fold).
        """
        side = "target" if which == "target-model" else "source"
        if which == "source-model" and positions is None and self.cfg.source_model:
            return self.ws.given_model(self.cfg.source_model).path
        ds, idx = self.data[side]
        m = self.cfg.models
        name = which if positions is None else f"{which}-part"  # -part: a model of some folds only
        if side == "source" and positions is None:
            positions = sample_positions(len(idx), m.source_sample, self.cfg.seed, "models.source_sample")
        if positions is not None:
            idx = idx[np.asarray(positions, np.int64)]
        if not (ds.labels[idx] >= 0).any():
            raise ThresherError(
                f"the {which} is trained on the labels of {ds.spec}, which has none; score with a pre-trained "
                "--encoder (or --features) instead"
            )
        init = None
        if side == "source" and m.source_init == "target-model" and self.target_labeled():
            init = str(self.model("target-model"))  # a model of the target only: it never saw a pool image
        tcfg = TrainConfig(
            data=self.data_cfg[side],
            backbone=m.backbone,
            init=init,
            resolution=m.resolution,
            epochs=target_epochs(m, len(idx)) if side == "target" else m.source_epochs,
            batch_size=m.batch_size,
            optim=OptimConfig(lr=m.lr),
            lr_schedule=LRScheduleConfig(),
            seed=self.cfg.seed,
            runtime=self.cfg.runtime,
        )
        return self.ws.model(name, tcfg, ds, idx).path

    def backbone_of(self, which: str, ckpt: Path) -> str:
        """The backbone of a default model: ``models.backbone``, or a given source model's own."""
        if which == "source-model" and self.cfg.source_model:
            return checkpoint_backbone(ckpt)
        return self.cfg.models.backbone

    def pool_labeled(self) -> bool:
        return bool(self.cfg.source_model) or self._labeled["source"]

    def target_labeled(self) -> bool:
        return self._labeled["target"]

    def features_of(self, scorer) -> str | None:
        """What the scorer's embeddings came from, for its report."""
        if scorer.uses != "features":
            return None
        if self.cfg.encoder:
            return f"encoder {self.cfg.encoder}"
        if self.cfg.features:
            return f"given {self.cfg.features}"
        return self.feature_model(scorer)

    def feature_model(self, scorer) -> str | None:
        """The default model whose embeddings ``scorer`` reads: the source model's readers read
        ``models.source_features``, and on an unlabeled pool the target model."""
        return resolve_feature_model(
            scorer, self.cfg.models, self.pool_labeled(), bool(self.cfg.source_model), self.target_labeled()
        )

    def embeddings(self, side: str, checkpoint: Path, backbone: str, resolution: int) -> Artefact:
        ds, idx = self.data[side]
        return self.ws.embeddings(ds, idx, backbone=backbone, checkpoint=checkpoint, resolution=resolution)

    # --- what a scorer sees ---------------------------------------------------------------------------
    def given_features(self) -> tuple[Any, Any]:
        """Embeddings from --features (a store, with --target-features) or from a --features checkpoint."""
        if self._given is not None:
            return self._given
        path = Path(self.cfg.features)
        if (path / "meta.json").is_file():
            if not self.cfg.target_features:
                raise ThresherError("--features is an embedding store of the source; give --target-features too")
            self._given = (
                align(EmbeddingStore(path), self.data["source"], "--features"),
                align(EmbeddingStore(self.cfg.target_features), self.data["target"], "--target-features"),
            )
            return self._given
        ckpt, backbone = self.given_checkpoint()
        self.ws.given_model(ckpt)  # what it cost to train, when thresher recorded it
        return tuple(self.embeddings(s, ckpt, backbone, self.cfg.resolution).value for s in ("source", "target"))

    def given_checkpoint(self) -> tuple[Path, str]:
        """A --features checkpoint and its backbone."""
        ckpt = resolve_checkpoint(Path(self.cfg.features))
        return ckpt, self.cfg.features_backbone or checkpoint_backbone(ckpt)

    # --- a public encoder -------------------------------------------------------------------------------
    def encoder_embeddings(self, side: str) -> Artefact:
        ds, idx = self.raw[side]
        return self.ws.embeddings(ds, idx, encoder=self.cfg.encoder)

    def encoder_pool_logits(self, features: Artefact) -> np.ndarray | None:
        """The encoder's own head on ``features``, restricted to the pool's classes (Tiny ImageNet's wnids are
        ImageNet-1k classes); None when the classes do not map (importance then fits a head on pool features)."""
        enc = self.ws.encoder(self.cfg.encoder).value
        cols = enc.class_map(list(self.data["source"][0].classes or []))
        if cols is None:
            return None
        import torch

        x = np.array(features.value, dtype=np.float32)  # a writable copy of the (memory-mapped) target rows
        with torch.inference_mode():
            logits = enc.head(torch.from_numpy(x)).double().numpy()
        return logits[:, cols]

    def sides(self, scorer) -> tuple[Side, Side]:
        src_ds, src_idx = self.data["source"]
        tgt_ds, tgt_idx = self.data["target"]
        src = Side(src_ds.spec, src_ds.ids[src_idx], src_ds.labels[src_idx], dataset=src_ds, indices=src_idx,
                   context=self.context)  # fmt: skip
        tgt = Side(tgt_ds.spec, tgt_ds.ids[tgt_idx], tgt_ds.labels[tgt_idx], dataset=tgt_ds, indices=tgt_idx,
                   context=self.context)  # fmt: skip
        if scorer.uses != "features":
            return src, tgt
        if self.cfg.encoder:
            src_emb, tgt_emb = (self.encoder_embeddings(s) for s in ("source", "target"))
            src.features, tgt.features = src_emb.value, tgt_emb.value
            if scorer.features_from == "source-model":  # 004's source classifier: the encoder's head, when it maps
                tgt.logits = self.encoder_pool_logits(tgt_emb)
        elif self.cfg.features:
            src.features, tgt.features = self.given_features()
        elif (which := self.feature_model(scorer)) in ("target-model", "source-model"):
            ckpt = self.model(which)
            m = self.cfg.models
            backbone = self.backbone_of(which, ckpt)
            if which == "target-model" or scorer.reads_source_features:
                src_emb = self.embeddings("source", ckpt, backbone, m.resolution)
                src.features = src_emb.value
            tgt_emb = self.embeddings("target", ckpt, backbone, m.resolution)
            tgt.features = tgt_emb.value
            if which == "target-model":  # the target model's own predictions on the source
                src.logits = np.asarray(self.ws.head_outputs(ckpt, src_emb).value)
            else:  # the source model's own predictions on the target
                tgt.logits = np.asarray(self.ws.head_outputs(ckpt, tgt_emb).value)
        return src, tgt

    def duplicate_features(self, sides: tuple[str, ...] = ("source", "target")) -> tuple[Any, ...]:
        """Embeddings for near-duplicate detection of ``sides`` (``test``: the target's test split, when given): the
        encoder's or the given ones, else the source model's (the target model's on an unlabeled pool)."""
        if self.cfg.encoder:
            return tuple(self.encoder_embeddings(s).value for s in sides)
        if self.cfg.features:  # a store with a test split was refused before any work (_check_before_work)
            given = self.given_features()
            if "test" not in sides:
                return given
            ckpt, backbone = self.given_checkpoint()
            return (*given, self.embeddings("test", ckpt, backbone, self.cfg.resolution).value)
        which = source_reader_model(
            self.cfg.models, self.pool_labeled(), bool(self.cfg.source_model), self.target_labeled()
        )
        ckpt = self.model(which)
        m = self.cfg.models
        backbone = self.backbone_of(which, ckpt)
        return tuple(self.embeddings(s, ckpt, backbone, m.resolution).value for s in sides)


def features_checkpoint(cfg: ScoreConfig) -> Path | None:
    """The thresher checkpoint behind the given features: an --encoder run or a --features checkpoint (None for a
    public encoder, an embedding store or the default models)."""
    if cfg.encoder:
        from ..models.encoders import parse_encoder

        spec = parse_encoder(cfg.encoder)
        return resolve_checkpoint(Path(spec.name)) if spec.kind == "file" else None
    if cfg.features and not (Path(cfg.features) / "meta.json").is_file():
        return resolve_checkpoint(Path(cfg.features))
    return None


def resolve_feature_model(
    scorer, models: FeatureModelConfig, pool_labeled: bool, source_given: bool, target_labeled: bool = True
) -> str | None:
    """Whose embeddings a scorer reads by default (shared by the score run and its dry-run estimate)."""
    if scorer.features_from != "source-model":
        return scorer.features_from
    return source_reader_model(models, pool_labeled, source_given, target_labeled)


def source_reader_model(
    models: FeatureModelConfig, pool_labeled: bool, source_given: bool, target_labeled: bool
) -> str:
    """The model behind the source model's readers (importance, kNN, feature near-duplicates): a given source model
    always; else ``models.source_features``, except that the target model needs the target's labels and the source
    model the pool's, so a side without labels hands over to the other model."""
    if source_given:
        return "source-model"
    if not pool_labeled or (models.source_features == "target-model" and target_labeled):
        return "target-model"
    return "source-model"


def _cost_line(cost: Cost) -> str:
    return f"costing {cost.flops / 1e12:.2f} TFLOPs ({cost.kind}) as if run alone"


def _decode_size(cfg: ScoreConfig) -> int:
    """The resolution the pool is decoded at once: the largest any model or embedding of this run reads (an
    encoder reads the original images)."""
    size = cfg.models.resolution
    if cfg.features and not (Path(cfg.features) / "meta.json").is_file():  # a checkpoint embedded here
        size = max(size, cfg.resolution)
    return size


def _check_before_work(cfg: ScoreConfig) -> None:
    """Settings that cannot work together fail before any image is read."""
    store = cfg.features and (Path(cfg.features) / "meta.json").is_file()
    if cfg.target_test and cfg.near_duplicates.descriptor == "features" and store:
        raise ThresherError(
            "an embedding store given as --features cannot describe the target's test split; use "
            "near_duplicates.descriptor=pixels, or give a checkpoint"
        )
    if cfg.encoder and cfg.runtime.engine == "ray":
        raise ThresherError("--encoder runs on the local engine only; drop --engine ray (or runtime.engine)")


def _check_source_model(cfg: ScoreConfig, ds) -> None:
    """A given source model must be a supervised thresher checkpoint of the configured backbone, over the pool's
    classes (scorers read its head)."""
    path = Path(cfg.source_model)
    try:
        info = describe_checkpoint(path)
    except ThresherError as exc:
        raise ThresherError(f"cannot read --source-model: {exc}") from None
    if info["objective"] != "supervised" or info["head_outputs"] is None:
        raise ThresherError(
            f"--source-model {path} must be a supervised thresher checkpoint with its head "
            f"(it is {info['objective']} on {info['backbone']})"
        )
    if info["head_outputs"] != max(1, ds.num_classes):
        raise ThresherError(
            f"--source-model {path} predicts {info['head_outputs']} classes, the pool has {ds.num_classes}"
        )


def align(store: EmbeddingStore, data: tuple, flag: str):
    """The store's rows in the order of the side's examples: the store itself when aligned, else a lazy row view."""
    ds, idx = data
    want = ds.ids[idx]
    have = store.ids
    if len(have) == len(want) and (have == want).all():
        return store
    pos = {k: i for i, k in enumerate(have)}
    missing = [k for k in want if k not in pos]
    if missing:
        raise ThresherError(
            f"{flag} {store.path} lacks {len(missing)} of the {len(want)} examples of {ds.spec} "
            f"(first: {', '.join(map(str, missing[:3]))}); embed that dataset"
        )
    return store.take(np.fromiter((pos[k] for k in want), np.int64, len(want)))


def cost_summary(cfg: ScoreConfig, reports: dict, dup_cost: dict, n_pool: int, decoding: list[dict]) -> dict:
    """The run's cost (shared models and the decoding pass once) and each method's as if alone, with their
    fractions of C in FLOPs."""
    c_flops = cfg.reference.flops(n_pool)
    total = run_total(reports, [dup_cost, {"artefacts": decoding}])
    return {
        "unit": {"name": "C", "what": cfg.reference.describe(n_pool), "flops": c_flops},
        "total": total.as_dict(),
        "total_C": in_units(total, c_flops),
        "methods_C": {
            name: in_units(Cost.from_record(r["cost"], r["cost"]["kind"]), c_flops) for name, r in reports.items()
        },  # fmt: skip
    }


def score(cfg: ScoreConfig, out: str | Path, *, force: bool = False, log=print) -> Path:
    """Run (or resume) ``thresher score`` into ``out``; returns the path of ``scores.parquet``."""
    scorers = build_scorers(cfg)
    source, target = open_data(cfg.source), open_data(cfg.target)
    if cfg.source_model:
        _check_source_model(cfg, source[0])
    if len(target[1]) == 0:
        raise ThresherError(f"the target {cfg.target.spec} is empty")
    src_ds, src_idx = source
    if not cfg.source_model and not (src_ds.labels[src_idx] >= 0).any():
        for name, scorer in scorers.items():
            if scorer.needs_source_labels:
                raise ThresherError(
                    f"{name} needs the pool's labels: {scorer.needs_source_labels}, and {cfg.source.spec} has none; "
                    "drop it or give a labeled pool (every other scorer works on an unlabeled pool)"
                )
    inputs = {"source": data_identity(*source), "target": data_identity(*target)}
    test = open_data(cfg.target_test) if cfg.target_test else None
    if test is not None:
        inputs["target_test"] = data_identity(*test)
    for key in ("features", "target_features", "source_model"):
        p = getattr(cfg, key)
        if p:
            p = Path(p)
            f = p / "meta.json" if (p / "meta.json").is_file() else resolve_checkpoint(p)
            inputs[f"{key}_sha256"] = file_digest(f)
    if cfg.encoder:  # named by its weights' content: retrained or re-tagged weights are another run
        from ..models.encoders import load_encoder

        inputs["encoder"] = load_encoder(cfg.encoder).identity
    _check_before_work(cfg)
    given = features_checkpoint(cfg)
    for scorer in scorers.values():
        scorer.check_model(given)
    # the cache is addressed by the fingerprints of what it holds: --force keeps it, so models are not retrained
    with RunFolder(out, "score", cfg, force=force, inputs=inputs, keep=("cache",)) as run:
        done_file = run.file(SCORES_FILE)
        if ScoreTable.exists(run.path):
            log(f"{run.path}: already complete, nothing to do")
            return done_file
        ws = Workspace(Path(cfg.cache) if cfg.cache else run.path / "cache", runtime=cfg.runtime, log=log)
        # one decoding pass per side (none for array datasets): which images can be read at all, and the pixels
        # every later pass reads (models, embeddings, near-duplicates), so no image is decoded twice. Scorers see
        # the readable images only; unreadable pool rows get NaN and are never selected.
        size = _decode_size(cfg)
        with ws.ledger() as decoding:  # shared preprocessing: in every image-reading method's cost and the total
            (dec_s, rows_s, ok_s), (dec_t, rows_t, ok_t) = (ws.decoded(*data, size) for data in (source, target))
        for what, spec, ok in (("target", cfg.target.spec, ok_t), ("pool", cfg.source.spec, ok_s)):
            if not ok.any():
                raise ThresherError(
                    f"no image of the {what} {spec} can be read; fix or remove the broken files, or check the spec"
                )
        for side, (ds, idx), ok in (("pool", source, ok_s), ("target", target, ok_t)):
            if not ok.all():
                log(
                    f"warning: {int((~ok).sum())} unreadable {side} image(s) left out of scoring "
                    f"(first: {', '.join(map(str, ds.ids[idx[~ok][:5]]))})"
                )
        readable_source, readable_target = (dec_s, rows_s[ok_s]), (dec_t, rows_t[ok_t])
        res = Inputs(cfg, ws, readable_source, readable_target)
        # an encoder reads the original images at its own size (decoding the pool at 224 px would cost more than
        # its forward passes); the models read the decoded pixels
        res.raw = {"source": (source[0], source[1][ok_s]), "target": (target[0], target[1][ok_t])}
        if test is not None:  # only its near-duplicates in the pool are looked for: no scorer sees it
            with ws.ledger() as decoding_test:
                dec_x, rows_x, ok_x = ws.decoded(*test, size)
            if not ok_x.any():
                raise ThresherError(f"no image of the target's test split {cfg.target_test.spec} can be read")
            if not ok_x.all():
                log(f"warning: {int((~ok_x).sum())} unreadable test image(s) left out of the near-duplicate search")
            res.data["test"] = (dec_x, rows_x[ok_x])
            res.raw["test"] = (test[0], test[1][ok_x])
        parts = run.file(".scores")
        parts.mkdir(exist_ok=True)
        reports: dict = {}
        columns: dict[str, np.ndarray] = {}
        for name, scorer in scorers.items():
            part = parts / f"{name}.npy"
            rep_file = parts / f"{name}.json"
            if part.is_file() and rep_file.is_file():
                columns[name] = np.load(part)
                reports[name] = atomic.read_json(rep_file, fix=f"delete it to score {name} again")
                continue
            t0 = time.perf_counter()
            with ws.ledger() as used:  # every model, embedding and head output the method needs
                if scorer.uses is not None:  # the shared decoding pass, paid before: in its cost, not its time
                    for art in decoding.used.values():
                        used.add(dataclasses.replace(art, paid_seconds=0.0))
                src, tgt = res.sides(scorer)
                values = np.full(len(ok_s), np.nan)
                values[ok_s] = check_scores(name, scorer.fit(src, tgt).score(src), len(src))
            wall = time.perf_counter() - t0
            # what this method costs run alone (000's Table 2): everything it used, as recorded when it was made,
            # and its own work (the wall time not spent making those things now)
            own = Cost(seconds=max(0.0, wall - used.paid_seconds), flops=scorer.own_flops_, kind="own")
            cost = used.cost + own
            reports[name] = {
                "params": scorer.get_params(),
                **scorer.report(),
                "features_from": res.features_of(scorer),
                "seconds": round(wall, 3),
                "cost": cost.as_dict(),
                "own": own.as_dict(),
                "artefacts": used.records(),
            }
            atomic.save_npy(part, values)
            atomic.write_json(rep_file, reports[name])
            columns[name] = values
            log(f"{name}: scored {len(src)} examples in {reports[name]['seconds']:.1f} s, {_cost_line(cost)}")
        t0 = time.perf_counter()
        sides = ("source", "target", "test") if test is not None else ("source", "target")
        with ws.ledger() as used:
            if cfg.near_duplicates.descriptor == "pixels":
                descs = [PixelDescriptors(*res.data[s]) for s in sides]
            else:
                descs = res.duplicate_features(sides)
            found = [near_duplicates(descs[0], d, cfg.near_duplicates.threshold) for d in descs[1:]]
        own = Cost(seconds=max(0.0, time.perf_counter() - t0 - used.paid_seconds), kind="own")
        dup_arts = used.records() + (decoding_test.records() if test is not None else [])
        dup_cost = {"cost": (used.cost + own).as_dict(), "own": own.as_dict(), "artefacts": dup_arts}
        sims, flags = [], []
        for sim_ok, flagged_ok in found:  # per split: rows of unreadable pool images stay NaN / unflagged
            sim, flagged = np.full(len(ok_s), np.nan), np.zeros(len(ok_s), bool)
            sim[ok_s], flagged[ok_s] = sim_ok, flagged_ok
            sims.append(sim)
            flags.append(flagged)
        sim, flagged = sims[0], np.logical_or.reduce(flags)
        src_ds, src_idx = source
        table = {
            "id": pa.array(src_ds.ids[src_idx].tolist(), pa.string()),
            "label": pa.array(src_ds.labels[src_idx], pa.int64()),
            "index": pa.array(src_idx, pa.int64()),
            "max_target_cosine": pa.array(sim.astype(np.float64)),
            "near_duplicate": pa.array(flagged),
            "unreadable": pa.array(~ok_s),
        }
        if test is not None:
            table.update(max_test_cosine=pa.array(sims[1].astype(np.float64)), near_duplicate_test=pa.array(flags[1]))
        table.update({name: pa.array(col) for name, col in columns.items()})
        summary = {
            "source": absolute_spec(cfg.source.spec),
            "source_data_root": cfg.source.data_root,
            "target": cfg.target.spec,
            "methods": cfg.methods,
            "classes": src_ds.classes,
            "class_words": getattr(src_ds, "descriptions", None),
            "sources": getattr(src_ds, "source_names", None),  # a pool of several sources: ids are NAME:ID
            "near_duplicates": {
                "count": int(flagged.sum()),
                "of_target_train": int(flags[0].sum()),
                "of_target_test": int(flags[1].sum()) if test is not None else None,
                "target_test": cfg.target_test.spec if test is not None else None,
                "threshold": cfg.near_duplicates.threshold,
                "descriptor": cfg.near_duplicates.descriptor,
                "excluded_by_default": cfg.near_duplicates.exclude,
                **dup_cost,
            },
            "cost": cost_summary(cfg, reports, dup_cost, len(src_idx), decoding.records()),
            "reports": reports,
        }
        ScoreTable(pa.table(table), summary).write(run.path)
        split = f": {int(flags[0].sum())} of train, {int(flags[1].sum())} of test images" if test is not None else ""
        log(
            f"near-duplicates of target images: {int(flagged.sum())} flagged{split} (cosine >= "
            f"{cfg.near_duplicates.threshold})" + (", excluded from selection" if cfg.near_duplicates.exclude else "")
        )
        log(f"wrote {done_file} ({len(src_idx)} examples x {len(columns)} methods)")
        return done_file
