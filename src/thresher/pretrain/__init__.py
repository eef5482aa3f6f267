"""Pre-training: objectives, data schedules, chains and the ``thresher pretrain`` stage, on the engine of ``train/``.

Importing this package registers its objectives and data schedules in the engine's registries: the explicit roster.
"""

from ..train import detection, segmentation, supervised  # noqa: F401  (the engine's own objectives, listed with the others)
from . import schedules  # noqa: F401
from .objectives import byol, clip, moco, simclr  # noqa: F401
