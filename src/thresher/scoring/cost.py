"""What scoring costs, in the unit that matters: C, one whole-pool pre-training (issue 17).

A score run reports each method's cost as if it ran alone (every model, embedding and pass it used, as recorded
when it was made) and the run's total with shared models counted once, both as the workspace's typed ``Cost`` and
as a fraction of C in FLOPs. C is the pre-training the selection is meant to save: ``reference`` (by default the
demo's, small-cnn at 32 px for 8 epochs over the pool), its FLOPs counted the way the training loop counts them.
"""

from __future__ import annotations

import functools

import torch
from pydantic import Field

from ..config import Section
from ..workspace import Cost


class CostReference(Section):
    """C, the pre-training scoring costs are compared with: one whole-pool pre-training at these settings."""

    backbone: str = Field("small-cnn", description="backbone of the reference pre-training")
    resolution: int = Field(32, ge=8, le=1024, description="its resolution")
    epochs: float = Field(8.0, gt=0, description="its epochs over the whole pool")

    def flops(self, n_pool: int) -> float:
        """FLOPs of C for a pool of ``n_pool`` images (supervised, as the training loop counts them)."""
        return self.epochs * n_pool * train_flops_per_image(self.backbone, self.resolution)

    def describe(self, n_pool: int) -> str:
        what = f"{self.backbone}, {self.resolution} px, {self.epochs:g} x {n_pool:,} images"
        return f"one whole-pool pre-training: {what}"


@functools.lru_cache(maxsize=32)
def train_flops_per_image(
    backbone: str, resolution: int, objective: str = "supervised", num_classes: int = 10
) -> float:
    """Forward + backward FLOPs of one training image under ``objective`` (its views and heads included: a supervised
    head of ``num_classes``), counted as the loop counts them (0: not countable)."""
    from ..data.transforms import build_transform
    from ..models import create_backbone
    from ..train.loop import count_flops_per_image
    from ..train.objective import build_objective

    torch.manual_seed(0)
    names = [f"class {i}" for i in range(num_classes)]  # an image-text objective's captions are templated from them
    model = build_objective(
        objective, create_backbone(backbone), num_classes=num_classes, num_examples=2, total_steps=1, class_names=names
    )
    transform = build_transform(getattr(model, "transform", "train"), resolution)
    images = transform(torch.zeros(2, 3, resolution, resolution, dtype=torch.uint8), torch.Generator().manual_seed(0))
    labels, index = torch.zeros(2, dtype=torch.long), torch.arange(2)
    return count_flops_per_image(model, {"images": images, "labels": labels, "index": index})


@functools.lru_cache(maxsize=32)
def forward_flops_per_image(backbone: str, resolution: int) -> float:
    """Forward FLOPs of one image through the backbone (an embedding pass)."""
    from ..embed import forward_flops_per_image as count
    from ..models import create_backbone

    torch.manual_seed(0)
    return count(create_backbone(backbone).eval(), resolution)


def run_total(reports: dict[str, dict], extra: list[dict] = ()) -> Cost:
    """The run's cost with shared artefacts counted once: every artefact any method (or ``extra`` part, e.g. the
    near-duplicate pass) used, by key, plus each one's own work. Read from the reports, so a resumed run says the
    same as an uninterrupted one."""
    seen: dict[str, Cost] = {}
    own = Cost()
    for rep in [*reports.values(), *extra]:
        for art in rep.get("artefacts", []):
            seen.setdefault(art["key"], Cost.from_record(art["cost"], art["cost"]["kind"]))
        if rep.get("own"):
            own = own + Cost.from_record(rep["own"], "own")
    return Cost.total(seen.values()) + own


def in_units(cost: Cost, c_flops: float) -> float | None:
    """``cost`` as a fraction of C in FLOPs (None when C could not be counted)."""
    return round(cost.flops / c_flops, 6) if c_flops > 0 else None
