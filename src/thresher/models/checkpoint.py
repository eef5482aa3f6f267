"""The checkpoint format, end to end: where a run keeps its checkpoint, writing and reading thresher checkpoints,
resolving a run or chain folder to its checkpoint, what a checkpoint holds and what producing it cost; and loading
backbone weights from the checkpoint formats people actually have, safely and with one-line errors.

Accepted: plain torchvision/timm state dicts (classifier heads ignored), MoCo-style ``{"state_dict": {"module.
encoder_q....": ...}}``, thresher checkpoints (``{"model": {"backbone....": ...}, "optimizer": ..., ...}``), other
``{"model"|"state_dict"|...: sd}`` wrappers, DataParallel ``module.`` prefixes and ``.safetensors`` files. Pickles are
only read with ``weights_only=True``: a file that needs arbitrary Python objects is refused, never unpickled.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import read_json
from ..errors import ThresherError, one_line

# First key component of classifier / projection heads that a backbone never has (ignored, reported).
CLASSIFIER_HEADS = frozenset({"fc", "head", "heads", "head_dist", "classifier", "last_linear", "logits"})
# Path fragments marking the momentum / target copy of a two-encoder checkpoint (MoCo encoder_k, BYOL target...).
_SECONDARY = ("encoder_k", "momentum", "target", "ema")
_SHOW = 3  # how many keys an error message lists per category


@dataclass
class LoadReport:
    """What ``load_backbone_weights`` found and did: format, where the weights were, what was left out."""

    source_format: str  # "state_dict", "safetensors", "moco", "thresher", "checkpoint['<key>']"
    container: str  # key path holding the state dict inside the file, "" for a bare state dict
    prefix: str  # key prefix stripped from the checkpoint's keys, "" for none
    loaded: int  # number of tensors copied into the model
    ignored: list[str] = field(default_factory=list)  # checkpoint keys not used (heads, other encoders, queue...)
    missing: list[str] = field(default_factory=list)  # model keys left at their current values
    mismatched: list[str] = field(default_factory=list)  # keys skipped for shape (only with strict=False)

    def summary(self) -> str:
        """One line for logs."""
        where = f"[{self.container!r}]" if self.container else ""
        return (
            f"loaded {self.loaded} tensors from a {self.source_format} checkpoint{where}"
            f" (prefix {self.prefix!r}); ignored {len(self.ignored)}, missing {len(self.missing)},"
            f" shape-skipped {len(self.mismatched)}"
        )


def load_backbone_weights(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> LoadReport:
    """Copy a checkpoint's backbone weights into ``model`` in place, detecting the format and key prefix.

    ``strict=True``: every model tensor (bar ``num_batches_tracked``) must be present with the right shape and every
    non-head checkpoint key must be used, else a one-line ``ThresherError``. ``strict=False`` loads what fits.
    """
    path = Path(path)
    obj, is_safetensors = _read(path)
    model_sd = model.state_dict()
    container, prefix, state = _locate(obj, model_sd, path)
    fmt = _format_name(is_safetensors, container, prefix)

    to_load: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unexpected: list[str] = []
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    for key, value in state.items():
        if not key.startswith(prefix):
            ignored.append(key)
            continue
        name = key[len(prefix) :]
        if name in model_sd:
            if tuple(value.shape) != tuple(model_sd[name].shape):
                mismatched.append((name, tuple(value.shape), tuple(model_sd[name].shape)))
            else:
                to_load[name] = value
        elif name.split(".", 1)[0] in CLASSIFIER_HEADS or name.endswith("num_batches_tracked"):
            ignored.append(key)
        else:
            unexpected.append(name)
    missing = [k for k in model_sd if k not in to_load and not k.endswith("num_batches_tracked")]
    missing_report = [k for k in missing if k not in {m[0] for m in mismatched}]

    if strict and (mismatched or missing_report or unexpected):
        raise ThresherError(_mismatch_message(path, model, prefix, mismatched, missing_report, unexpected))
    model.load_state_dict(to_load, strict=False)
    return LoadReport(
        source_format=fmt,
        container=container,
        prefix=prefix,
        loaded=len(to_load),
        ignored=ignored + [prefix + k for k in unexpected],
        missing=missing,
        mismatched=[m[0] for m in mismatched],
    )


# ----------------------------------------------------------------------------------------------------------
# thresher's own checkpoints: the file a run folder holds, written and read here only

#: the checkpoint file of a run folder; a run folder stands for it wherever a checkpoint is accepted
CHECKPOINT_FILE = "checkpoint.pt"
KEPT_DIR = "at"  # RUN/at/step-N.pt: weights kept after step N (keep_at)
FORMAT = "thresher-checkpoint"


def checkpoint_path(folder: str | os.PathLike[str]) -> Path:
    """The checkpoint a run folder holds (or will hold)."""
    return Path(folder) / CHECKPOINT_FILE


def kept_checkpoint_path(folder: str | os.PathLike[str], step: int) -> Path:
    """The weights a run kept after ``step`` (``keep_at``), addressed as ``RUN@STEP``."""
    return Path(folder) / KEPT_DIR / f"step-{int(step)}.pt"


def kept_steps(folder: str | os.PathLike[str]) -> list[int]:
    """The steps whose weights a run folder kept."""
    found = (Path(folder) / KEPT_DIR).glob("step-*.pt")
    return sorted(int(p.stem.removeprefix("step-")) for p in found if p.stem.removeprefix("step-").isdigit())


def kept_step(path: str | os.PathLike[str] | None) -> tuple[str, int] | None:
    """``(RUN, STEP)`` when ``path`` is ``RUN@STEP`` (the weights a run kept after a step) and no file of that name
    exists; else None. The one place the form is parsed."""
    base, at, step = str(path or "").rpartition("@")
    if at and base and step.isdigit() and not Path(str(path)).exists():
        return base, int(step)
    return None


def resolve_checkpoint(path: str | os.PathLike[str] | None, *, strict: bool = True) -> Path | None:
    """A checkpoint file as given; a run folder's checkpoint; a chain folder's last stage's (``chain.json``);
    ``RUN@STEP``, the weights a run kept after that step (``keep_at``).

    ``strict=False`` returns an unresolvable path unchanged, for the reader that later says what is wrong with it."""
    if not path:
        return None
    p = Path(path)
    kept_at = kept_step(path)
    if kept_at and Path(kept_at[0]).is_dir():
        base, step = kept_at
        kept = kept_checkpoint_path(base, step)
        if not kept.is_file():
            have = ", ".join(map(str, kept_steps(base))) or "none"
            raise ThresherError(f"{base} kept no weights at step {step} (kept: {have}); train it with --keep-at {step}")
        return kept
    if p.is_dir():
        if checkpoint_path(p).is_file():
            return checkpoint_path(p)
        chain = p / "chain.json"
        if chain.is_file():
            return Path(read_json(chain)["checkpoint"])
        if strict:
            raise ThresherError(f"{p} holds no {CHECKPOINT_FILE}; give a checkpoint file or a finished run folder")
        return p
    if strict and not p.is_file():
        raise ThresherError(f"checkpoint {p} does not exist")
    return p


def write_checkpoint(
    path: str | os.PathLike[str], *, backbone: str, model: Mapping[str, torch.Tensor], **fields
) -> None:
    """Write a thresher checkpoint atomically: the objective's (or a model's) state dict as ``model`` (keys
    ``backbone.*`` and ``head.*``), the backbone's name, versions, and whatever else the writer records."""
    from .. import SCHEMA_VERSION, __version__, atomic

    doc = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "thresher_version": __version__,
           "backbone": backbone, "model": dict(model), **fields}  # fmt: skip
    atomic.torch_save(path, doc)


def read_checkpoint(path: str | os.PathLike[str]) -> dict:
    """A thresher checkpoint as its dict (tensors on the CPU, pickles refused); one line when it is not one."""
    obj, _ = _read(Path(path))
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), Mapping):
        raise ThresherError(f"{path} is not a thresher checkpoint (it has no 'model' weights); give a thresher run")
    return obj


def head_weights(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear head (``head.weight``, ``head.bias``) of a supervised thresher checkpoint."""
    model = read_checkpoint(path)["model"]
    if "head.weight" not in model or "head.bias" not in model:
        raise ThresherError(f"{path} has no linear head: give a supervised thresher checkpoint")
    return model["head.weight"], model["head.bias"]


def describe_checkpoint(path: str | os.PathLike[str]) -> dict:
    """What a thresher checkpoint is: backbone, objective, classes, and the head's output size (None without one)."""
    ckpt = read_checkpoint(path)
    head = ckpt["model"].get("head.weight")
    return {
        "backbone": ckpt.get("backbone"),
        "objective": ckpt.get("objective"),
        "classes": ckpt.get("classes"),
        "head_outputs": int(head.shape[0]) if head is not None else None,
    }


def training_cost(
    checkpoint: str | os.PathLike[str] | None, given: str | os.PathLike[str] | None = None
) -> dict | None:
    """What producing ``checkpoint`` cost, as the run recorded it: a chain's total when ``given`` is the chain's
    folder (all its stages), else the run's ``summary.json``; None for a checkpoint thresher did not train."""
    if checkpoint is None:
        return None
    checkpoint = resolve_checkpoint(checkpoint, strict=False)
    if given and (Path(given) / "chain.json").is_file():
        return read_json(Path(given) / "chain.json").get("cost")
    if Path(checkpoint).parent.name == KEPT_DIR:  # RUN@STEP: what the run had cost by that step
        state = read_checkpoint(checkpoint).get("state") or {}
        images = float(state.get("images", 0))
        return {"images": images, "seconds": float(state.get("seconds", 0.0)),
                "flops": images * max(0.0, float(state.get("flops_per_image", 0.0)))}  # fmt: skip
    f = Path(checkpoint).parent / "summary.json"
    return read_json(f).get("cost") if f.is_file() else None


# ----------------------------------------------------------------------------------------------------------
# reading


def _read(path: Path) -> tuple[Any, bool]:
    """Load the file's content: safetensors, or a pickle restricted to tensors and plain containers."""
    if not path.exists() and "@" in path.name:  # RUN@STEP: the weights a run kept after that step
        path = resolve_checkpoint(path)
    if not path.exists():
        raise ThresherError(f"checkpoint not found: {str(path)!r}")
    if path.is_dir():
        raise ThresherError(f"checkpoint {str(path)!r} is a directory; pass the weights file inside it")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), True
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the user's file
            raise ThresherError(f"cannot read safetensors file {str(path)!r}: {one_line(exc, 200)}") from None
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it better
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise ThresherError(
                f"checkpoint {str(path)!r} is not a plain tensor checkpoint: it pickles the Python object"
                f" {found.group(1)}, and thresher will not unpickle it for safety; if you trust the file,"
                " re-save just the weights: torch.save(torch.load(path, weights_only=False)['state_dict'],"
                " 'weights.pt') (or the model's .state_dict())"
            ) from None
        raise _not_a_checkpoint(path) from None
    except Exception:  # noqa: BLE001 - torch raises KeyError/EOFError/RuntimeError... for foreign files
        raise _not_a_checkpoint(path) from None


def _not_a_checkpoint(path: Path) -> ThresherError:
    return ThresherError(
        f"{str(path)!r} is not a PyTorch or safetensors checkpoint (expected a file written by torch.save or"
        " safetensors.torch.save_file)"
    )


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors files start with a little-endian u64 header length followed by a JSON object."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (size,) = struct.unpack("<Q", head[:8])
    return 0 < size < path.stat().st_size


# ----------------------------------------------------------------------------------------------------------
# finding the backbone's weights inside the file


def _tensor_dicts(obj: Any, path: str = "", depth: int = 0) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Every dict holding tensors in ``obj`` (up to 3 levels deep), with its key path, in file order."""
    found: list[tuple[str, dict[str, torch.Tensor]]] = []
    if not isinstance(obj, Mapping) or depth > 3:
        return found
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors:
        found.append((path, tensors))
    for key, value in obj.items():
        if isinstance(value, Mapping):
            found += _tensor_dicts(value, f"{path}.{key}" if path else str(key), depth + 1)
    return found


def _locate(obj: Any, model_sd: Mapping[str, torch.Tensor], path: Path) -> tuple[str, str, dict[str, torch.Tensor]]:
    """Choose the (container, key prefix) whose stripped keys best overlap the model's keys.

    Ties go to the shallower container, then away from momentum/target copies (MoCo ``encoder_k``), then to what
    comes first in the file.
    """
    candidates = _tensor_dicts(obj)
    if not candidates:
        raise ThresherError(f"checkpoint {str(path)!r} holds no tensors (found {type(obj).__name__})")
    best: tuple[tuple[int, int, int, int], str, str, dict[str, torch.Tensor]] | None = None
    for order, (container, sd) in enumerate(candidates):
        scores: dict[str, list[int]] = {}  # prefix -> [keys matching the model once stripped, first index]
        for idx, key in enumerate(sd):
            for cut in [0] + [m.end() for m in re.finditer(r"\.", key)]:
                if key[cut:] in model_sd:
                    scores.setdefault(key[:cut], [0, idx])[0] += 1
        for prefix, (count, first) in scores.items():
            secondary = any(tag in f"{container}.{prefix}".lower() for tag in _SECONDARY)
            depth = container.count(".") + bool(container)
            rank = (count, -depth, -int(secondary), -(order * 10**9 + first))
            if best is None or rank > best[0]:
                best = (rank, container, prefix, sd)
    if best is None:
        raise ThresherError(
            f"checkpoint {str(path)!r} has no weights for this backbone: its keys look like"
            f" {list(candidates[0][1])[:_SHOW]}, the backbone expects keys like {list(model_sd)[:_SHOW]};"
            " give the --backbone it was trained with"
        )
    return best[1], best[2], best[3]


def _format_name(is_safetensors: bool, container: str, prefix: str) -> str:
    if is_safetensors:
        return "safetensors"
    if "encoder_q." in prefix or "base_encoder." in prefix:
        return "moco"
    if container == "model" and prefix.startswith("backbone."):
        return "thresher"
    return f"checkpoint[{container!r}]" if container else "state_dict"


def _mismatch_message(
    path: Path,
    model: nn.Module,
    prefix: str,
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    missing: list[str],
    unexpected: list[str],
) -> str:
    def first(items: list[str]) -> str:
        more = f", ... {len(items) - _SHOW} more" if len(items) > _SHOW else ""
        return f" [{', '.join(items[:_SHOW])}{more}]" if items else ""

    def count(n: int, what: str) -> str:
        return f"{n} {what}" + ("" if n == 1 else "es" if what.endswith("mismatch") else "s")

    shapes = [f"{k}: checkpoint {tuple(a)} vs backbone {tuple(b)}" for k, a, b in mismatched]
    stripped = f" (after stripping prefix {prefix!r})" if prefix else ""
    # what to do comes first: the key lists can be long, and the command line shortens a message to 400 characters
    text = (
        f"checkpoint {str(path)!r} does not fit backbone {type(model).__name__}{stripped}; use the backbone the"
        " checkpoint was trained with (or strict=False to load only the tensors that fit):"
        f" {count(len(mismatched), 'shape mismatch')}{first(shapes)};"
        f" {count(len(missing), 'missing key')}{first(missing)};"
        f" {count(len(unexpected), 'unexpected key')}{first(unexpected)}"
    )
    return one_line(text, limit=1500)


def checkpoint_backbone(path: str | os.PathLike[str]) -> str:
    """The backbone name a thresher checkpoint records (other checkpoints need the name given explicitly)."""
    meta, _ = _read(Path(path))  # a missing, foreign or unsafe file fails here with a message saying what it is
    if isinstance(meta, dict) and isinstance(meta.get("backbone"), str):
        return meta["backbone"]
    raise ThresherError(f"{path} is not a thresher checkpoint; name its backbone (--backbone / --features-backbone)")
