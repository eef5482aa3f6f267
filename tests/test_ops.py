"""The numeric helpers shared by stages (ops/): k-means, nearest neighbours, linear heads, against slow NumPy
versions and known answers on tiny arrays."""

from __future__ import annotations

import numpy as np
import pytest
from test_scorers import HAVE_FAISS, axis, blob, needs_faiss, slow_topk_cosine

from thresher.errors import ThresherError
from thresher.ops import neighbors as nb_mod
from thresher.ops.kmeans import _lloyd, assign, iter_sq_dists, kmeans, pairwise_sq_dists
from thresher.ops.linear import fit_linear, softmax
from thresher.ops.neighbors import agreement, knn_similarity

# ---------------------------------------------------------------------------------------------- k-means


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(4), 50)
    x = np.concatenate([blob(rng, axis(8, j, 20), 50) for j in range(4)])
    for backend in ["torch"] + (["faiss"] if HAVE_FAISS else []):
        centres, labels = kmeans(x, 4, seed=0, backend=backend)
        assert centres.shape == (4, 8) and centres.dtype == np.float32 and labels.dtype == np.int64
        pairs = {(int(t), int(p)) for t, p in zip(truth, labels, strict=True)}
        assert len(pairs) == 4 and len({p for _, p in pairs}) == 4, backend  # a bijection truth <-> clusters
        np.testing.assert_allclose(np.sort(np.abs(centres).max(1)), 20, atol=0.5)


def test_kmeans_deterministic_and_chunked_distances(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    c1, l1 = kmeans(x, 7, seed=3, backend="torch")
    c2, l2 = kmeans(x, 7, seed=3, backend="torch")
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(l1, l2)
    slow = ((x[:, None, :].astype(np.float64) - c1[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(pairwise_sq_dists(x, c1).numpy(), slow, rtol=1e-4, atol=1e-4)
    blocks = [(s, b.numpy()) for s, b in iter_sq_dists(x, c1, rows=17)]
    assert [s for s, _ in blocks] == list(range(0, 300, 17))
    np.testing.assert_allclose(np.concatenate([b for _, b in blocks]), slow, rtol=1e-4, atol=1e-4)
    lab, dist = assign(x, c1, rows=11)
    np.testing.assert_array_equal(lab, slow.argmin(1))
    np.testing.assert_allclose(dist, slow.min(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(lab, l1)  # the returned assignment belongs to the returned centres


def test_kmeans_reseeds_empty_clusters():
    import torch

    rng = np.random.default_rng(3)
    x = np.concatenate([blob(rng, [0, 0], 40, 0.1), blob(rng, [5, 5], 40, 0.1)])
    init = torch.tensor([[0.0, 0.0], [5.0, 5.0], [500.0, 500.0]])  # the third centre attracts no point
    centres, _ = _lloyd(torch.from_numpy(x), init, iters=20, tol=0.0)
    labels, _ = assign(x, centres)
    assert np.isfinite(centres).all() and np.all(np.bincount(labels, minlength=3) > 0)


def test_kmeans_errors():
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ThresherError, match="larger than the number of rows"):
        kmeans(x, 6)
    with pytest.raises(ThresherError, match="k must be"):
        kmeans(x, 0)
    with pytest.raises(ThresherError, match="unknown backend"):
        kmeans(x, 2, backend="sklearn")
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ThresherError, match="non-finite"):
        kmeans(bad, 2)


@needs_faiss
def test_kmeans_torch_and_faiss_agree():
    """Same k-means++ seeds, Lloyd in either backend: inertia within 1% on unstructured data."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    inertia = {}
    for backend in ("torch", "faiss"):
        centres, labels = kmeans(x, 20, seed=0, iters=30, backend=backend)
        _, dist = assign(x, centres)
        np.testing.assert_array_equal(labels, assign(x, centres)[0])
        inertia[backend] = dist.sum()
    assert abs(inertia["torch"] - inertia["faiss"]) <= 0.01 * inertia["torch"]


# ---------------------------------------------------------------------------------------------- nearest neighbours


def test_knn_similarity_matches_numpy_with_tiny_blocks(monkeypatch):
    rng = np.random.default_rng(5)
    q, b = rng.normal(size=(37, 6)), rng.normal(size=(23, 6)) * 3
    want = slow_topk_cosine(q, b, 4)
    np.testing.assert_allclose(knn_similarity(q, b, 4, backend="torch"), want, atol=1e-5)
    monkeypatch.setattr(nb_mod, "BLOCK_ELEMENTS", 2048)  # base blocks of 4 rows, merged top-k
    sims, idx = knn_similarity(q, b, 4, backend="torch", chunk=5, return_indices=True)
    np.testing.assert_allclose(sims, want, atol=1e-5)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(np.take_along_axis(qn @ bn.T, idx, 1), sims, atol=1e-5)


@needs_faiss
def test_knn_torch_and_faiss_identical():
    rng = np.random.default_rng(6)
    q, b = rng.normal(size=(500, 32)).astype(np.float32), rng.normal(size=(300, 32)).astype(np.float32)
    t = knn_similarity(q, b, 10, backend="torch")
    f = knn_similarity(q, b, 10, backend="faiss")
    np.testing.assert_allclose(t, f, atol=1e-5)
    # IVF path, made exact by probing every list
    ivf = knn_similarity(q, b, 10, backend="faiss", ivf_threshold=100, nlist=8, nprobe=8)
    np.testing.assert_allclose(ivf, t, atol=1e-5)


def test_ivf_settings_probe_a_share_of_the_lists():
    assert nb_mod.ivf_settings(100_000, 100_000) is None  # at the threshold: exact
    assert nb_mod.ivf_settings(200_000, 100_000) == {"index": "ivf-flat", "nlist": 1788, "nprobe": 32}
    assert nb_mod.ivf_settings(5_000_000, 100_000)["nprobe"] == 8944 // 64
    assert nb_mod.ivf_settings(500, 100, nlist=8, nprobe=50)["nprobe"] == 8  # never more than the lists


def test_agreement_known_answers():
    exact = (np.array([[0.9, 0.8], [0.5, 0.4], [0.3, 0.2]]), np.array([[0, 1], [2, 3], [4, 5]]))
    same = agreement(exact, exact)
    assert same == {
        "mean_abs_score_difference": 0.0, "p99_abs_score_difference": 0.0, "max_abs_score_difference": 0.0,
        "top10_overlap": 1.0, "recall": 1.0,
    }  # fmt: skip
    # one neighbour of the first query missed (a worse one found instead): recall 5/6, its score off by 0.05
    approx = (np.array([[0.9, 0.7], [0.5, 0.4], [0.3, 0.2]]), np.array([[0, 7], [2, 3], [4, 5]]))
    got = agreement(approx, exact)
    assert got["recall"] == pytest.approx(5 / 6) and got["max_abs_score_difference"] == pytest.approx(0.05)
    assert got["mean_abs_score_difference"] == pytest.approx(0.05 / 3)
    assert got["top10_overlap"] == 1.0  # the first query is still the best
    swapped = (np.array([[0.1, 0.1], [0.5, 0.4], [0.3, 0.2]]), exact[1])
    assert agreement(swapped, exact)["top10_overlap"] == 0.0


# ---------------------------------------------------------------------------------------------- linear trainer


def test_fit_linear_learns_deterministically():
    rng = np.random.default_rng(15)
    x = np.concatenate([blob(rng, axis(5, c, 3), 40) for c in range(3)]) * 100 + 7  # standardised inside
    y = np.repeat(np.arange(3), 40)
    for hidden in (0, 8):
        a = fit_linear(x, y, 3, hidden=hidden, seed=1)
        b = fit_linear(x, y, 3, hidden=hidden, seed=1)
        np.testing.assert_array_equal(a.logits(x), b.logits(x))
        assert (a.predict_proba(x).argmax(1) == y).mean() > 0.95
        np.testing.assert_allclose(a.predict_proba(x).sum(1), 1.0)
    adam = fit_linear(x, y, 3, full_batch_max=10, epochs=30, batch_size=32, lr=0.05)  # mini-batch Adam path
    assert (adam.predict_proba(x).argmax(1) == y).mean() > 0.95
    np.testing.assert_allclose(softmax(np.array([[0.0, np.log(3)]])), [[0.25, 0.75]])


def test_fit_linear_rows_select_training_rows():
    rng = np.random.default_rng(16)
    x = np.concatenate([blob(rng, axis(4, c, 3), 30) for c in range(2)])
    y = np.repeat([0, 1], 30)
    rows = np.arange(0, 60, 2)
    a = fit_linear(x, y[rows], 2, rows=rows)
    b = fit_linear(x[rows], y[rows], 2)
    np.testing.assert_allclose(a.logits(x), b.logits(x), rtol=1e-5, atol=1e-5)
    adam = fit_linear(x, y[rows], 2, rows=rows, full_batch_max=10, epochs=20, batch_size=8, lr=0.05)
    assert (adam.predict_proba(x).argmax(1) == y).mean() > 0.95


def test_fitting_a_head_counts_its_flops():
    """A head's fit is part of a scorer's cost (issue 17): forward + backward = 3 x 2 FLOPs per multiply-add for every
    row through every loss evaluation, plus the final loss's forward pass. Mini-batch Adam sees each row once per
    epoch, so the count is exact; L-BFGS sees all rows in each of its evaluations."""
    from thresher.ops.linear import fit_linear

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)).astype(np.float32), np.arange(50) % 3
    adam = fit_linear(x, y, 3, hidden=4, epochs=2, batch_size=16, full_batch_max=0)
    macs = 6 * 4 + 4 * 3
    assert adam.flops == 6 * macs * 2 * 50 + 2 * macs * 50
    lbfgs = fit_linear(x, y, 3, max_iter=10)
    evaluations = (lbfgs.flops - 2 * 18 * 50) / (6 * 18 * 50)
    assert evaluations == int(evaluations) and 1 <= evaluations <= 20
