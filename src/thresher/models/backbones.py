"""Feature-extractor backbones behind one registry: ``create_backbone("resnet18")``, ``"small-cnn"``, ``"timm:<name>"``.

Every backbone is an ``nn.Module`` with an int ``feature_dim`` and ``forward_features(x) -> (B, feature_dim)``
(globally pooled features, no classifier); ``forward`` is the same call. thresher's own CNNs also give
``forward_map(x)``, the unpooled last feature map (``map_stride`` pixels per cell), for dense heads. Parameter names
follow the upstream library (torchvision / timm) exactly, so public checkpoints load without renaming (see
``checkpoint.py``).
"""

from __future__ import annotations

import inspect
import itertools
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet

from ..errors import ThresherError
from ..registry import Registry

BACKBONES: Registry[nn.Module] = Registry("backbone")


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name`` (e.g. ``"resnet18"``, ``"small-cnn"``, ``"timm:resnet18"``).

    Weights are always freshly initialised (nothing is downloaded); load weights with ``load_backbone_weights``.
    """
    factory = BACKBONES.get(name)  # raises ThresherError with a "did you mean" hint for unknown names
    if name in list(BACKBONES):  # fixed-name factories: check options here; timm checks its own
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError:
            accepted = [p for p in inspect.signature(factory).parameters if p not in ("self", "kwargs")]
            raise ThresherError(
                f"backbone {name!r} does not accept option(s) {sorted(kwargs)}; it accepts {accepted}"
            ) from None
    return BACKBONES.create(name, **kwargs)


def backbone_names() -> list[str]:
    """All registered backbone names, with ``timm:<name>`` standing for any timm model."""
    return BACKBONES.names()


def _kaiming_init(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convs, unit/zero BN, as used for the CIFAR nets and small-cnn."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------------------
# torchvision ResNets


class TorchvisionResNet(tv_resnet.ResNet):
    """torchvision's ResNet with ``fc`` replaced by ``nn.Identity``: state-dict keys are torchvision's minus ``fc.*``.

    ``small_stem=True`` swaps the 7x7/2 conv + max-pool stem for a 3x3/1 conv and no pool (CIFAR-style), for
    32-64 px images; the ImageNet stem is otherwise left as is whatever the input resolution.
    """

    def __init__(
        self,
        block: type[tv_resnet.BasicBlock | tv_resnet.Bottleneck],
        layers: list[int],
        *,
        small_stem: bool = False,
        in_chans: int = 3,
    ) -> None:
        super().__init__(block, layers)  # torchvision's default init
        self.fc = nn.Identity()
        self.feature_dim: int = 512 * block.expansion
        if small_stem or in_chans != 3:
            kernel, stride, padding = (3, 1, 1) if small_stem else (7, 2, 3)
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=kernel, stride=stride, padding=padding, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if small_stem:
            self.maxpool = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, shape (B, feature_dim)."""
        return self._forward_impl(x)  # ends with avgpool, flatten, fc=Identity

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (B, feature_dim, H/s, W/s) before pooling, for dense heads (s = map_stride)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    @property
    def map_stride(self) -> int:
        return (self.conv1.stride[0] * (2 if isinstance(self.maxpool, nn.MaxPool2d) else 1)) * 8

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output (``layer1`` to ``layer4``), for a feature pyramid (strides ``stage_strides``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out

    @property
    def stage_channels(self) -> list[int]:
        return [self.feature_dim // 8, self.feature_dim // 4, self.feature_dim // 2, self.feature_dim]

    @property
    def stage_strides(self) -> list[int]:
        return [self.map_stride // 8, self.map_stride // 4, self.map_stride // 2, self.map_stride]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def _tv_factory(name: str, block: Any, layers: list[int], small_stem: bool) -> None:
    def factory(*, in_chans: int = 3) -> nn.Module:
        return TorchvisionResNet(block, layers, small_stem=small_stem, in_chans=in_chans)

    factory.__name__ = name.replace("-", "_")
    factory.__doc__ = f"torchvision {name.removesuffix('-small')} without its classifier" + (
        ", with a 3x3 stride-1 stem and no max-pool for small images." if small_stem else "."
    )
    BACKBONES.register(name)(factory)


for _depth, _block, _layers in (
    (18, tv_resnet.BasicBlock, [2, 2, 2, 2]),
    (34, tv_resnet.BasicBlock, [3, 4, 6, 3]),
    (50, tv_resnet.Bottleneck, [3, 4, 6, 3]),
):
    _tv_factory(f"resnet{_depth}", _block, _layers, small_stem=False)
    _tv_factory(f"resnet{_depth}-small", _block, _layers, small_stem=True)


# ----------------------------------------------------------------------------------------------------------
# CIFAR ResNets (He et al. 2016, section 4.2)


class _CifarBlock(nn.Module):
    """Basic block with an option-A shortcut: identity, or stride-2 subsampling plus zero-padded channels.

    Option A is the paper's choice for the CIFAR nets: parameter-free, so ResNet-20 has 0.27M parameters.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.stride = stride
        self.pad = out_ch - in_ch

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x), inplace=True)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32 px images: 3x3 stem, 3 stages of n basic blocks at 16/32/64 channels, global pool."""

    def __init__(self, n: int, *, in_chans: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_ch = [], 16
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(_CifarBlock(in_ch, width, 2 if (i > 0 and j == 0) else 1))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.feature_dim: int = 64
        _kaiming_init(self)

    map_stride = 4

    stage_channels = (16, 32, 64)
    stage_strides = (1, 2, 4)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (B, 64, H/4, W/4), for dense heads."""
        return self.forward_stages(x)[-1]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output (strides 1, 2 and 4), for a feature pyramid."""
        x = self.layer1(F.relu(self.bn1(self.conv1(x)), inplace=True))
        out = [x]
        for layer in (self.layer2, self.layer3):
            x = layer(x)
            out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, shape (B, 64)."""
        return torch.flatten(F.adaptive_avg_pool2d(self.forward_map(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@BACKBONES.register("resnet20")
def resnet20(*, in_chans: int = 3) -> nn.Module:
    """CIFAR ResNet-20 (n=3, 0.27M parameters, option-A shortcuts)."""
    return CifarResNet(3, in_chans=in_chans)


@BACKBONES.register("resnet32")
def resnet32(*, in_chans: int = 3) -> nn.Module:
    """CIFAR ResNet-32 (n=5, 0.46M parameters, option-A shortcuts)."""
    return CifarResNet(5, in_chans=in_chans)


# ----------------------------------------------------------------------------------------------------------
# small-cnn


class SmallCNN(nn.Module):
    """Five conv-BN-ReLU stages (16@32px, 48@16, 96@8, 96@8, 192@4 at 32 px input), global average pool.

    Built for CPU runs: ~13M multiply-adds and 0.3M parameters at 32 px, about 3x fewer FLOPs than ResNet-20 and
    only five layers (per-layer overhead dominates on CPU). The stem stays at full resolution with few channels;
    strided convs do the downsampling. Trains at >1,000 img/s (batch 128, 32 px, 2 threads; bench/).
    """

    STAGES: tuple[tuple[int, int], ...] = ((16, 1), (48, 2), (96, 2), (96, 1), (192, 2))  # (channels, stride)

    def __init__(self, *, in_chans: int = 3, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = in_chans
        for channels, stride in self.STAGES:
            out_ch = max(4, round(channels * width))
            layers += [
                nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.feature_dim: int = in_ch
        _kaiming_init(self)

    map_stride = 8

    @property
    def stage_channels(self) -> list[int]:
        """Each stride's last layer's channels (16, 48, 96 and 192 at full width)."""
        return [self.features[3 * i].out_channels for i in self._taps()]

    @property
    def stage_strides(self) -> list[int]:
        """The stride of each tapped layer (1, 2, 4 and 8)."""
        strides = list(itertools.accumulate((s for _, s in self.STAGES), operator.mul))
        return [strides[i] for i in self._taps()]

    def _taps(self) -> list[int]:
        """Index in STAGES of the last layer at each stride (0, 1, 3 and 4)."""
        n = len(self.STAGES)
        return [i for i in range(n) if i == n - 1 or self.STAGES[i + 1][1] > 1]

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (B, feature_dim, H/8, W/8), for dense heads."""
        return self.features(x)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The last layer's output at each stride (1, 2, 4 and 8), for a feature pyramid."""
        taps, out = {3 * i + 2 for i in self._taps()}, []  # after each tapped layer's ReLU
        for j, layer in enumerate(self.features):
            x = layer(x)
            if j in taps:
                out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, shape (B, feature_dim)."""
        return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@BACKBONES.register("small-cnn")
def small_cnn(*, in_chans: int = 3) -> nn.Module:
    """A five-layer CNN fast enough to pre-train on CPU (feature_dim 192)."""
    return SmallCNN(in_chans=in_chans)


@BACKBONES.register("small-cnn-half")
def small_cnn_half(*, in_chans: int = 3) -> nn.Module:
    """small-cnn at half the width (feature_dim 96, about a quarter of the FLOPs): a cheap scoring proxy that keeps
    the full resolution (issue 17)."""
    return SmallCNN(in_chans=in_chans, width=0.5)


# ----------------------------------------------------------------------------------------------------------
# timm


class _TimmBackboneMixin:
    """Turns a timm model into a thresher backbone in place (pooled ``forward_features``), keeping timm's keys.

    The model's class is swapped for a subclass rather than wrapped, so ``state_dict()`` keys stay exactly timm's
    and timm checkpoints load without renaming.
    """

    feature_dim: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logits features, shape (B, feature_dim)."""
        return self.forward_head(super().forward_features(x), pre_logits=True)  # type: ignore[misc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


_TIMM_CLASSES: dict[type, type] = {}


@BACKBONES.register("timm", prefix=True)
def timm_backbone(*, name: str, **kwargs: Any) -> nn.Module:
    """Any timm model as ``timm:<model_name>``, built with ``pretrained=False, num_classes=0``; kwargs go to timm."""
    try:
        import timm
    except ImportError:
        raise ThresherError(f"backbone {name!r} needs the timm package: pip install 'thresher[timm]'") from None
    model_name = name.partition(":")[2]
    if not model_name:
        raise ThresherError("timm backbone needs a model name, e.g. 'timm:resnet18'")
    if not timm.is_model(model_name):
        import difflib

        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(repr(f'timm:{c}') for c in close)}?" if close else ""
        raise ThresherError(f"unknown timm model {model_name!r}{hint}")
    kwargs = {**kwargs, "pretrained": False, "num_classes": 0}
    try:
        model = timm.create_model(model_name, **kwargs)
    except TypeError as exc:
        raise ThresherError(f"backbone {name!r}: bad option(s) for timm: {exc}") from None
    return as_timm_backbone(model)


def as_timm_backbone(model: nn.Module) -> nn.Module:
    """A timm model made a thresher backbone in place (pooled ``forward_features``, ``feature_dim``), keys kept."""
    cls = type(model)
    if cls not in _TIMM_CLASSES:
        _TIMM_CLASSES[cls] = type(f"Timm{cls.__name__}Backbone", (_TimmBackboneMixin, cls), {})
    model.__class__ = _TIMM_CLASSES[cls]
    # head_hidden_size is what forward_head(pre_logits=True) returns (differs from num_features e.g. MobileNetV3).
    model.feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model
