"""Device choice and per-device defaults: CUDA when present (AMP, channels_last, pinned memory), else CPU."""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any

import torch

from .errors import ThresherError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA request is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ThresherError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ThresherError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def set_threads(threads: int | None) -> None:
    """Use every core by default (the machines this runs on are small)."""
    torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0))))


def autocast(device: torch.device) -> Any:
    """float16 autocast on CUDA; nothing on CPU (bfloat16 autocast is 10-30x slower on our CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last everywhere: on CUDA for tensor cores, and measured faster on our 2-core CPU as well
    (training at 32 px: small-cnn 2340 -> 2930 img/s, resnet20 690 -> 860; resnet18 inference at 64 px 670 -> 870)."""
    return torch.channels_last
