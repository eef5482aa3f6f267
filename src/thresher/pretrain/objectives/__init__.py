"""Pre-training objectives: ``nn.Module``s whose ``forward(batch)`` returns ``loss`` and ``per_sample_loss``.

Each objective names the augmentation it needs (``transform``: a key of the transform registry); the training loop
builds that transform and never asks which objective it runs.
"""

from ...registry import Registry

OBJECTIVES: Registry = Registry("objective")

from . import supervised  # noqa: E402,F401  (registers "supervised")

__all__ = ["OBJECTIVES"]
