"""Image transforms at a chosen square resolution: a batched pure-torch fast path and a torchvision v2 reference.

Both paths draw from the same distributions. ``build_transform(kind, R)`` returns a ``BatchTransform`` that maps a
uint8 batch ``(B, 3, S, S)`` (any device, any memory format) plus a ``torch.Generator`` to normalised float32
``(B, 3, R, R)`` -- or a pair of views for ``ssl``. ``build_transform(kind, R, backend="reference")`` returns the
per-sample torchvision ``transforms.v2`` pipeline for one uint8 CHW tensor, built from the same settings.

Randomness (the one approach used everywhere): every random parameter is drawn from the ``generator`` argument on
*the generator's device*, in a fixed order and with fixed shapes, then moved to the images' device. A CPU generator
(what ``step_generator`` returns by default) therefore gives bit-identical parameters whether the images are on CPU
or CUDA, and the same seed always reproduces the same augmentations. Each image -- and each of the two views -- gets
its own independent parameters; nothing loops over images in Python.

Both paths work in float32 on ``[0, 1]`` from the first step (the reference starts with ``ToDtype(scale=True)``), so
neither re-quantises to uint8 between augmentations.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ThresherError
from ..registry import Registry

#: batch targets that do not move with the pixels: every transform passes them through unchanged
PASSIVE_TARGETS = ("captions",)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
GRAY_WEIGHTS: tuple[float, float, float] = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision uses

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TRANSFORMS",
    "BatchTransform",
    "DenseTransform",
    "EvalTransform",
    "SSLTransform",
    "TrainTransform",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "blur_kernel_size",
    "build_transform",
    "gaussian_blur",
    "hflip",
    "reference_transform",
    "resized_crop",
    "rgb_to_grayscale",
    "sample_crop_boxes",
    "step_generator",
]


# ----------------------------------------------------------------------------------------------------------------
# Randomness helpers
# ----------------------------------------------------------------------------------------------------------------
def step_generator(seed: int, step: int, device: torch.device | str = "cpu", stream: int = 0) -> torch.Generator:
    """A generator seeded by a hash of ``(seed, step)``, so a resumed run redraws exactly the same augmentations.

    Keep the default CPU device unless you want draws made on the GPU: CPU draws are identical for CPU and CUDA images.
    ``stream`` separates independent draws of one step (the ranks of a distributed run; 0 = a single process).
    """
    key = f"thresher/augment/{int(seed)}/{int(step)}" + (f"/{int(stream)}" if stream else "")
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    gen = torch.Generator(device=device)
    gen.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
    return gen


def _wide(device: torch.device) -> torch.dtype:
    """float64 for parameter arithmetic, except on MPS (no float64 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _rand(gen: torch.Generator, *shape: int) -> Tensor:
    """Uniforms on [0, 1) drawn on the generator's device (float64 where available)."""
    return torch.rand(shape, generator=gen, device=gen.device, dtype=_wide(gen.device))


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * _rand(gen, n)


def _per_image(v: Tensor, x: Tensor) -> Tensor:
    """A per-image value ``(B,)`` as a ``(B, 1, 1, 1)`` tensor on ``x``'s device and dtype (no-op copy when there)."""
    return v.to(device=x.device, dtype=x.dtype, non_blocking=True).view(-1, 1, 1, 1)


def _bmask(mask: Tensor, x: Tensor) -> Tensor:
    return mask.to(device=x.device, non_blocking=True).view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------------------------
# Batched geometric ops
# ----------------------------------------------------------------------------------------------------------------
def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> Tensor:
    """``(B, 4)`` int64 boxes ``[top, left, height, width]``: torchvision's ``RandomResizedCrop`` sampler, vectorised.

    Ten attempts per image of area ~ U(scale) * H * W and log aspect ~ U(log ratio), sizes rounded half-to-even like
    Python's ``round``; the first attempt that fits wins and its corner is uniform over valid integer positions.
    Images with no fitting attempt fall back to the centre crop of the whole image clamped to the ratio range.
    """
    area = float(height * width)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    target = area * (scale[0] + (scale[1] - scale[0]) * _rand(generator, batch, 10))
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(generator, batch, 10))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 if none)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    u = _rand(generator, batch, 2)
    top = torch.floor(u[:, 0] * (height - h + 1)).clamp_(max=height - h)
    left = torch.floor(u[:, 1] * (width - w + 1)).clamp_(max=width - w)

    # Fallback (same constants for every image): the whole image, clamped to the ratio range, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=w.dtype, device=w.device)
    boxes = torch.stack([top, left, h, w], dim=1)
    boxes = torch.where(fits.any(dim=1, keepdim=True), boxes, fallback)
    return boxes.to(torch.int64)


def _aa_matrix(start: Tensor, length: Tensor, out_size: int, in_size: int) -> Tensor:
    """Per-image resampling matrices ``(B, out_size, in_size)`` of PyTorch's antialiased bilinear resize of a crop.

    Replicates ``interpolate(mode="bilinear", antialias=True, align_corners=False)`` applied to the crop
    ``[start, start + length)`` of one axis: a tent of half-width max(scale, 1) centred at scale * (i + 0.5),
    evaluated at the pixel centres inside the crop only and renormalised (so crop borders clamp, like a real crop).
    """
    # Taps per output pixel: the tent spans at most 2 * max(scale, 1) pixels (+1 for float slack; weight 0).
    taps = math.ceil(2.0 * max(in_size / out_size, 1.0)) + 1
    dtype = _wide(start.device)
    scale = length.to(dtype) / out_size  # (B,)
    support = scale.clamp(min=1.0)[:, None]
    pos = torch.arange(out_size, dtype=dtype, device=start.device) + 0.5
    center = scale[:, None] * pos  # (B, out)
    lo = torch.trunc(center - support + 0.5).clamp_(min=0)
    hi = torch.minimum(torch.trunc(center + support + 0.5), length[:, None].to(dtype))
    j = lo[..., None] + torch.arange(taps, dtype=dtype, device=start.device)  # (B, out, taps)
    weight = (1.0 - ((j - center[..., None] + 0.5) / support[..., None]).abs()).clamp_(min=0)
    weight = weight * (j < hi[..., None])
    weight = weight / weight.sum(dim=-1, keepdim=True).clamp_(min=1e-12)
    index = start[:, None, None] + torch.minimum(j.to(torch.int64), (length - 1)[:, None, None])
    matrix = torch.zeros(start.shape[0], out_size, in_size, dtype=dtype, device=start.device)
    return matrix.scatter_add_(2, index, weight)


def resized_crop(x: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop every box ``[top, left, height, width]`` of a float batch and resize it to ``size x size``, in one pass.

    Matches ``torchvision.transforms.v2.functional.resized_crop(..., antialias=True)`` (bilinear) to float rounding
    (max abs error ~3e-7 on [0, 1] images; more if TF32 matmuls are enabled on CUDA), upsampling or downsampling:
    the antialias filter is separable, so the op is ``Wy @ img @ Wx^T`` with per-image matrices (one batched matmul).
    We prefer this to ``torchvision.ops.roi_align(aligned=True)``, which samples outside the crop near its borders
    and averages a box of bilinear samples instead of the tent filter: on a smooth 32 px image its mean abs error
    against torchvision is 3e-4..1e-3 and its max ~2e-2 (at crop borders). roi_align is ~2x faster on CPU at 224 px
    (the matmul costs 2 * 3 * R * S^2 multiply-adds per image); on CUDA both are negligible next to a training step.
    """
    height, width = x.shape[-2:]
    boxes = boxes.to(device=x.device, dtype=torch.int64, non_blocking=True)
    wy = _aa_matrix(boxes[:, 0], boxes[:, 2], size, height).to(x.dtype)
    wx = _aa_matrix(boxes[:, 1], boxes[:, 3], size, width).to(x.dtype)
    return wy.unsqueeze(1) @ x @ wx.transpose(1, 2).unsqueeze(1)


def hflip(x: Tensor, mask: Tensor) -> Tensor:
    """Mirror the images where the boolean ``mask`` (B,) is set."""
    return torch.where(_bmask(mask, x), x.flip(-1), x)


def _resize_shorter(x: Tensor, shorter: int) -> Tensor:
    """Resize a float batch so its shorter side is ``shorter`` (torchvision's size rule, antialiased bilinear)."""
    height, width = x.shape[-2:]
    short, long = min(height, width), max(height, width)
    new_short, new_long = shorter, int(shorter * long / short)
    new_h, new_w = (new_long, new_short) if width <= height else (new_short, new_long)
    if (new_h, new_w) == (height, width):
        return x
    return F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)


def _center_crop(x: Tensor, size: int) -> Tensor:
    height, width = x.shape[-2:]
    if size > height or size > width:
        raise ValueError(f"centre crop {size} is larger than the resized image {height}x{width}")
    top, left = round((height - size) / 2.0), round((width - size) / 2.0)
    return x[..., top : top + size, left : left + size]


# ----------------------------------------------------------------------------------------------------------------
# Batched photometric ops on float [0, 1] images, per-image factors (B,), same arithmetic as torchvision's kernels
# ----------------------------------------------------------------------------------------------------------------
def rgb_to_grayscale(x: Tensor) -> Tensor:
    """Luma ``(B, 1, H, W)`` of an RGB batch with torchvision's weights."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(-3)


def _blend(x: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    return (x * ratio + other * (1.0 - ratio)).clamp_(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(x * f)`` per image."""
    return (x * _per_image(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with the mean of its grayscale version."""
    mean = rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(x, mean, _per_image(factor, x))


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its grayscale version."""
    return _blend(x, rgb_to_grayscale(x), _per_image(factor, x))


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Rotate the hue of each image by ``factor`` in [-0.5, 0.5] turns (torchvision's RGB -> HSV -> RGB round trip).

    A hue rotation keeps each pixel's max and min channel, so the HSV -> RGB step is written directly in terms of
    them (channel = max - (max - min) * clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6, n = 5, 3, 1 for R, G, B):
    the same function as torchvision's sector table, with fewer ops; agrees to ~1e-6.
    """
    r, g, b = x.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)  # elementwise: much faster than a reduction over dim -3
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))  # grey pixels: any hue works, avoid 0/0
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    num = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    offset = torch.where(is_r, 0.0, torch.where(is_g, 2.0, 4.0))
    # hue in sixths of a turn, rotated by the factor
    hue6 = (num / safe).add_(offset).add_(_per_image(factor, x).squeeze(1), alpha=6.0)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(hue6 + n, 6.0)
        channels.append(maxc - delta * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0))
    return torch.stack(channels, dim=-3)


def blur_kernel_size(resolution: int) -> int:
    """The odd integer nearest 10% of the resolution, at least 3 (SimCLR / MoCo-v2: 23 at 224)."""
    return max(3, 2 * math.floor((0.1 * resolution - 1.0) / 2.0 + 0.5) + 1)


def gaussian_blur(x: Tensor, kernel_size: int, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-image sigma (B,), reflect padding, torchvision's discrete kernel."""
    b, c, height, width = x.shape
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    t = torch.linspace(-lim, lim, steps=kernel_size, dtype=x.dtype, device=x.device)
    sig = sigma.to(device=x.device, dtype=x.dtype, non_blocking=True).view(-1, 1)
    kernel = torch.softmax(-((t / sig) ** 2), dim=1).repeat_interleave(c, dim=0)  # (B*C, k)
    pad = kernel_size // 2
    out = F.pad(x.reshape(1, b * c, height, width), (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, kernel.view(b * c, 1, kernel_size, 1), groups=b * c)
    out = F.conv2d(out, kernel.view(b * c, 1, 1, kernel_size), groups=b * c)
    return out.view(b, c, height, width)


# ----------------------------------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------------------------------
TRANSFORMS: Registry[BatchTransform] = Registry("transform")


@dataclass(frozen=True)
class BatchTransform:
    """Settings of one pipeline; calling it runs the batched path, ``reference()`` builds the torchvision one."""

    resolution: int
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if int(self.resolution) != self.resolution or self.resolution < 1:
            raise ThresherError(f"transform resolution must be a positive integer, got {self.resolution!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ThresherError(f"mean/std need 3 values and std > 0, got mean={self.mean} std={self.std}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Transform a uint8 batch ``(B, 3, H, W)``; random pipelines draw from ``generator`` (default: torch's)."""
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a uint8 batch (B, 3, H, W), got {tuple(x.shape)} {x.dtype}")
        gen = torch.default_generator if generator is None else generator
        return self.apply(x.float().mul_(1.0 / 255.0), gen)

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor | tuple[Tensor, Tensor]:
        """The pipeline on a float batch in [0, 1]."""
        raise NotImplementedError

    def with_targets(self, x: Tensor, generator: torch.Generator, targets: dict[str, list]) -> tuple[Tensor, dict]:
        """Transform a batch and its targets (``ImageDataset.batch_targets``) together: targets that do not move
        with the pixels (captions) pass through any transform; boxes and masks only through one that moves them
        (``dense``)."""
        if set(targets) <= set(PASSIVE_TARGETS):
            return self(x, generator), targets
        raise ThresherError(
            f"the {type(self).__name__} transform does not move boxes or masks with the image; a batch with dense "
            "targets trains with the dense transform (transform: dense)"
        )

    def normalize(self, x: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x.sub(mean).div_(std).contiguous()

    def reference(self) -> Callable[[Tensor], Any]:
        """The per-sample torchvision v2 pipeline with the same settings (one uint8 CHW tensor in)."""
        raise NotImplementedError

    def _reference_tail(self) -> list[Any]:
        from torchvision.transforms import v2

        return [v2.Normalize(mean=list(self.mean), std=list(self.std))]

    @staticmethod
    def _reference_head() -> list[Any]:
        from torchvision.transforms import v2

        return [v2.ToDtype(torch.float32, scale=True)]


@TRANSFORMS.register("eval")
@dataclass(frozen=True)
class EvalTransform(BatchTransform):
    """Deterministic: resize the shorter side to ``R / crop_fraction``, centre-crop ``R``, normalise."""

    crop_fraction: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ThresherError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")

    @property
    def resize_to(self) -> int:
        return math.floor(self.resolution / self.crop_fraction + 1e-6)

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return self.normalize(_center_crop(_resize_shorter(x, self.resize_to), self.resolution))

    def reference(self) -> Callable[[Tensor], Tensor]:
        from torchvision.transforms import v2

        steps = [v2.Resize(self.resize_to, antialias=True), v2.CenterCrop(self.resolution)]
        return v2.Compose(self._reference_head() + steps + self._reference_tail())


@TRANSFORMS.register("train")
@dataclass(frozen=True)
class TrainTransform(BatchTransform):
    """Supervised augmentation: RandomResizedCrop + horizontal flip (the standard ImageNet recipe)."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_range("scale", self.scale, 0.0, 1.0)
        _check_range("ratio", self.ratio, 0.0, math.inf)
        _check_prob("flip_p", self.flip_p)

    def _crop_flip_params(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        boxes = sample_crop_boxes(x.shape[0], x.shape[-2], x.shape[-1], self.scale, self.ratio, gen)
        return boxes, _rand(gen, x.shape[0]) < self.flip_p

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        boxes, flip = self._crop_flip_params(x, generator)
        return self.normalize(hflip(resized_crop(x, boxes, self.resolution), flip))

    def _reference_crop(self) -> Any:
        from torchvision.transforms import v2

        return v2.RandomResizedCrop(self.resolution, scale=self.scale, ratio=self.ratio, antialias=True)

    def reference(self) -> Callable[[Tensor], Tensor]:
        from torchvision.transforms import v2

        steps = [self._reference_crop(), v2.RandomHorizontalFlip(self.flip_p)]
        return v2.Compose(self._reference_head() + steps + self._reference_tail())


@TRANSFORMS.register("dense")
@dataclass(frozen=True)
class DenseTransform(BatchTransform):
    """Dense fine-tuning's augmentation: a horizontal flip that moves boxes and masks with the image, then normalise.
    No crop, so no object is cut (000 and 001 fine-tune their detectors with flips alone)."""

    flip_p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_prob("flip_p", self.flip_p)

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return self.normalize(hflip(x, _rand(generator, x.shape[0]) < self.flip_p))

    def with_targets(self, x: Tensor, generator: torch.Generator, targets: dict[str, list]) -> tuple[Tensor, dict]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a uint8 batch (B, 3, H, W), got {tuple(x.shape)} {x.dtype}")
        flip = _rand(generator, x.shape[0]) < self.flip_p
        images = self.normalize(hflip(x.float().mul_(1.0 / 255.0), flip))
        width = x.shape[-1]
        out = {k: list(v) for k, v in targets.items()}
        for i in torch.nonzero(flip).flatten().tolist():
            if "boxes" in out:
                b = out["boxes"][i]
                out["boxes"][i] = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], dim=1)
            for key in ("masks", "ignore"):  # per-pixel targets: (n, H, W) and (H, W)
                if key in out:
                    out[key][i] = out[key][i].flip(-1)
        return images, out

    def reference(self) -> Callable[[Tensor], Tensor]:
        from torchvision.transforms import v2

        return v2.Compose(self._reference_head() + [v2.RandomHorizontalFlip(self.flip_p)] + self._reference_tail())


@TRANSFORMS.register("ssl")
@dataclass(frozen=True)
class SSLTransform(TrainTransform):
    """Two independently augmented views, MoCo-v2 recipe (Chen et al. 2020, after SimCLR): crop, colour jitter,
    grayscale, Gaussian blur, flip. ``blur_kernel=0`` means ``blur_kernel_size(resolution)``."""

    scale: tuple[float, float] = (0.2, 1.0)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ThresherError(f"{name} jitter must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ThresherError(f"hue jitter must be in [0, 0.5], got {self.hue}")
        for name in ("jitter_p", "gray_p", "blur_p"):
            _check_prob(name, getattr(self, name))
        _check_range("blur_sigma", self.blur_sigma, 0.0, math.inf)
        if self.blur_kernel < 0 or (self.blur_kernel and self.blur_kernel % 2 == 0):
            raise ThresherError(f"blur_kernel must be odd (or 0 for automatic), got {self.blur_kernel}")

    @property
    def kernel_size(self) -> int:
        return self.blur_kernel or blur_kernel_size(self.resolution)

    def _factor_range(self, x: float) -> tuple[float, float]:
        return max(0.0, 1.0 - x), 1.0 + x

    def apply(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        views = self.augment(torch.cat([x, x]), generator)  # rows [0, B) are view 1, [B, 2B) view 2
        return views.chunk(2, dim=0)  # type: ignore[return-value]

    def augment(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """One augmented view per row of a float batch (every row draws its own parameters)."""
        n = x.shape[0]
        # Draw every parameter first, in a fixed order with fixed shapes (determinism given the generator).
        boxes, flip = self._crop_flip_params(x, gen)
        jitter_on = _rand(gen, n) < self.jitter_p
        factors = torch.stack(
            [
                _uniform(gen, n, *self._factor_range(self.brightness)),
                _uniform(gen, n, *self._factor_range(self.contrast)),
                _uniform(gen, n, *self._factor_range(self.saturation)),
                _uniform(gen, n, -self.hue, self.hue),
            ],
            dim=1,
        )
        order = torch.argsort(_rand(gen, n, 4), dim=1)  # a uniform random order of the 4 jitter ops
        gray_on = _rand(gen, n) < self.gray_p
        blur_on = _rand(gen, n) < self.blur_p
        sigma = _uniform(gen, n, *self.blur_sigma)

        y = resized_crop(x, boxes, self.resolution)
        y = self._jitter(y, jitter_on, factors, order)
        y = torch.where(_bmask(gray_on, y), rgb_to_grayscale(y).expand_as(y), y)
        y = torch.where(_bmask(blur_on, y), gaussian_blur(y, self.kernel_size, sigma), y)
        return self.normalize(hflip(y, flip))

    def _jitter(self, y: Tensor, on: Tensor, factors: Tensor, order: Tensor) -> Tensor:
        """ColorJitter in a per-image random order: at each of the 4 positions every image runs its own op.

        Brightness/contrast/saturation with factor 1 are exact identities, so images whose op at this position is
        another one (or whose jitter is off) get factor 1. Hue (not an identity at 0, and the costly op) runs only
        on the images whose hue step is at this position; the index is computed where the parameters live, so a
        CPU generator keeps this free of GPU synchronisation.
        """
        ones = torch.ones_like(factors[:, 0])
        for pos in range(4):
            op = order[:, pos]
            b, c, s = (torch.where(on & (op == k), factors[:, k], ones) for k in range(3))
            y = adjust_saturation(adjust_contrast(adjust_brightness(y, b), c), s)
            if self.hue > 0:
                idx = torch.nonzero(on & (op == 3)).squeeze(1)
                if idx.numel():
                    rows = idx.to(y.device, non_blocking=True)
                    y = y.index_copy(0, rows, adjust_hue(y[rows], factors[idx, 3]))
        return y

    def reference(self) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        from torchvision.transforms import v2

        steps = [
            self._reference_crop(),
            v2.RandomApply(
                [v2.ColorJitter(self.brightness, self.contrast, self.saturation, self.hue)], p=self.jitter_p
            ),
            v2.RandomGrayscale(self.gray_p),
            v2.RandomApply([v2.GaussianBlur(self.kernel_size, sigma=self.blur_sigma)], p=self.blur_p),
            v2.RandomHorizontalFlip(self.flip_p),
        ]
        return _TwoViews(v2.Compose(self._reference_head() + steps + self._reference_tail()))


@TRANSFORMS.register("domain")
@dataclass(frozen=True)
class DomainTransform(SSLTransform):
    """One strongly augmented view for a source-vs-target classifier (000's domain classifier).

    Low-level cues (compression, colour statistics, sharpness) would let the classifier separate the domains
    without looking at content: every image is first JPEG re-encoded at a random quality, then gets the MoCo-v2
    colour/blur recipe, so those cues are randomised on both sides alike. Crops keep at least 35% of the image.
    """

    scale: tuple[float, float] = (0.35, 1.0)
    jpeg_quality: tuple[int, int] = (30, 95)
    jpeg_levels: int = 8  # qualities are drawn from this many levels, so images are encoded in a few batched calls

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a uint8 batch (B, 3, H, W), got {tuple(x.shape)} {x.dtype}")
        gen = torch.default_generator if generator is None else generator
        x = self.reencode(x, gen)
        return self.augment(x.float().mul_(1.0 / 255.0), gen)

    def reencode(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """JPEG round trip of every image at a quality drawn per image (CPU codec; the batch comes back as it went)."""
        from torchvision.io import decode_jpeg, encode_jpeg

        lo, hi = self.jpeg_quality
        levels = torch.linspace(lo, hi, self.jpeg_levels).round().int().tolist()
        pick = (_rand(gen, x.shape[0]) * self.jpeg_levels).long().clamp_(max=self.jpeg_levels - 1).cpu()
        out = x.cpu().clone()
        for level in pick.unique().tolist():
            rows = (pick == level).nonzero().flatten().tolist()
            enc = encode_jpeg([out[r] for r in rows], quality=levels[level])
            for r, img in zip(rows, decode_jpeg(enc), strict=True):
                out[r] = img
        return out.to(x.device)

    def reference(self) -> Callable[[Tensor], Tensor]:
        from torchvision.transforms import v2

        two_views = super().reference()
        jpeg = v2.JPEG(self.jpeg_quality)
        return lambda img: two_views.pipeline(jpeg(img))


class _TwoViews:
    """Apply one random pipeline twice to the same image (independent draws)."""

    def __init__(self, pipeline: Callable[[Tensor], Tensor]):
        self.pipeline = pipeline

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor]:
        return self.pipeline(image), self.pipeline(image)

    def __repr__(self) -> str:
        return f"TwoViews({self.pipeline!r})"


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ThresherError(f"{name} must be a probability in [0, 1], got {p}")


def _check_range(name: str, r: Sequence[float], lo: float, hi: float) -> None:
    if len(r) != 2 or not lo < r[0] <= r[1] <= hi:
        raise ThresherError(f"{name} must be (low, high) with {lo} < low <= high <= {hi}, got {r}")


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------
def _settings(
    kind: str, resolution: int, mean: Sequence[float], std: Sequence[float], **overrides: Any
) -> BatchTransform:
    cls = TRANSFORMS.get(kind)  # ThresherError for an unknown kind
    known = {f.name for f in fields(cls)} - {"resolution", "mean", "std"}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ThresherError(
            f"transform {kind!r} has no setting {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    for key in ("scale", "ratio", "blur_sigma"):  # lists from a config file -> hashable tuples
        if key in overrides:
            overrides[key] = tuple(float(v) for v in overrides[key])
    return TRANSFORMS.create(kind, resolution=resolution, mean=tuple(mean), std=tuple(std), **overrides)


def build_transform(
    kind: str,
    resolution: int,
    *,
    backend: str = "batched",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    **overrides: Any,
) -> BatchTransform | Callable[[Tensor], Any]:
    """The ``kind`` pipeline (``eval``, ``train``, ``ssl``) at ``resolution``: batched (default) or reference."""
    settings = _settings(kind, resolution, mean, std, **overrides)
    if backend == "batched":
        return settings
    if backend == "reference":
        return settings.reference()
    raise ThresherError(f"unknown transform backend {backend!r} (known: batched, reference)")


def reference_transform(
    kind: str,
    resolution: int,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    **overrides: Any,
) -> Callable[[Tensor], Any]:
    """Per-sample torchvision v2 pipeline for one uint8 CHW tensor (``ssl`` returns a pair of views)."""
    return _settings(kind, resolution, mean, std, **overrides).reference()
