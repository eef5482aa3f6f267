"""Batched transforms vs the torchvision v2 reference: exact per-op agreement, same distributions end to end."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torchvision.transforms import RandomResizedCrop as V1RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from thresher.data import transforms as T
from thresher.errors import ThresherError

P_MIN = 1e-3  # KS p-value threshold for "same distribution"
PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # outputs stay in [0, 1]: channels comparable


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny; on a busy 2-core machine intra-op thread hand-offs make them 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rand_images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Float images in [0, 1] with exact edge cases: saturated values and grey pixels (r == g == b)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g)
    x[:, :, 0, :3] = torch.tensor([0.0, 1.0, 0.5])[:, None]  # extremes
    x[:, :, 1, :] = x[:, :1, 1, :]  # a grey row
    return x


def _per_sample(fn, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(x[i], float(values[i])) for i in range(len(x))])


# ---------------------------------------------------------------------------------------------------------------
# Per-op equality with torchvision's functional kernels (fixed parameters)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ours, theirs, factors, tol",
    [
        (T.adjust_brightness, TF.adjust_brightness, [0.0, 0.6, 1.0, 1.4, 2.5], 1e-6),
        (T.adjust_contrast, TF.adjust_contrast, [0.0, 0.6, 1.0, 1.4, 2.5], 1e-5),
        (T.adjust_saturation, TF.adjust_saturation, [0.0, 0.6, 1.0, 1.4, 2.5], 1e-5),
        (T.adjust_hue, TF.adjust_hue, [-0.5, -0.1, 0.0, 0.07, 0.5], 1e-4),
    ],
    ids=["brightness", "contrast", "saturation", "hue"],
)
def test_color_ops_match_torchvision(ours, theirs, factors, tol):
    x = _rand_images(5, 9, 11)
    f = torch.tensor(factors)
    torch.testing.assert_close(ours(x, f), _per_sample(theirs, x, f), atol=tol, rtol=0)


def test_grayscale_and_flip_match_torchvision():
    x = _rand_images(4, 7, 10)
    gray = T.rgb_to_grayscale(x).expand_as(x)
    torch.testing.assert_close(gray, torch.stack([TF.rgb_to_grayscale(im, 3) for im in x]), atol=1e-6, rtol=0)
    mask = torch.tensor([True, False, True, False])
    expected = torch.stack([TF.horizontal_flip(im) if m else im for im, m in zip(x, mask, strict=True)])
    assert torch.equal(T.hflip(x, mask), expected)


@pytest.mark.parametrize("kernel", [3, 5, 23])
def test_blur_matches_torchvision(kernel):
    x = _rand_images(4, 24, 26)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    expected = torch.stack([TF.gaussian_blur(x[i], [kernel, kernel], [float(sigma[i])] * 2) for i in range(4)])
    torch.testing.assert_close(T.gaussian_blur(x, kernel, sigma), expected, atol=1e-5, rtol=0)


def test_blur_kernel_size_is_nearest_odd_tenth():
    assert [T.blur_kernel_size(r) for r in (16, 32, 64, 96, 224, 256)] == [3, 3, 7, 9, 23, 25]


@pytest.mark.parametrize("height, width, size", [(24, 24, 16), (24, 24, 40), (20, 28, 12), (16, 16, 16)])
def test_resized_crop_matches_torchvision(height, width, size):
    """Exact (float rounding) agreement with resized_crop(antialias=True), upsampling and downsampling."""
    x = _rand_images(64, height, width, seed=1)
    boxes = T.sample_crop_boxes(64, height, width, (0.05, 1.0), (0.5, 2.0), torch.Generator().manual_seed(2))
    boxes[0] = torch.tensor([0, 0, height, width])  # whole image
    expected = torch.stack(
        [
            TF.resized_crop(im, *[int(v) for v in box], size=[size, size], antialias=True)
            for im, box in zip(x, boxes, strict=True)
        ]
    )
    torch.testing.assert_close(T.resized_crop(x, boxes, size), expected, atol=1e-5, rtol=0)


def test_roi_align_would_be_less_accurate():
    """Backs the resized_crop docstring: roi_align(aligned=True) is only close to torchvision; ours is exact."""
    from torchvision.ops import roi_align

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    smooth = torch.stack([torch.sin(3 * xx + 1) * 0.5 + 0.5, torch.cos(2 * yy) * 0.5 + 0.5, xx * yy])
    x = smooth.expand(128, 3, 32, 32).contiguous()
    boxes = T.sample_crop_boxes(128, 32, 32, (0.08, 1.0), (0.75, 4 / 3), torch.Generator().manual_seed(3))
    expected = torch.stack([TF.resized_crop(smooth, *[int(v) for v in b], size=[32, 32]) for b in boxes])
    xyxy = torch.cat([boxes[:, [1, 0]], boxes[:, [1, 0]] + boxes[:, [3, 2]]], dim=1).float()
    rois = torch.cat([torch.arange(128.0)[:, None], xyxy], dim=1)
    roi = roi_align(x, rois, output_size=32, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    assert (roi - expected).abs().mean() < 2e-3
    assert (T.resized_crop(x, boxes, 32) - expected).abs().max() < 1e-5


def test_jitter_runs_each_images_own_order():
    """All 24 orders at once: image i must equal torchvision's ops applied in order[i] with its factors."""
    perms = torch.tensor(list(itertools.permutations(range(4))))
    n = len(perms)
    x = _rand_images(n, 6, 7, seed=4)
    g = torch.Generator().manual_seed(5)
    factors = torch.stack(
        [0.6 + 0.8 * torch.rand(n, generator=g) for _ in range(3)] + [torch.rand(n, generator=g) * 0.2 - 0.1],
        1,
    )
    on = torch.arange(n) % 5 != 0  # a few images with jitter off
    ssl = T.SSLTransform(8)
    out = ssl._jitter(x, on, factors.double(), perms)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(n):
        expected = x[i]
        if on[i]:
            for k in perms[i].tolist():
                expected = ops[k](expected, float(factors[i, k]))
        torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Crop parameter distribution vs torchvision's RandomResizedCrop.get_params
# ---------------------------------------------------------------------------------------------------------------
def _box_stats(boxes: torch.Tensor) -> dict[str, np.ndarray]:
    top, left, h, w = boxes.double().unbind(1)
    return {
        "area": (h * w).numpy(),
        "log_aspect": torch.log(w / h).numpy(),
        "centre_y": (top + h / 2).numpy(),
        "centre_x": (left + w / 2).numpy(),
    }


def _reference_boxes(n: int, height: int, width: int, scale, ratio, seed: int) -> torch.Tensor:
    img = torch.zeros(1, height, width)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.tensor([V1RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)])


@pytest.mark.parametrize("height, width, scale", [(16, 16, (0.08, 1.0)), (12, 40, (0.3, 1.0))])
def test_crop_sampler_matches_torchvision_distribution(height, width, scale):
    ratio = (3 / 4, 4 / 3)
    n = 4000
    ours = T.sample_crop_boxes(n, height, width, scale, ratio, torch.Generator().manual_seed(6))
    ref = _reference_boxes(n, height, width, scale, ratio, seed=7)
    a, b = _box_stats(ours), _box_stats(ref)
    for key in a:
        assert ks_2samp(a[key], b[key]).pvalue > P_MIN, key
    # boxes always inside the image
    assert (ours[:, 0] >= 0).all() and (ours[:, 0] + ours[:, 2] <= height).all()
    assert (ours[:, 1] >= 0).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    if height != width:  # the centred fallback box appears equally often
        fb = torch.tensor([0, (width - round(height * 4 / 3)) // 2, height, round(height * 4 / 3)])
        p_ours = (ours == fb).all(1).double().mean().item()
        p_ref = (ref == fb).all(1).double().mean().item()
        assert 0.02 < p_ref and abs(p_ours - p_ref) < 5 * math.sqrt(2 * p_ref * (1 - p_ref) / n)


def test_crop_sampler_ks_has_power():
    """Negative control: a different scale range must be rejected at these sample sizes."""
    ours = T.sample_crop_boxes(4000, 16, 16, (0.2, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(6))
    ref = _reference_boxes(4000, 16, 16, (0.08, 1.0), (3 / 4, 4 / 3), seed=7)
    assert ks_2samp(_box_stats(ours)["area"], _box_stats(ref)["area"]).pvalue < P_MIN


# ---------------------------------------------------------------------------------------------------------------
# End to end: per-image statistics of batched vs reference pipelines
# ---------------------------------------------------------------------------------------------------------------
RES = 16


def _probe_image() -> torch.Tensor:
    """16 px uint8 image: brighter to the right in every channel (flip is visible), orange (grey and hue shifts are
    visible), a faint checkerboard (blur is visible), values within [0.2, 0.6] so jitter rarely clamps."""
    ramp = torch.linspace(0.3, 0.5, RES).expand(RES, RES)
    bump = 0.02 * torch.sin(torch.linspace(0, 3, RES))[:, None]
    checker = 0.03 * (1 - 2 * ((torch.arange(RES)[:, None] + torch.arange(RES)) % 2))
    img = torch.stack([ramp + 0.05 + bump, ramp, ramp - 0.05 - bump]) + checker
    return (img * 255).round().to(torch.uint8)


KS_STATS = ("mean", "std", "colour_spread", "green_minus_blue", "roughness")


def _stats(views: torch.Tensor) -> dict[str, np.ndarray]:
    half = views.shape[-1] // 2
    spread = views.amax(dim=1) - views.amin(dim=1)
    return {
        "mean": views.mean(dim=(1, 2, 3)).numpy(),
        "std": views.std(dim=(1, 2, 3)).numpy(),
        "colour_spread": spread.mean(dim=(1, 2)).numpy(),
        "green_minus_blue": (views[:, 1] - views[:, 2]).mean(dim=(1, 2)).numpy(),  # moves with hue
        "roughness": (
            views.diff(dim=-1).abs().mean(dim=(1, 2, 3)) + views.diff(dim=-2).abs().mean(dim=(1, 2, 3))
        ).numpy(),
        "gray": (spread.amax(dim=(1, 2)) < 1e-6).numpy(),
        "flipped": (views[..., :half].mean(dim=(1, 2, 3)) > views[..., half:].mean(dim=(1, 2, 3))).numpy(),
    }


@pytest.fixture(scope="module")
def reference_samples() -> dict[str, dict[str, np.ndarray]]:
    img = _probe_image()
    with torch.random.fork_rng():
        torch.manual_seed(8)
        ssl = T.reference_transform("ssl", RES, **PLAIN)
        ssl_views = torch.stack([v for _ in range(1200) for v in ssl(img)])
        train = T.reference_transform("train", RES, **PLAIN)
        train_views = torch.stack([train(img) for _ in range(2000)])
    return {"ssl": _stats(ssl_views), "train": _stats(train_views)}


def _batched_stats(kind: str, n: int, seed: int, **overrides) -> dict[str, np.ndarray]:
    x = _probe_image().expand(n, 3, RES, RES).contiguous()
    out = T.build_transform(kind, RES, **PLAIN, **overrides)(x, torch.Generator().manual_seed(seed))
    return _stats(torch.cat(out) if isinstance(out, tuple) else out)


def _same_proportion(a: np.ndarray, b: np.ndarray) -> bool:
    p = (a.sum() + b.sum()) / (len(a) + len(b))
    se = math.sqrt(p * (1 - p) * (1 / len(a) + 1 / len(b)))
    return abs(a.mean() - b.mean()) <= 4.5 * se


@pytest.mark.parametrize("kind, gray_p", [("ssl", 0.2), ("train", 0.0)])
def test_batched_pipeline_matches_reference_distribution(reference_samples, kind, gray_p):
    ref = reference_samples[kind]
    ours = _batched_stats(kind, 2000, seed=9)
    for key in KS_STATS:
        assert ks_2samp(ours[key], ref[key]).pvalue > P_MIN, key
    for key in ("gray", "flipped"):
        assert _same_proportion(ours[key], ref[key]), (key, ours[key].mean(), ref[key].mean())
    assert abs(ours["flipped"].mean() - 0.5) < 0.05
    assert abs(ours["gray"].mean() - gray_p) < 0.04


@pytest.mark.parametrize(
    "mutation",
    [
        {"brightness": 0.2},
        {"contrast": 0.2},
        {"saturation": 0.0},
        {"hue": 0.0},
        {"jitter_p": 0.6},
        {"gray_p": 0.15},
        {"blur_p": 0.0},
        {"blur_sigma": (0.1, 1.0)},
        {"flip_p": 0.4},
        {"scale": (0.3, 1.0)},
    ],
    ids=lambda m: next(iter(m)),
)
def test_end_to_end_comparison_has_power(reference_samples, mutation):
    """Negative controls: with any one setting wrong, at least one of the comparisons above must fail."""
    ours = _batched_stats("ssl", 2000, seed=9, **mutation)
    ref = reference_samples["ssl"]
    rejected = [k for k in KS_STATS if ks_2samp(ours[k], ref[k]).pvalue <= P_MIN]
    rejected += [k for k in ("gray", "flipped") if not _same_proportion(ours[k], ref[k])]
    assert rejected, mutation


# ---------------------------------------------------------------------------------------------------------------
# Independence and determinism
# ---------------------------------------------------------------------------------------------------------------
def test_every_image_and_view_draws_its_own_parameters():
    x = _probe_image().expand(8, 3, RES, RES).contiguous()
    v1, v2 = T.build_transform("ssl", RES)(x, torch.Generator().manual_seed(0))
    rows = torch.cat([v1, v2]).flatten(1)
    assert torch.cdist(rows, rows).add(torch.eye(16) * 1e9).min() > 1e-3  # all 16 outputs pairwise different
    t = T.build_transform("train", RES)(x, torch.Generator().manual_seed(0)).flatten(1)
    assert torch.cdist(t, t).add(torch.eye(8) * 1e9).min() > 1e-3


@pytest.mark.parametrize("kind", ["ssl", "train"])
def test_same_seed_reproduces_and_other_seed_differs(kind):
    x = torch.randint(0, 256, (6, 3, 20, 20), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    tf = T.build_transform(kind, RES)
    a = tf(x, T.step_generator(7, 100))
    b = tf(x, T.step_generator(7, 100))
    c = tf(x, T.step_generator(7, 101))
    d = tf(x, T.step_generator(8, 100))
    a, b, c, d = (torch.cat(o) if isinstance(o, tuple) else o for o in (a, b, c, d))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c) and not torch.allclose(a, d)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_gives_same_augmentations_on_cuda():
    x = torch.randint(0, 256, (4, 3, 20, 20), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    tf = T.build_transform("ssl", RES)
    cpu = torch.cat(tf(x, T.step_generator(0, 0)))
    gpu = torch.cat(tf(x.cuda(), T.step_generator(0, 0))).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-3, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Eval path, layouts, shapes, normalisation, API
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "size, resolution, crop_fraction", [(16, 16, 1.0), (24, 16, 1.0), (24, 16, 0.875), (12, 16, 1.0)]
)
def test_eval_is_deterministic_and_matches_reference(size, resolution, crop_fraction):
    x = torch.randint(0, 256, (3, 3, size, size), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    ours = T.build_transform("eval", resolution, crop_fraction=crop_fraction)
    ref = T.reference_transform("eval", resolution, crop_fraction=crop_fraction)
    out = ours(x)
    assert torch.equal(out, ours(x, torch.Generator().manual_seed(5)))
    torch.testing.assert_close(out, torch.stack([ref(im) for im in x]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["eval", "train", "ssl"])
@pytest.mark.parametrize("batch", [1, 5])
def test_channels_last_batch_size_and_output_format(kind, batch):
    x = torch.randint(0, 256, (batch, 3, 20, 20), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    tf = T.build_transform(kind, RES)
    a = tf(x, torch.Generator().manual_seed(4))
    b = tf(x.to(memory_format=torch.channels_last), torch.Generator().manual_seed(4))
    outs_a = a if isinstance(a, tuple) else (a,)
    outs_b = b if isinstance(b, tuple) else (b,)
    assert len(outs_a) == (2 if kind == "ssl" else 1)
    for oa, ob in zip(outs_a, outs_b, strict=True):
        assert oa.shape == (batch, 3, RES, RES) and oa.dtype == torch.float32 and oa.is_contiguous()
        torch.testing.assert_close(oa, ob, atol=1e-6, rtol=0)


def test_normalisation_uses_mean_and_std():
    x = torch.full((2, 3, RES, RES), 200, dtype=torch.uint8)
    out = T.build_transform("eval", RES)(x)
    expected = (200 / 255 - torch.tensor(T.IMAGENET_MEAN)) / torch.tensor(T.IMAGENET_STD)
    torch.testing.assert_close(out[:, :, 3, 5], expected.expand(2, 3), atol=1e-6, rtol=0)
    custom = T.build_transform("eval", RES, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(x)
    torch.testing.assert_close(custom, torch.full_like(custom, (200 / 255 - 0.5) / 0.25), atol=1e-6, rtol=0)


def test_registry_and_errors():
    assert set(T.TRANSFORMS) == {"eval", "train", "ssl", "domain", "dense"}
    assert isinstance(T.build_transform("train", 32, scale=[0.5, 1.0]), T.TrainTransform)
    assert T.build_transform("ssl", 224).kernel_size == 23
    ref = T.build_transform("ssl", RES, backend="reference")
    views = ref(_probe_image())
    assert isinstance(views, tuple) and views[0].shape == (3, RES, RES)
    with pytest.raises(ThresherError, match="unknown transform"):
        T.build_transform("trian", 32)
    with pytest.raises(ThresherError, match="no setting"):
        T.build_transform("eval", 32, scale=(0.5, 1.0))
    with pytest.raises(ThresherError, match="backend"):
        T.build_transform("eval", 32, backend="kornia")
    with pytest.raises(ThresherError):
        T.build_transform("eval", 32, crop_fraction=1.5)
    with pytest.raises(ValueError):
        T.build_transform("eval", 32)(torch.zeros(2, 3, 32, 32))  # float input: not the loader's uint8 contract


def test_domain_transform_reencodes_every_image_at_a_drawn_quality():
    """The domain classifier's recipe: JPEG round trip per image (quality drawn per image), then one strong view."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([(yy * 8) % 256, (xx * 8) % 256, ((yy + xx) * 4) % 256]).astype(np.uint8)
    x = torch.from_numpy(np.repeat(smooth[None], 64, 0) + rng.integers(0, 3, (64, 3, 32, 32)).astype(np.uint8))
    t = T.build_transform("domain", 32)
    hi = T.build_transform("domain", 32, jpeg_quality=(95, 95)).reencode(x, T.step_generator(0, 0))
    lo = T.build_transform("domain", 32, jpeg_quality=(30, 30)).reencode(x, T.step_generator(0, 0))
    err_hi = (hi.float() - x.float()).abs().mean()
    err_lo = (lo.float() - x.float()).abs().mean()
    assert 0 < err_hi < err_lo  # re-encoded, and lower quality costs more
    mixed = t.reencode(x, T.step_generator(0, 1))
    per_image = (mixed.float() - x.float()).abs().mean((1, 2, 3))
    assert len(torch.unique(per_image.round(decimals=2))) > 4  # qualities differ between images
    a, b = t(x, T.step_generator(3, 4)), t(x, T.step_generator(3, 4))
    assert a.shape == (64, 3, 32, 32) and torch.equal(a, b)  # one view, deterministic given the generator
    assert t.reference()(x[0]).shape == (3, 32, 32)
