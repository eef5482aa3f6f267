"""Pre-training objectives (supervised, MoCo, SimCLR, BYOL) against slow, obvious NumPy references.

Every reference below is written with explicit Python loops from the formulas (MoCo eq. 1, METHODS.md "Formulas the
seeds leave out"), never by re-using the torch code it checks. Models are tiny (small-cnn on 16 px images, narrow
heads) so the whole file runs in seconds on CPU.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from thresher.errors import ThresherError
from thresher.models import build_backbone
from thresher.pretrain.objectives.byol import byol_loss
from thresher.pretrain.objectives.heads import info_nce
from thresher.pretrain.objectives.moco import MoCo
from thresher.pretrain.objectives.simclr import nt_xent
from thresher.train.objective import OBJECTIVES, build_objective, objective_params

RTOL = 1e-5
ATOL = 1e-6
RES = 16  # image side of the synthetic batches
SSL = ("moco", "simclr", "byol")


@pytest.fixture(autouse=True, scope="module")
def _few_threads():
    """One thread: these models are tiny (more threads only contend) and CPU use stays modest; restored after."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


# ----------------------------------------------------------------------------------------------------------
# slow NumPy references (float64, explicit loops)


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = x[i] / math.sqrt(sum(v * v for v in x[i]))
    return out


def dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum(float(u) * float(v) for u, v in zip(a, b, strict=True)))


def ref_info_nce(q: np.ndarray, k: np.ndarray, queue: np.ndarray, t: float) -> np.ndarray:
    """Per query: -log(exp(q_i.k_i/t) / (exp(q_i.k_i/t) + sum_j exp(q_i.queue_j/t)))."""
    q, k, queue = (np.asarray(a, np.float64) for a in (q, k, queue))
    out = np.empty(len(q))
    for i in range(len(q)):
        pos = math.exp(dot(q[i], k[i]) / t)
        neg = 0.0
        for j in range(len(queue)):
            neg += math.exp(dot(q[i], queue[j]) / t)
        out[i] = -math.log(pos / (pos + neg))
    return out


def ref_nt_xent_pairs(z1: np.ndarray, z2: np.ndarray, tau: float) -> np.ndarray:
    """l(i, j) for the 2N ordered positive pairs, row i of the 2N stacked embeddings paired with its other view."""
    n = len(z1)
    z = unit_rows(np.concatenate([z1, z2]))
    losses = np.empty(2 * n)
    for i in range(2 * n):
        j = i + n if i < n else i - n
        num = math.exp(dot(z[i], z[j]) / tau)
        den = 0.0
        for k in range(2 * n):
            if k != i:
                den += math.exp(dot(z[i], z[k]) / tau)
        losses[i] = -math.log(num / den)
    return losses


def ref_byol(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per row 2 - 2 cos(p_i, z_i)."""
    out = np.empty(len(p))
    for i in range(len(p)):
        cos = dot(p[i], z[i]) / math.sqrt(dot(p[i], p[i]) * dot(z[i], z[i]))
        out[i] = 2 - 2 * cos
    return out


def val(t: torch.Tensor) -> float:
    return float(t.detach())


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


# ----------------------------------------------------------------------------------------------------------
# tiny models and batches


def tiny_backbone(seed: int = 0) -> nn.Module:
    return build_backbone("small-cnn", None, seed)


def images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, RES, RES, generator=g)


def two_views(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed 'augmentations' of the same images: a horizontal flip, and small additive noise."""
    x = images(n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return x.flip(3), x + 0.1 * torch.randn(x.shape, generator=g)


def build(name: str, params: dict | None = None, *, seed: int = 0, **context) -> nn.Module:
    ctx = {"num_classes": 5, "num_examples": 64, "total_steps": 100, **context}
    torch.manual_seed(seed)
    return build_objective(name, tiny_backbone(seed), params, **ctx)


def ssl_batch(n: int, seed: int) -> dict:
    return {"images": two_views(n, seed), "labels": torch.zeros(n, dtype=torch.long)}


def sup_batch(n: int, seed: int, classes: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed + 7)
    return {"images": images(n, seed), "labels": torch.randint(0, classes, (n,), generator=g)}


def params_of(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@torch.no_grad()
def perturb(module: nn.Module, seed: int, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g))


# ----------------------------------------------------------------------------------------------------------
# 1. InfoNCE


@pytest.mark.parametrize(("n", "d", "size", "t"), [(5, 8, 11, 0.2), (3, 4, 1, 1.0), (7, 16, 32, 0.07)])
def test_info_nce_matches_numpy(n, d, size, t):
    rng = np.random.default_rng(n * 100 + size)
    q, k, queue = (unit_rows(rng.normal(size=(m, d))) for m in (n, n, size))
    got = info_nce(*(torch.tensor(a, dtype=torch.float32) for a in (q, k, queue)), t)
    assert got.shape == (n,)
    np.testing.assert_allclose(np64(got), ref_info_nce(q, k, queue, t), rtol=RTOL, atol=ATOL)


def test_info_nce_known_answer():
    """q = k and every queue entry orthogonal to q: -log(e^{1/t} / (e^{1/t} + K))."""
    t, size = 0.5, 3
    q = torch.eye(4)[:1]
    queue = torch.eye(4)[1 : 1 + size]
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + size))
    np.testing.assert_allclose(np64(info_nce(q, q, queue, t)), [expected], rtol=RTOL)


# ----------------------------------------------------------------------------------------------------------
# 2. NT-Xent


@pytest.mark.parametrize(("n", "d", "tau"), [(4, 6, 0.5), (2, 3, 0.1), (6, 10, 1.0)])
def test_nt_xent_matches_numpy(n, d, tau):
    rng = np.random.default_rng(n * 10 + d)
    # unnormalised inputs with varied scales: nt_xent must normalise them itself
    z1 = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
    z2 = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
    got = nt_xent(torch.tensor(z1, dtype=torch.float32), torch.tensor(z2, dtype=torch.float32), tau)
    pairs = ref_nt_xent_pairs(z1, z2, tau)
    per_image = np.array([0.5 * (pairs[i] + pairs[i + n]) for i in range(n)])
    assert got.shape == (n,)
    np.testing.assert_allclose(np64(got), per_image, rtol=RTOL, atol=ATOL)
    # the loss (mean of per_sample) averages l over all 2N ordered positive pairs (METHODS.md)
    np.testing.assert_allclose(float(got.mean()), sum(pairs) / (2 * n), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("n", "tau"), [(4, 0.5), (3, 0.2)])
def test_nt_xent_known_answer(n, tau):
    """Identical views, every other embedding orthogonal: each l(i, j) = -log(e^{1/t} / (e^{1/t} + 2N - 2))."""
    basis = torch.eye(n + 2)[:n] * torch.arange(1, n + 1).float()[:, None]  # scale must not matter
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (2 * n - 2)))
    got = nt_xent(basis, basis.clone(), tau)
    np.testing.assert_allclose(np64(got), [expected] * n, rtol=RTOL)


# ----------------------------------------------------------------------------------------------------------
# 3. BYOL loss


def test_byol_loss_matches_numpy():
    rng = np.random.default_rng(3)
    p, z = rng.normal(size=(6, 5)), rng.normal(size=(6, 5)) * 4
    got = byol_loss(torch.tensor(p, dtype=torch.float32), torch.tensor(z, dtype=torch.float32))
    np.testing.assert_allclose(np64(got), ref_byol(p, z), rtol=RTOL, atol=ATOL)


def test_byol_loss_extremes_and_no_target_gradient():
    v = torch.tensor([[1.0, 2.0, -3.0], [0.5, 0.0, 4.0]])
    np.testing.assert_allclose(np64(byol_loss(v, 3 * v)), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(np64(byol_loss(v, -2 * v)), [4.0, 4.0], rtol=RTOL)
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    byol_loss(p, z).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert z.grad is None


# ----------------------------------------------------------------------------------------------------------
# 4. BYOL momentum schedule and target update


@pytest.mark.parametrize("base", [0.996, 0.9, 0.0])
def test_byol_momentum_schedule(base):
    total = 40
    model = build("byol", {"base_momentum": base, "hidden": 16, "dim": 8}, total_steps=total)
    for k in [0, 1, 5, 10, 20, 33, 39, 40, 55]:
        model.step.fill_(k)
        kk = min(k, total)
        expected = 1 - (1 - base) * (math.cos(math.pi * kk / total) + 1) / 2
        assert model.momentum() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    model.step.fill_(0)
    assert model.momentum() == pytest.approx(base)
    model.step.fill_(total)
    assert model.momentum() == pytest.approx(1.0)
    model.step.fill_(total // 2)
    assert model.momentum() == pytest.approx((1 + base) / 2)


def test_byol_target_update():
    """Step 0 leaves the target as is; the next training forward applies tau(1) to the online weights."""
    model = build("byol", {"hidden": 16, "dim": 8}, total_steps=10).train()
    assert all(not p.requires_grad for p in model.target_backbone.parameters())
    assert all(not p.requires_grad for p in model.target_projector.parameters())
    batch = ssl_batch(6, 0)
    before = params_of(model.target_backbone) + params_of(model.target_projector)
    model(batch)["loss"].backward()
    assert int(model.step) == 1
    after = params_of(model.target_backbone) + params_of(model.target_projector)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(p.grad is None for p in model.target_backbone.parameters())
    perturb(model.backbone, 1)
    perturb(model.projector, 2)
    tau = model.momentum()
    online = params_of(model.backbone) + params_of(model.projector)
    model(batch)
    assert int(model.step) == 2
    got = params_of(model.target_backbone) + params_of(model.target_projector)
    for old, new, o in zip(after, got, online, strict=True):
        np.testing.assert_allclose(np64(new), tau * np64(old) + (1 - tau) * np64(o), rtol=RTOL, atol=ATOL)


def test_byol_forward_matches_numpy():
    model = build("byol", {"hidden": 16, "dim": 8}).eval()
    batch = ssl_batch(5, 4)
    out = model(batch)
    both = torch.cat(batch["images"])
    with torch.no_grad():
        p1, p2 = model.predictor(model.projector(model.backbone.forward_features(both))).chunk(2)
        z1, z2 = model.target_projector(model.target_backbone.forward_features(both)).chunk(2)
    expected = ref_byol(np64(p1), np64(z2)) + ref_byol(np64(p2), np64(z1))
    np.testing.assert_allclose(np64(out["per_sample_loss"]), expected, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------------------------------------
# 5. MoCo


def moco(num_examples: int = 640, seed: int = 0, **params) -> MoCo:
    params = {"dim": 8, "hidden": 16, "momentum": 0.9, "temperature": 0.2, **params}
    model = build("moco", params, seed=seed, num_examples=num_examples)
    assert isinstance(model, MoCo)
    return model


def test_moco_queue_capped_at_a_tenth_of_the_examples():
    assert moco(num_examples=100, queue_size=65536).queue_size == 10
    assert moco(num_examples=100, queue_size=65536).queue.shape == (10, 8)
    assert moco(num_examples=100, queue_size=7).queue_size == 7
    assert moco(num_examples=1000, queue_size=65536).queue_size == 100  # a tenth of the examples
    model = build("moco", {}, num_examples=1_000_000)
    assert model.queue_size == 65536  # paper default when the dataset is large enough
    norms = model.queue.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_moco_loss_is_info_nce_of_its_encoders_eval():
    model = moco().eval()
    perturb(model.backbone, 5)  # query and key encoders differ
    batch = ssl_batch(6, 1)
    queue, ptr = model.queue.clone(), model.queue_ptr.clone()
    key_before = params_of(model.key_backbone) + params_of(model.key_head)
    out = model(batch)
    with torch.no_grad():
        q = np64(model.encode(batch["images"][0]))
        k = np64(model.keys(batch["images"][1]))
    expected = ref_info_nce(unit_rows(q), unit_rows(k), np64(queue), model.temperature)
    np.testing.assert_allclose(np64(out["per_sample_loss"]), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(val(out["loss"]), expected.mean(), rtol=RTOL, atol=ATOL)
    # eval: nothing enqueued, key encoder frozen in place
    torch.testing.assert_close(model.queue, queue, rtol=0, atol=0)
    assert int(model.queue_ptr) == int(ptr)
    for a, b in zip(key_before, params_of(model.key_backbone) + params_of(model.key_head), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_moco_training_forward_loss_momentum_and_enqueue():
    model = moco(num_examples=640, momentum=0.75).train()
    perturb(model.backbone, 6)
    perturb(model.head, 7)
    m = model.momentum
    old_key = params_of(model.key_backbone) + params_of(model.key_head)
    query = params_of(model.backbone) + params_of(model.head)
    queue, ptr = model.queue.clone(), int(model.queue_ptr)
    batch = ssl_batch(6, 2)
    out = model(batch)
    # momentum update: key <- m * key + (1 - m) * query, and the key encoder takes no gradient
    new_key = list(model.key_backbone.parameters()) + list(model.key_head.parameters())
    for old, new, qp in zip(old_key, new_key, query, strict=True):
        assert not new.requires_grad
        np.testing.assert_allclose(np64(new), m * np64(old) + (1 - m) * np64(qp), rtol=RTOL, atol=ATOL)
    # the loss is InfoNCE of the query encoder's q, the (updated) key encoder's k, and the queue before the forward
    with torch.no_grad():
        q = np64(model.encode(batch["images"][0]))
        k = np64(model.keys(batch["images"][1]))
    expected = ref_info_nce(q, k, np64(queue), model.temperature)
    np.testing.assert_allclose(np64(out["per_sample_loss"]), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(val(out["loss"]), expected.mean(), rtol=RTOL, atol=ATOL)
    # the batch's keys were written at the old pointer
    np.testing.assert_allclose(np64(model.queue[ptr : ptr + 6]), k, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np64(model.queue[ptr + 6 :]), np64(queue[ptr + 6 :]), rtol=0, atol=0)
    assert int(model.queue_ptr) == ptr + 6
    # backward after the in-place enqueue works and reaches the query encoder only
    out["loss"].backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.key_backbone.parameters())
    assert all(p.grad is None for p in model.key_head.parameters())


def test_moco_queue_wraps_around():
    model = moco(num_examples=100, queue_size=65536).train()
    assert model.queue_size == 10
    initial = np64(model.queue)
    expected = initial.copy()
    ptr = 0
    for step in range(4):  # 4 + 4 + 4 + 4 rows into 10: pointer 4, 8, 2, 6
        batch = ssl_batch(4, 10 + step)
        model(batch)
        with torch.no_grad():
            k = np64(model.keys(batch["images"][1]))
        for r in range(4):
            expected[(ptr + r) % 10] = k[r]
        ptr = (ptr + 4) % 10
        assert int(model.queue_ptr) == ptr
        np.testing.assert_allclose(np64(model.queue), expected, rtol=RTOL, atol=ATOL)
    assert int(model.queue_ptr) == 6


def test_moco_batch_larger_than_queue():
    model = moco(num_examples=50).train()
    model.queue_ptr.fill_(3)
    batch = ssl_batch(7, 20)
    model(batch)
    with torch.no_grad():
        k = np64(model.keys(batch["images"][1]))
    expected = np.empty((5, 8))
    for r, key in enumerate(k[-5:]):  # the last 5 keys, written from the pointer on
        expected[(3 + r) % 5] = key
    np.testing.assert_allclose(np64(model.queue), expected, rtol=RTOL, atol=ATOL)
    assert int(model.queue_ptr) == 3


# ----------------------------------------------------------------------------------------------------------
# 6. every registered objective through build_objective


def test_registered_objectives():
    assert set(OBJECTIVES) == {"supervised", "moco", "simclr", "byol", "clip", "segmentation", "detection"}
    assert objective_params("supervised") == ["label_smoothing"]
    assert objective_params("moco") == ["dim", "queue_size", "momentum", "temperature", "hidden"]
    assert objective_params("simclr") == ["dim", "temperature", "hidden"]
    assert objective_params("byol") == ["dim", "hidden", "base_momentum"]
    for name in SSL:
        assert OBJECTIVES.get(name).transform == "ssl" and not OBJECTIVES.get(name).needs_labels
    assert OBJECTIVES.get("supervised").needs_labels


@pytest.mark.parametrize("name", ["supervised", "moco", "simclr", "byol"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_objective_contract(name, mode):
    n = 6
    model = build(name, None, num_classes=5, num_examples=64, total_steps=20)  # paper defaults
    model.train(mode == "train")
    batch = sup_batch(n, 3) if name == "supervised" else ssl_batch(n, 3)
    out = model(batch)
    loss, per = out["loss"], out["per_sample_loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert per.shape == (n,) and torch.isfinite(per).all() and not per.requires_grad
    np.testing.assert_allclose(float(per.mean()), val(loss), rtol=RTOL, atol=ATOL)
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_supervised_matches_numpy_and_weights():
    model = build("supervised", None, num_classes=5).eval()
    batch = sup_batch(6, 9)
    out = model(batch)
    with torch.no_grad():
        logits = np64(model.head(model.backbone.forward_features(batch["images"])))
    labels = batch["labels"].tolist()
    ce = np.empty(6)
    for i, row in enumerate(logits):
        ce[i] = -(row[labels[i]] - math.log(sum(math.exp(v) for v in row)))
    np.testing.assert_allclose(np64(out["per_sample_loss"]), ce, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(val(out["loss"]), ce.mean(), rtol=RTOL, atol=ATOL)
    acc = sum(int(np.argmax(logits[i]) == labels[i]) for i in range(6)) / 6
    assert float(out["accuracy"]) == pytest.approx(acc)
    w = torch.tensor([1.0, 0.0, 2.0, 0.5, 3.0, 1.0])
    weighted = model({**batch, "weights": w})
    expected = sum(float(w[i]) * ce[i] for i in range(6)) / float(w.sum())
    np.testing.assert_allclose(val(weighted["loss"]), expected, rtol=RTOL, atol=ATOL)


def test_simclr_forward_matches_numpy():
    model = build("simclr", {"hidden": 16, "dim": 8, "temperature": 0.3}).eval()
    batch = ssl_batch(5, 8)
    out = model(batch)
    with torch.no_grad():
        z1 = np64(model.head(model.backbone.forward_features(batch["images"][0])))
        z2 = np64(model.head(model.backbone.forward_features(batch["images"][1])))
    pairs = ref_nt_xent_pairs(z1, z2, 0.3)
    np.testing.assert_allclose(np64(out["per_sample_loss"]), 0.5 * (pairs[:5] + pairs[5:]), rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------------------------------------
# 7. parameter errors


@pytest.mark.parametrize("name", ["supervised", "moco", "simclr", "byol"])
def test_unknown_parameter_names_accepted_ones(name):
    with pytest.raises(ThresherError) as info:
        build(name, {"not_a_param": 1})
    msg = str(info.value)
    assert "not_a_param" in msg
    for p in objective_params(name):
        assert p in msg


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("moco", {"temperature": 0}),
        ("simclr", {"temperature": 0}),
        ("moco", {"temperature": -0.1}),
        ("moco", {"momentum": 1.0}),
        ("moco", {"queue_size": 0}),
        ("simclr", {"dim": 0}),
        ("byol", {"base_momentum": 1.5}),
        ("byol", {"hidden": 0}),
        ("moco", {"temperature": "0.2"}),  # a string from a hand-written config
    ],
)
def test_bad_parameter_value(name, params):
    with pytest.raises(ThresherError, match=name):
        build(name, params)


def test_run_facts_are_not_user_parameters():
    with pytest.raises(ThresherError, match="num_examples"):
        build("moco", {"num_examples": 10})
    with pytest.raises(ThresherError):
        build_objective("nope", tiny_backbone(), {})


@pytest.mark.parametrize("name", ["moco", "simclr"])
def test_negative_hidden_is_a_thresher_error(name):
    with pytest.raises(ThresherError):
        build(name, {"hidden": -1})


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_bad_label_smoothing_is_a_thresher_error(value):
    with pytest.raises(ThresherError):
        build("supervised", {"label_smoothing": value})


# ----------------------------------------------------------------------------------------------------------
# 8. a few SGD steps lower each SSL objective's loss


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("moco", {"dim": 16, "hidden": 32, "momentum": 0.99, "temperature": 0.2}),
        ("simclr", {"dim": 16, "hidden": 32, "temperature": 0.5}),
        ("byol", {"dim": 16, "hidden": 32}),
    ],
)
def test_sgd_lowers_ssl_loss(name, params):
    torch.manual_seed(0)
    steps = 30
    model = build(name, params, num_examples=160, total_steps=steps).train()  # moco: a 16-key queue
    batch = ssl_batch(16, 42)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        out = model(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(val(out["loss"]))
    assert all(math.isfinite(v) for v in losses)
    # step 0 is skipped: MoCo's first negatives are the random initial queue (an easy, low loss); from step 1 on
    # the queue holds real keys. Observed last/first ratios are 0.15-0.72 over seeds; 0.85 leaves a margin.
    first, last = np.mean(losses[1:6]), np.mean(losses[-5:])
    assert last < 0.85 * first, (name, losses)


def test_objective_deepcopy_is_independent():
    """The loop probes FLOPs on a deep copy: the copy's forward must leave the original's queue and step alone."""
    for name in SSL:
        model = build(name, {"dim": 8, "hidden": 16}).train()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        copy.deepcopy(model)(ssl_batch(4, 0))["loss"].backward()
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)
