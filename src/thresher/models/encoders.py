"""Public pre-trained encoders by name: ``torchvision:resnet50:IMAGENET1K_V2``, ``timm:resnet18.a1_in1k`` or a
thresher checkpoint / run folder, each with the preprocessing its weights expect (issue 17, item 3).

A user who already has a pre-trained model scores a pool with it and pays only forward passes. Weights come only
through the libraries' own caches (torch hub's ``checkpoints/`` folder, the Hugging Face hub cache for timm); with
``THRESHER_OFFLINE`` set nothing is downloaded and a missing file is a one-line error naming where it belongs.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ThresherError, one_line

KINDS = ("torchvision", "timm", "file")
_FORMS = (
    "write torchvision:NAME:WEIGHTS (e.g. torchvision:resnet50:IMAGENET1K_V2), timm:NAME or a thresher run/checkpoint"
)


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder: its kind, the model name (a path for ``file``) and the weights (torchvision enum member, timm
    pretrained tag, or None)."""

    kind: Literal["torchvision", "timm", "file"]
    name: str
    weights: str | None = None

    @property
    def text(self) -> str:
        """The spec written back as text."""
        if self.kind == "torchvision":
            return f"torchvision:{self.name}:{self.weights}"
        return f"timm:{self.name}" if self.kind == "timm" else self.name


@dataclass
class Encoder:
    """A loaded encoder: pooled-feature ``module`` (eval mode), its classifier ``head`` (None without one), the
    classes of that head, the preprocessing its weights expect, and its ``identity`` for cache keys."""

    spec: str
    module: nn.Module
    head: nn.Module | None
    class_ids: list[str] | None
    resolution: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    identity: dict[str, Any]
    path: Path  # the weights file read

    @torch.no_grad()
    def preprocess(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A (B, C, H, W) batch, uint8 or float in [0, 1], resized, centre-cropped and normalised as the weights
        expect; grayscale is repeated to 3 channels. ``generator`` is ignored (deterministic): it stands in for the
        eval transform."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected a batch (B, 1 or 3, H, W), got {tuple(x.shape)}")
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        height, width = x.shape[-2:]
        short = min(height, width)
        size = (round(height * self.resize / short), round(width * self.resize / short))
        if size != (height, width):
            smooth = self.interpolation in ("bilinear", "bicubic")
            x = F.interpolate(
                x, size=size, mode=self.interpolation, **({"align_corners": False, "antialias": True} if smooth else {})
            )
            if self.interpolation == "bicubic":
                x = x.clamp_(0.0, 1.0)  # bicubic overshoots; a uint8 (PIL) pipeline clamps the same way
        top, left = round((size[0] - self.resolution) / 2), round((size[1] - self.resolution) / 2)
        x = x[..., top : top + self.resolution, left : left + self.resolution]
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x.sub(mean).div_(std).contiguous()

    def class_map(self, pool_classes: list[str]) -> np.ndarray | None:
        """For each pool class (a wnid, or ``wnid<TAB>words``) the column of ``head`` that predicts it; None when any
        class is not one of the head's (callers then fit a head on pool features)."""
        if self.head is None or self.class_ids is None:
            return None
        column = {c: i for i, c in enumerate(self.class_ids)}
        cols = [column.get(str(name).split("\t", 1)[0].strip()) for name in pool_classes]
        if not cols or any(c is None for c in cols):
            return None
        return np.asarray(cols, np.int64)


class _PooledFeatures(nn.Module):
    """A torchvision classifier with its final linear layer taken off: ``forward_features`` gives pooled features."""

    def __init__(self, model: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.model = model
        self.feature_dim = feature_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, shape (B, feature_dim)."""
        return torch.flatten(self.model(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


# ----------------------------------------------------------------------------------------------------------
# parsing


def parse_encoder(text: str) -> EncoderSpec:
    """``torchvision:NAME[:WEIGHTS]``, ``timm:NAME`` or an existing path, checked against what the libraries know."""
    text = str(text).strip()
    kind, _, rest = text.partition(":")
    if kind == "torchvision":
        name, _, weights = rest.partition(":")
        return EncoderSpec("torchvision", name, _torchvision_weights(name, weights or "DEFAULT").name)
    if kind == "timm":
        return _parse_timm(rest)
    if text and Path(text).expanduser().exists():
        return EncoderSpec("file", str(Path(text).expanduser()))
    if not text:
        raise ThresherError(f"no encoder given; {_FORMS}")
    if rest and len(kind) > 1 and kind.isidentifier():
        raise ThresherError(f"unknown encoder kind {kind!r} in {text!r}; {_FORMS}")
    raise ThresherError(f"encoder path {text!r} does not exist; {_FORMS}")


def _torchvision_weights(name: str, weights: str):
    from torchvision import models

    names = models.list_models(module=models)  # classification models only
    if name not in names:
        raise ThresherError(f"unknown torchvision model {name!r}{_did_you_mean(name, names, 'torchvision:{}:DEFAULT')}")
    enum = models.get_model_weights(name)
    members = list(enum.__members__)  # includes the DEFAULT alias
    if weights not in members:
        raise ThresherError(
            f"torchvision {name} has no weights {weights!r}; write torchvision:{name}:W, W one of {', '.join(members)}"
        )
    return enum[weights]


def _parse_timm(name: str) -> EncoderSpec:
    try:
        import timm
    except ImportError:
        raise ThresherError(f"encoder timm:{name} needs the timm package: pip install 'thresher[timm]'") from None
    if not name:
        raise ThresherError("a timm encoder needs a model name, e.g. timm:resnet18.a1_in1k")
    cfg = _timm_cfg(name) if timm.is_model(name) else None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        hint = _did_you_mean(name, timm.list_pretrained(), "timm:{}")
        raise ThresherError(f"timm has no pretrained weights named {name!r}{hint}")
    return EncoderSpec("timm", name, cfg.tag or None)


def _timm_cfg(name: str):
    import timm

    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # an unknown pretrained tag
        return None


def _did_you_mean(name: str, known: list[str], form: str) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(form.format(c) for c in close)}?" if close else ""


# ----------------------------------------------------------------------------------------------------------
# loading


def load_encoder(spec: EncoderSpec | str) -> Encoder:
    """Load the encoder ``spec`` names (weights from the libraries' caches only; none downloaded offline)."""
    text = spec if isinstance(spec, str) else spec.text
    spec = parse_encoder(spec) if isinstance(spec, str) else spec
    loaders = {"torchvision": _load_torchvision, "timm": _load_timm, "file": _load_file}
    if spec.kind not in loaders:
        raise ThresherError(f"unknown encoder kind {spec.kind!r}; {_FORMS}")
    enc = loaders[spec.kind](spec, text.strip())
    enc.module.eval()
    if enc.head is not None:
        enc.head.eval()
    return enc


def encoder_weights(text: str) -> tuple[Path, str]:
    """The weights file an encoder reads and the thresher backbone that loads it, for protocols that fine-tune or
    re-embed it at their own resolution (issue 20): torchvision's ResNets are thresher's ``resnet18/34/50``, a timm
    model ``timm:NAME``, a thresher run the backbone it records. The file is found (never downloaded offline) and
    checked as ``load_encoder`` does."""
    from . import BACKBONES

    spec = parse_encoder(text)
    if spec.kind == "file":
        enc = load_encoder(spec)
        return enc.path, str(enc.identity["encoder"]).removeprefix("thresher:")
    name = spec.name if spec.kind == "torchvision" else f"timm:{spec.name}"
    if name not in BACKBONES:
        raise ThresherError(f"{spec.text} has no thresher backbone to load it into (of torchvision's models, the "
                            "ResNets 18, 34 and 50); use a timm:NAME encoder or a thresher checkpoint")  # fmt: skip
    return load_encoder(spec).path, name


def offline() -> bool:
    """``THRESHER_OFFLINE`` is set: nothing may be downloaded."""
    return bool(os.environ.get("THRESHER_OFFLINE"))


def _hub_file(url: str) -> Path:
    """Where torch hub's cache keeps the weights downloaded from ``url`` (torchvision's, and timm's release URLs)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _load_torchvision(spec: EncoderSpec, text: str) -> Encoder:
    from torchvision import models

    from ..runs import file_digest

    weights = _torchvision_weights(spec.name, spec.weights or "DEFAULT")
    path = _hub_file(weights.url)
    if not path.is_file():
        if offline():
            raise ThresherError(
                f"torchvision weights {spec.name}:{weights.name} are not in torch's cache and THRESHER_OFFLINE is set: "
                f"download {weights.url} to {path} (e.g. curl -L -o {path} {weights.url}), or unset THRESHER_OFFLINE"
            )
        try:
            weights.get_state_dict(progress=True, check_hash=True)  # torch hub downloads into its cache: ``path``
        except Exception as exc:  # noqa: BLE001 - network failures come in many types
            raise ThresherError(
                f"cannot download {weights.url} to {path} ({one_line(exc, 120)}); put the file there by hand"
            ) from None
    _check_plain_tensors(path)
    # the builder sets what the weights need (class count, image size, input transform) and reads ``path`` itself
    model = models.get_model(spec.name, weights=weights, progress=False)
    categories = weights.meta.get("categories") or []
    head = _take_off_classifier(model, len(categories), f"torchvision:{spec.name}")
    t = weights.transforms()
    return Encoder(
        spec=text,
        module=_PooledFeatures(model, head.in_features),
        head=head,
        class_ids=_imagenet_wnids(len(categories)),
        resolution=int(_first(t.crop_size)),
        resize=max(int(_first(t.resize_size)), int(_first(t.crop_size))),
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        interpolation=_interpolation(t.interpolation),
        identity={"encoder": f"torchvision:{spec.name}:{weights.name}", "sha256": file_digest(path)},
        path=path,
    )


def _load_timm(spec: EncoderSpec, text: str) -> Encoder:
    import timm
    from huggingface_hub import constants as hf_constants

    from ..runs import file_digest
    from .backbones import as_timm_backbone

    cfg = _timm_cfg(spec.name)
    if cfg is None:
        raise ThresherError(f"timm has no pretrained weights named {spec.name!r}")
    repo = f"{hf_constants.HF_HUB_CACHE}/models--{(cfg.hf_hub_id or '').split('@')[0].replace('/', '--')}"
    if not cfg.hf_hub_id:  # an old-style release URL: timm fetches it through torch hub's cache
        repo = str(_hub_file(cfg.url))
        if offline() and not Path(repo).is_file():
            raise ThresherError(
                f"timm weights {spec.name} are not cached and THRESHER_OFFLINE is set: put {cfg.url} at {repo}"
            )
    try:
        with _hf_offline(offline()):
            model = timm.create_model(spec.name, pretrained=True)
    except Exception as exc:  # noqa: BLE001 - hub, network and file errors come in many types
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        if offline() and isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, FileNotFoundError)):
            raise ThresherError(
                f"timm weights {spec.name} are not in the Hugging Face cache ({repo}) and THRESHER_OFFLINE is set: "
                f"online, run once without THRESHER_OFFLINE (or `hf download {cfg.hf_hub_id}`) to fill it"
            ) from None
        raise ThresherError(f"cannot load timm weights {spec.name} ({one_line(exc, 160)}); cache: {repo}") from None
    path = _timm_weights_file(cfg)
    classifier = model.get_classifier()
    head = classifier if isinstance(classifier, nn.Linear) else None
    n_classes = head.out_features if head is not None else 0
    data = timm.data.resolve_model_data_config(model)
    model.reset_classifier(0)
    as_timm_backbone(model)
    resolution = int(data["input_size"][-1])
    return Encoder(
        spec=text,
        module=model,
        head=head,
        class_ids=_imagenet_wnids(n_classes, cfg.to_dict()),
        resolution=resolution,
        resize=max(resolution, math.floor(resolution / float(data.get("crop_pct") or 1.0))),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        interpolation=_interpolation(data.get("interpolation", "bilinear")),
        identity={"encoder": f"timm:{spec.name}", "sha256": file_digest(path)},
        path=path,
    )


def _load_file(spec: EncoderSpec, text: str) -> Encoder:
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from ..runs import file_digest
    from . import build_backbone
    from .checkpoint import read_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(spec.name)
    ckpt = read_checkpoint(path)
    backbone = ckpt.get("backbone")
    if not isinstance(backbone, str):
        raise ThresherError(f"{path} is not a thresher checkpoint (no backbone recorded); {_FORMS}")
    model = build_backbone(backbone, str(path), 0)
    weight, bias = ckpt["model"].get("head.weight"), ckpt["model"].get("head.bias")
    head = None
    if weight is not None and weight.dim() == 2:
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        head.load_state_dict({"weight": weight, **({"bias": bias} if bias is not None else {})})
    classes = ckpt.get("classes")
    fits = head is not None and classes and len(classes) == head.out_features
    class_ids = [str(c).split("\t", 1)[0].strip() for c in classes] if fits else None  # 'wnid<TAB>words': the wnid
    resolution = int((ckpt.get("config") or {}).get("resolution") or 32)
    return Encoder(
        spec=text,
        module=model,
        head=head,
        class_ids=class_ids,
        resolution=resolution,
        resize=resolution,  # thresher's eval transform: the image at the resolution it was trained at
        mean=tuple(IMAGENET_MEAN),
        std=tuple(IMAGENET_STD),
        interpolation="bilinear",
        identity={"encoder": f"thresher:{backbone}", "sha256": file_digest(path)},  # by content, not by path
        path=Path(path),
    )


# ----------------------------------------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def _hf_offline(on: bool) -> Iterator[None]:
    """Hugging Face hub offline for the block when ``on`` (it then reads its cache only), restored after."""
    from huggingface_hub import constants as hf_constants

    saved = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = saved or on
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = saved


def _timm_weights_file(cfg) -> Path:
    """The cached file timm read the weights from (safetensors first, as timm prefers)."""
    if not cfg.hf_hub_id:
        return _hub_file(cfg.url)
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for name in names:
        found = try_to_load_from_cache(repo_id, name, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    raise ThresherError(f"timm loaded {cfg.hf_hub_id} but no weights file of it is in the Hugging Face cache")


def _check_plain_tensors(path: Path) -> None:
    """Refuse a cached file that is not plain tensors before the library unpickles it (torchvision reads it without
    ``weights_only``); the checkpoint reader says what is wrong in one line."""
    from .checkpoint import _read

    try:
        _read(path)
    except ThresherError as exc:
        raise ThresherError(one_line(f"{exc}; or delete {path} and fetch the weights again", 1500)) from None


def _take_off_classifier(model: nn.Module, n_classes: int, what: str) -> nn.Linear:
    """Replace the model's last linear layer onto ``n_classes`` by Identity and return it."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not n_classes or not found:
        raise ThresherError(f"{what} has no linear classifier to take off; use another model")
    name, head = found[-1]
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, nn.Identity())
    return head


def _imagenet_wnids(n_classes: int, cfg: dict | None = None) -> list[str] | None:
    """The wnids of an ImageNet head of ``n_classes`` outputs in head order (timm's tables), None if unknown."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset
    except ImportError:
        return None
    subset = infer_imagenet_subset(cfg) if cfg else ("imagenet-1k" if n_classes == 1000 else None)
    if not subset:
        return None
    names = list(ImageNetInfo(subset).label_names())
    return names if len(names) == n_classes else None


def _interpolation(mode: Any) -> str:
    value = str(getattr(mode, "value", mode)).lower()
    return value if value in ("bilinear", "bicubic", "nearest") else "bilinear"


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, (list, tuple)) else v
