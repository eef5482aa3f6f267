"""Running under ``torchrun``: process group, rank-0-only writes, and the few collectives the loop needs.

Nothing distributed is home-made: ``torchrun`` launches the processes and sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; gradients are all-reduced by ``DistributedDataParallel``; thresher adds only what keeps every rank
identical (summed per-sample losses for data schedules, gathered keys for MoCo's queue, one decision on the run
folder). On one process every function here is a no-op.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .errors import ThresherError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes (NCCL on CUDA, gloo on CPU); one process: nothing to do."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise ThresherError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        # CUDA: NCCL for the gradients, gloo for the small CPU tensors (losses, flags) the loop reduces
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
        atexit.register(_shutdown)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _shutdown() -> None:
    """Leave the process group before the interpreter exits: a group left to process teardown may destroy its
    communication threads while they still run, and the process then aborts ("terminate called without an active
    exception") after a run that succeeded."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks of a float64 array (identity on one process)."""
    if not info().active:
        return array
    t = torch.from_numpy(np.ascontiguousarray(array, np.float64)).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.numpy()


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Rows of ``t`` from every rank concatenated in rank order (ranks may hold different numbers of rows)."""
    if not info().active:
        return t
    world = dist.get_world_size()
    n = torch.tensor([len(t)], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    top = int(max(s.item() for s in sizes))
    padded = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: len(t)] = t
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])


def agree(error: str | None) -> None:
    """Raise on every rank if any rank reports an error (rank 0's message first), so no rank waits forever."""
    if not info().active:
        if error:
            raise ThresherError(error)
        return
    messages: list = [None] * dist.get_world_size()
    dist.all_gather_object(messages, error)
    first = next((m for m in messages if m), None)
    if first:
        raise ThresherError(first)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (one decision for all, e.g. when to checkpoint)."""
    if not info().active:
        return flag
    return bool(all_reduce_sum(np.array([float(flag)]))[0] > 0)


def barrier() -> None:
    if info().active:
        dist.barrier()
