"""``thresher score --dry-run``: each method's cost estimated before any work (issue 17).

The estimate counts what the score run would make: the default models' training images and the embedding passes,
in FLOPs counted as the training loop and the embedding pass count them (on the architecture only: nothing is
trained or read), each scorer asking for what it uses through ``Scorer.plan_work``. Shared models are counted once
in the run's total. Decoding, k-means and the heads are left out: small next to training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.loader import open_data
from .cost import forward_flops_per_image, train_flops_per_image
from .pipeline import resolve_feature_model, source_reader_model
from .proxies import sample_size, target_epochs


@dataclass
class Work:
    """One thing a score run makes: a model trained (``trained``) or an embedding pass (``forward``)."""

    what: str
    images: float
    flops: float
    kind: str


@dataclass
class WorkPlan:
    """What the methods of one score run would make, by key (a shared model appears once)."""

    cfg: object  # ScoreConfig
    n_source: int
    n_target: int
    source_labeled: bool
    target_labeled: bool = True
    n_test: int = 0  # images of the target's test split (near-duplicates only)
    pool_classes: int = 0
    feature_dim: int = 0  # of the embeddings scorers read (the default models' backbone, or the encoder)
    items: dict[str, Work] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)

    @property
    def models(self):
        return self.cfg.models

    def _add(self, key: str, work: Work) -> None:
        self.items.setdefault(key, work)
        if key not in self.used:
            self.used.append(key)

    def train(self, key: str, examples: float, epochs: int) -> None:
        """A model trained on ``examples`` for ``epochs``, counting the images the loop processes (it drops the
        last incomplete batch of each epoch)."""
        m = self.models
        batch = max(1, min(m.batch_size, int(examples)))
        images = epochs * (int(examples) // batch) * batch
        self._add(key, Work(key, images, images * train_flops_per_image(m.backbone, m.resolution), "trained"))

    def forward(self, key: str, images: float, resolution: int | None = None, backbone: str | None = None) -> None:
        m = self.models
        flops = images * forward_flops_per_image(backbone or m.backbone, resolution or m.resolution)
        self._add(key, Work(key, images, flops, "forward"))

    def head(self, key: str, rows: int, classes: int, hidden: int, max_iter: int) -> None:
        """A classifier head fitted on embeddings by L-BFGS (``ops.linear``), counted at torch's cap of 1.25
        ``max_iter`` loss evaluations of forward + backward (a fit that converges early pays less)."""
        d = self.feature_dim
        macs = d * hidden + hidden * classes if hidden else d * classes
        flops = 6.0 * macs * rows * 1.25 * max_iter + 2.0 * macs * rows
        self._add(key, Work(key, 0, flops, "own"))

    def feature_model(self, scorer) -> str | None:
        """As the score run chooses (``pipeline.resolve_feature_model``)."""
        return resolve_feature_model(
            scorer, self.models, self.source_labeled, bool(self.cfg.source_model), self.target_labeled
        )

    def model(self, which: str) -> None:
        m = self.models
        if which == "target-model":
            self.train("target-model", self.n_target, target_epochs(m, self.n_target))
        elif self.cfg.source_model:  # given: its training is recorded there, not redone
            self._add("source-model", Work("source-model (given)", 0, 0, "trained"))
        else:
            if m.source_init == "target-model" and self.target_labeled:
                self.model("target-model")
            k = sample_size(m.source_sample, self.n_source, "models.source_sample")
            self.train("source-model", k, m.source_epochs)

    def encoder_pass(self, side: str, flops_per_image: float) -> None:
        """``side`` through the public encoder, once for every method that reads it."""
        n = self.size(side)
        self._add(f"embeddings {side} by the encoder", Work(side, n, n * flops_per_image, "forward"))

    def size(self, side: str) -> int:
        return {"source": self.n_source, "target": self.n_target, "test": self.n_test}[side]

    def embed(self, side: str, which: str) -> None:
        backbone = None
        if which == "source-model" and self.cfg.source_model:  # a given model is embedded with its own backbone
            from ..models.checkpoint import checkpoint_backbone, resolve_checkpoint

            backbone = checkpoint_backbone(resolve_checkpoint(self.cfg.source_model))
        self.forward(f"embeddings {side} by {which}", self.size(side), backbone=backbone)


def estimate(cfg, scorers: dict) -> dict:
    """Each method's estimated cost as if it ran alone, and the run's total with shared models once (``cfg`` a
    ScoreConfig, ``scorers`` as ``build_scorers`` makes them)."""
    (src_ds, src_idx), (tgt_ds, tgt_idx) = open_data(cfg.source), open_data(cfg.target)
    labeled = bool(cfg.source_model) or bool((src_ds.labels[src_idx] >= 0).any())
    plan = WorkPlan(cfg, len(src_idx), len(tgt_idx), labeled, bool((tgt_ds.labels[tgt_idx] >= 0).any()))
    plan.n_test = len(open_data(cfg.target_test)[1]) if cfg.target_test else 0
    plan.pool_classes = max(1, src_ds.num_classes)
    plan.feature_dim = _feature_dim(cfg)
    c_flops = cfg.reference.flops(len(src_idx))
    methods = {}
    encoder_flops = _encoder_flops(cfg.encoder) if cfg.encoder else 0.0
    for name, scorer in scorers.items():
        plan.used = []
        if cfg.encoder and scorer.uses == "features":  # forward passes of both sides through the encoder, once
            for side in ("source", "target"):
                plan.encoder_pass(side, encoder_flops)
            scorer.plan_own(plan, "encoder")
        elif cfg.features is None and (not cfg.encoder or scorer.uses != "features"):
            scorer.plan_work(plan)
        flops = sum(plan.items[k].flops for k in plan.used)
        methods[name] = {
            "images": float(sum(plan.items[k].images for k in plan.used)),
            "flops": float(flops),
            "C": in_units_flops(flops, c_flops),
            "parts": list(plan.used),
        }
    plan.used = []  # the near-duplicate pass: embeddings only with the features descriptor
    if cfg.near_duplicates.descriptor == "features" and cfg.features is None:
        sides = ("source", "target", "test") if cfg.target_test else ("source", "target")
        if cfg.encoder:
            for side in sides:
                plan.encoder_pass(side, encoder_flops)
        else:
            which = source_reader_model(cfg.models, labeled, bool(cfg.source_model), plan.target_labeled)
            plan.model(which)
            for side in sides:
                plan.embed(side, which)
    total = float(sum(w.flops for w in plan.items.values()))
    return {
        "unit": {"name": "C", "what": cfg.reference.describe(len(src_idx)), "flops": c_flops},
        "methods": methods,
        "total": {"flops": total, "C": in_units_flops(total, c_flops)},
        "parts": {k: vars(w) for k, w in plan.items.items()},
        "given_features": cfg.features is not None,
    }


def _feature_dim(cfg) -> int:
    """The width of the embeddings the scorers will read (0 when given embeddings: read at run time)."""
    if cfg.encoder:
        from ..models.encoders import load_encoder

        return int(load_encoder(cfg.encoder).module.feature_dim)
    if cfg.features:
        return 0
    from ..models import create_backbone

    return int(create_backbone(cfg.models.backbone).feature_dim)


def _encoder_flops(spec: str) -> float:
    """Forward FLOPs of one image through the encoder at its own resolution."""
    from ..embed import forward_flops_per_image as count
    from ..models.encoders import load_encoder

    enc = load_encoder(spec)
    return count(enc.module, enc.resolution)


def in_units_flops(flops: float, c_flops: float) -> float | None:
    return round(flops / c_flops, 6) if c_flops > 0 else None


def format_estimate(est: dict) -> str:
    """The estimate as a few lines for the terminal."""
    lines = [f"estimated scoring cost (C = {est['unit']['what']}, {est['unit']['flops'] / 1e12:.2f} TFLOPs):"]
    for name, m in est["methods"].items():
        c = "" if m["C"] is None else f"{m['C']:.3f} C"
        lines.append(f"  {name:<20} {m['flops'] / 1e12:8.3f} TFLOPs  {c:>9}  as if run alone")
    t = est["total"]
    tc = "" if t["C"] is None else f"{t['C']:.3f} C"
    lines.append(f"  {'the run, shared once':<20} {t['flops'] / 1e12:8.3f} TFLOPs  {tc:>9}")
    if est["given_features"]:
        lines.append("  (given features: only the scorers' own work, not estimated)")
    return "\n".join(lines)
