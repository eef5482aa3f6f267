"""CLIP's symmetric InfoNCE (Radford et al. 2021; 002; formula in METHODS.md), the image-text objective of issue 21.

N matching (image, caption) pairs: unit-length image and text embeddings u_i and v_i, logits L = U V^T / tau with a
learnt temperature stored as log(1/tau) (initialised at log(1/0.07), the scale 1/tau clipped at 100); the loss is the
mean of the cross-entropies over rows (each image's caption among the batch's) and over columns (each caption's
image). ``per_sample_loss`` is, per pair, the mean of its row's and its column's terms, so the loss is its mean.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ThresherError
from ...models import build_backbone
from ...models.checkpoint import read_checkpoint
from ...text.templates import TEMPLATES, check_templates, class_prompts, synonyms, template_caption
from ...text.tokenizer import WordVocab
from ...text.tower import TextTower
from ...train.objective import OBJECTIVES, build_objective

#: log(1/tau) at the start (tau = 0.07) and the largest scale 1/tau may reach
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_SCALE = 100.0


def clip_loss(u: torch.Tensor, v: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Per-pair symmetric InfoNCE (N,) of image embeddings ``u`` and text embeddings ``v`` (N, d), matched by row,
    at scale exp(``logit_scale``) clipped at 100."""
    if u.shape != v.shape or u.dim() != 2:
        raise ValueError(f"image and text embeddings must both be (N, d), got {tuple(u.shape)} and {tuple(v.shape)}")
    u, v = F.normalize(u.float(), dim=1), F.normalize(v.float(), dim=1)
    logits = logit_scale.float().exp().clamp(max=MAX_SCALE) * (u @ v.T)
    target = torch.arange(len(u), device=u.device)
    rows = F.cross_entropy(logits, target, reduction="none")  # image i: which caption is its own
    cols = F.cross_entropy(logits.T, target, reduction="none")  # caption i: which image is its own
    return 0.5 * (rows + cols)


@OBJECTIVES.register("clip")
class CLIP(nn.Module):
    """Image-text contrastive pre-training (002): the backbone's pooled features and a text tower, each projected to
    ``dim``, trained by ``clip_loss``. Captions come with the batch (a dataset's own, ``ImageDataset.captions``) or,
    for a dataset without text, are templated from each image's class name and its synonyms (002's template
    captions), drawn per example by ``caption_seed`` and the example's position in the run. The word vocabulary is
    built from those captions (or every class's prompts) when the objective is made and travels in its state. It
    trains with AdamW as CLIP does (``optimizer``), whatever the config leaves unset."""

    transform = "train"
    #: CLIP's optimiser (Radford et al. 2021: AdamW, decoupled weight decay), for what a config leaves unset; SGD at
    #: the supervised default (0.1) collapses every embedding to one point within an epoch
    optimizer = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05}
    needs_labels = False
    reads_targets = True  # the loop adds the dataset's captions to each batch (when it has them)

    def __init__(
        self,
        backbone: nn.Module,
        dim: int = 128,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
        length: int = 16,
        vocab_size: int = 4096,
        templates: list[str] | None = None,
        caption_seed: int = 0,
        captions: list[str] | None = None,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        self.templates = check_templates(templates or TEMPLATES)
        self.caption_seed = caption_seed
        self.names = [synonyms(c) for c in class_names] if class_names else None
        if captions is None and self.names is None:
            raise ValueError("clip needs captions (a dataset with text) or class names to template them from")
        corpus = (
            captions if captions is not None else [p for c in class_names for p in class_prompts(c, self.templates)]
        )
        self.vocab = WordVocab.build(corpus, vocab_size)
        self.backbone = backbone
        self.image_projection = nn.Linear(backbone.feature_dim, dim, bias=False)
        self.text = TextTower(vocab_size, dim, width=width, layers=layers, heads=heads, length=length)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def get_extra_state(self) -> dict:
        """The vocabulary and templates, saved with the weights (zero-shot prompts are read with these words)."""
        return {"vocabulary": self.vocab.to_dict(), "templates": list(self.templates)}

    def set_extra_state(self, state: dict) -> None:
        self.vocab = WordVocab.from_dict(state["vocabulary"])
        self.templates = list(state["templates"])

    def captions_of(self, batch: dict) -> list[str]:
        """The batch's captions, or captions templated from its labels (an unlabeled image without text is an
        error)."""
        if "captions" in batch:
            return list(batch["captions"])
        labels, positions = batch["labels"].tolist(), batch["index"].tolist()
        if self.names is None or min(labels, default=0) < 0:
            raise ValueError("an image has neither a caption nor a class name to template one from")
        return [template_caption(self.names[c], self.templates, str(p), self.caption_seed)
                for c, p in zip(labels, positions, strict=True)]  # fmt: skip

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Unnormalised text embeddings (len(texts), dim)."""
        tokens = self.vocab.encode(texts, self.text.length).to(self.logit_scale.device)
        return self.text(tokens)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings (B, dim)."""
        return self.image_projection(self.backbone.forward_features(images))

    def class_embeddings(self, names: list[str]) -> torch.Tensor:
        """(classes, dim) unit vectors: each class's prompts (every template with every synonym of its name)
        embedded, normalised, averaged and normalised again (CLIP's prompt ensembling)."""
        with torch.no_grad():
            rows = [F.normalize(self.embed_text(class_prompts(n, self.templates)), dim=1).mean(0) for n in names]
        return F.normalize(torch.stack(rows), dim=1)

    def knows_class(self, name: str) -> bool:
        """Whether the vocabulary knows a word of the class name or a synonym (else its prompts read as unknown
        words, alike for every such class)."""
        return any(self.vocab.knows(s) for s in synonyms(name))

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        per_sample = clip_loss(self.embed_images(batch["images"]), self.embed_text(self.captions_of(batch)),
                               self.logit_scale)  # fmt: skip
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample.detach(),
                "logit_scale": self.logit_scale.detach()}  # fmt: skip


def load_clip(checkpoint: Path, class_names: list[str]) -> CLIP:
    """The ``clip`` objective of a checkpoint (backbone, image projection, text tower, vocabulary, templates) in eval
    mode, for zero-shot classification and CLIP-score selection; another objective's checkpoint is a clear error."""
    ckpt = read_checkpoint(checkpoint)
    if ckpt.get("objective") != "clip":
        raise ThresherError(f"{checkpoint} was trained with objective {ckpt.get('objective')!r}; an image-text model "
                            "is needed (thresher pretrain --objective clip)")  # fmt: skip
    params = dict((ckpt.get("config") or {}).get("objective_params") or {})
    model = build_objective("clip", build_backbone(ckpt["backbone"], None, 0), params, class_names=class_names)
    model.load_state_dict(ckpt["model"])  # the saved vocabulary and templates replace the ones built here
    return model.eval()
