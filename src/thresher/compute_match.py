"""Compute matching (METHODS.md "Compute matching"; issue 18): every arm of a study gets the same total compute.

The unit C is one whole-pool pre-training at the study's settings (``pretrain.epochs`` over the pool, at its largest
resolution with its first objective), in the FLOPs the training loop counts. An arm at compute c whose scoring cost
s C (as if it ran alone) pre-trains for (c - s) C of FLOPs, that is (c - s) C / (FLOPs of one of its training images)
images, so a 10% subset at c = 0.5 trains 5x the whole pool's epochs; if s >= c (or what is left buys less than one
batch) the arm is over budget and is reported so, not shortened. The whole pool at c trains c x E epochs. Images are
what a drop-and-pick schedule spends too, so its arms are matched on images processed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ThresherError
from .scoring.cost import train_flops_per_image


@dataclass(frozen=True)
class ComputeUnit:
    """C: ``epochs`` x ``n_pool`` images of ``backbone`` at ``resolution`` under ``objective``, and its FLOPs."""

    backbone: str
    resolution: int
    objective: str
    epochs: int
    n_pool: int
    num_classes: int = 10  # the pool's, for a supervised head (a study's C counts a 10-class head: issue 18)

    @property
    def flops(self) -> float:
        return self.epochs * self.n_pool * self.per_image(self.resolution, self.objective)

    def per_image(self, resolution: int, objective: str) -> float:
        """Training FLOPs of one image of an arm at ``resolution`` under ``objective`` (same backbone)."""
        flops = train_flops_per_image(self.backbone, resolution, objective, self.num_classes)
        if flops <= 0:
            raise ThresherError(
                f"cannot count the FLOPs of backbone {self.backbone} under {objective}; compute matching needs them "
                "(drop compute: from the study, or use a backbone torch's FLOP counter can trace)"
            )
        return flops

    def describe(self) -> str:
        return (
            f"C = one whole-pool pre-training: {self.backbone}, {self.resolution} px, {self.objective}, "
            f"{self.epochs} x {self.n_pool:,} images, {self.flops / 1e12:.3g} TFLOPs"
        )

    def whole_pool_length(self, compute: float, resolution: int, objective: str, schedule: str, batch: int) -> dict:
        """The whole pool's run at ``compute``: ``{"epochs": k}`` when that is whole epochs at the unit's own settings
        with the full data schedule (so compute 1 is the study's whole-pool run itself), else ``{"images": n}`` (a
        drop-and-pick schedule's short epochs spend fewer images: it is matched on images like every other arm)."""
        epochs = compute * self.epochs
        own = (resolution, objective, schedule) == (self.resolution, self.objective, "full")
        if own and abs(epochs - round(epochs)) < 1e-9 and round(epochs) >= 1:
            return {"epochs": round(epochs)}
        images = self.images(compute * self.flops, resolution, objective)
        if images < batch:
            raise ThresherError(
                f"compute {compute:g} C buys the whole pool {images} training images, less than one batch of {batch}; "
                "give a higher compute level"
            )
        return {"images": images}

    def images(self, flops: float, resolution: int, objective: str) -> int:
        """Training images ``flops`` buys an arm at ``resolution`` under ``objective``."""
        return max(0, int(flops / self.per_image(resolution, objective) + 1e-6))

    def arm_images(self, compute: float, spent: float, resolution: int, objective: str, batch: int) -> int | None:
        """Training images an arm pays at ``compute`` (in C) after ``spent`` FLOPs of scoring; None: over budget
        (scoring spent it all, or what is left buys less than one batch)."""
        n = self.images(compute * self.flops - spent, resolution, objective)
        return n if n >= batch else None
