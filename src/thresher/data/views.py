"""Dataset views: several datasets (or subsets) seen as one, with new labels, without copying any image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ThresherError
from .base import ImageDataset


class ConcatView(ImageDataset):
    """Rows ``indices[k]`` of ``datasets[k]`` in order, relabelled (source = 0, target = 1 for 000's domain classifier).

    Ids are ``<prefix>:<original id>`` so the two sides can never collide.
    """

    def __init__(
        self,
        parts: Sequence[tuple[ImageDataset, np.ndarray, np.ndarray]],
        prefixes: Sequence[str],
        classes: list[str] | None = None,
        spec: str = "concat",
    ):
        super().__init__()
        if len(parts) != len(prefixes) or not parts:
            raise ThresherError("a concatenated view needs one prefix per part")
        self.parts = [(ds, np.asarray(idx, np.int64), np.asarray(lab, np.int64)) for ds, idx, lab in parts]
        for ds, idx, lab in self.parts:
            if len(idx) != len(lab):
                raise ThresherError(f"{ds.spec}: {len(idx)} indices but {len(lab)} labels")
        self.prefixes = list(prefixes)
        self.offsets = np.cumsum([0] + [len(idx) for _, idx, _ in self.parts])
        self.classes = classes
        self.spec = spec

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        return part, rows - self.offsets[part]

    def _make_ids(self) -> np.ndarray:
        return np.concatenate(
            [
                np.array([f"{p}:{i}" for i in ds.ids[idx]], dtype=object)
                for p, (ds, idx, _) in zip(self.prefixes, self.parts, strict=True)
            ]
        )

    def _make_labels(self) -> np.ndarray:
        return np.concatenate([lab for _, _, lab in self.parts])

    def load(self, index: int) -> np.ndarray:
        part, local = self._locate(np.array([index]))
        ds, idx, _ = self.parts[int(part[0])]
        return ds.load(int(idx[local[0]]))

    def load_batch(self, indices: Sequence[int], size: int, strict: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        rows = np.asarray(indices, dtype=np.int64)
        part, local = self._locate(rows)
        ok = np.zeros(len(rows), dtype=bool)
        pieces: dict[int, torch.Tensor] = {}
        for p in np.unique(part):
            sel = np.flatnonzero(part == p)
            ds, idx, _ = self.parts[int(p)]
            x, good = ds.load_batch(idx[local[sel]], size, strict=strict)
            ok[sel] = good
            for j, pos in enumerate(sel[good]):
                pieces[int(pos)] = x[j]
        if not pieces:
            return torch.empty((0, 3, size, size), dtype=torch.uint8), ok
        return torch.stack([pieces[int(i)] for i in np.flatnonzero(ok)]), ok

    def source_files(self) -> list[Path]:
        return [f for ds, _, _ in self.parts for f in ds.source_files()]
