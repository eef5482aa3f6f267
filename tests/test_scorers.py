"""Scorers (000, 004) on tiny synthetic cases with known answers, against slow NumPy versions of their formulas."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from thresher.errors import ThresherError
from thresher.ops.neighbors import knn_similarity
from thresher.scoring import SCORERS, Side, check_scores
from thresher.scoring import domain_classifier as dc_mod
from thresher.scoring.balance import balanced_weights
from thresher.scoring.base import ScoringContext
from thresher.scoring.domain_classifier import SEPARATION_WARNING
from thresher.scoring.entropy import entropy_from_logits
from thresher.scoring.proxies import FeatureModelConfig

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False
needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not installed (pip install 'thresher[faiss]')")

FEATURE_SCORERS = ["knn", "cluster-avg", "cluster-min", "domain-classifier", "entropy", "inverse-entropy", "importance"]


# ---------------------------------------------------------------------------------------------- helpers


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney U / (n_pos n_neg))."""
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def side(name: str, x, labels=None, logits=None) -> Side:
    n = len(x) if x is not None else len(labels) if labels is not None else len(logits)
    lab = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    return Side(name=name, ids=np.array([f"{name}-{i}" for i in range(n)]), labels=lab, features=x, logits=logits)


def blob(rng, centre, n, std=1.0):
    centre = np.asarray(centre, dtype=np.float64)
    return (centre + std * rng.normal(size=(n, len(centre)))).astype(np.float32)


def axis(d, j, scale):
    v = np.zeros(d)
    v[j] = scale
    return v


@pytest.fixture(scope="module")
def blobs():
    """Target: two blobs (axes 0, 1). Source: 120 points from the target's blobs (relevant) + 120 from axes 2, 3."""
    rng = np.random.default_rng(0)
    d = 16
    target = np.concatenate([blob(rng, axis(d, 0, 6), 60), blob(rng, axis(d, 1, 6), 60)])
    near = np.concatenate([blob(rng, axis(d, 0, 6), 60), blob(rng, axis(d, 1, 6), 60)])
    far = np.concatenate([blob(rng, axis(d, 2, 6), 60), blob(rng, axis(d, 3, 6), 60)])
    order = rng.permutation(240)
    source = np.concatenate([near, far])[order]
    relevant = (np.arange(240) < 120)[order]
    labels = np.repeat([0, 1, 2, 3], 60)[order]
    return side("source", source, labels), side("target", target), relevant


def fit_score(name, source, target, **params):
    scorer = SCORERS.create(name, **params)
    return scorer, check_scores(name, scorer.fit(source, target).score(source), len(source))


# ---------------------------------------------------------------------------------------------- kNN


def slow_topk_cosine(q, b, k):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return -np.sort(-(qn.astype(np.float64) @ bn.T.astype(np.float64)), axis=1)[:, :k]


@needs_faiss
def test_knn_scorer_passes_ivf_parameters():
    rng = np.random.default_rng(8)
    src, tgt = side("s", rng.normal(size=(200, 16))), side("t", rng.normal(size=(400, 16)))
    exact = SCORERS.create("knn", k=5, backend="faiss").fit(src, tgt).score(src)
    probe_all = SCORERS.create("knn", k=5, backend="faiss", ivf_threshold=100, nprobe=80)  # nlist = 4 sqrt(400)
    np.testing.assert_allclose(probe_all.fit(src, tgt).score(src), exact, atol=1e-5)
    one = SCORERS.create("knn", k=5, backend="faiss", ivf_threshold=100, nprobe=1).fit(src, tgt)
    assert np.abs(one.score(src) - exact).max() > 1e-3  # approximate: really the IVF index
    assert one.report()["search"] == {"index": "ivf-flat", "nlist": 80, "nprobe": 1}
    assert SCORERS.create("knn", backend="torch", ivf_threshold=100).fit(src, tgt).report()["search"] == {
        "index": "exact"
    }
    with pytest.raises(ThresherError, match="nprobe must be an integer >= 1"):
        SCORERS.create("knn", nprobe=0).fit(src, tgt)


def test_knn_scorer_known_answer_and_formula(blobs):
    source, target, relevant = blobs
    scorer, scores = fit_score("knn", source, target, k=5)
    assert auroc(scores, relevant) > 0.95
    want = slow_topk_cosine(source.features, target.features, 5).mean(1)
    np.testing.assert_allclose(scores, want, atol=1e-5)
    assert scorer.report()["k"] == 5 and scores.dtype == np.float64


def test_knn_k_capped_by_target_size():
    rng = np.random.default_rng(7)
    src, tgt = side("s", rng.normal(size=(20, 4))), side("t", rng.normal(size=(3, 4)))
    scorer = SCORERS.create("knn", k=10)
    with pytest.warns(UserWarning, match="capped"):
        scorer.fit(src, tgt)
    assert scorer.k_ == 3 and "capped" in scorer.report()["notes"][0]
    np.testing.assert_allclose(scorer.score(src), slow_topk_cosine(src.features, tgt.features, 3).mean(1), atol=1e-5)


# ---------------------------------------------------------------------------------------------- clustering


@pytest.mark.parametrize("name", ["cluster-avg", "cluster-min"])
def test_cluster_scorers_known_answer(blobs, name):
    source, target, relevant = blobs
    _, scores = fit_score(name, source, target, k=4, backend="torch")
    assert auroc(scores, relevant) > 0.95


@pytest.mark.parametrize("normalize", [True, False])
def test_cluster_scores_match_numpy_given_centres(normalize):
    rng = np.random.default_rng(8)
    src, tgt = side("s", rng.normal(size=(50, 3)) * 2), side("t", rng.normal(size=(30, 3)))
    for name, reduce in (("cluster-avg", np.mean), ("cluster-min", np.min)):
        scorer = SCORERS.create(name, k=4, normalize=normalize, backend="torch").fit(src, tgt)
        x = src.features / np.linalg.norm(src.features, axis=1, keepdims=True) if normalize else src.features
        c = scorer.centres_.astype(np.float64)
        dist = np.array([[np.sqrt(((xi - cj) ** 2).sum()) for cj in c] for xi in x])
        np.testing.assert_allclose(scorer.score(src), -reduce(dist, axis=1), rtol=1e-4, atol=1e-4)


def test_cluster_k_capped_by_target_size():
    rng = np.random.default_rng(9)
    src, tgt = side("s", rng.normal(size=(10, 4))), side("t", rng.normal(size=(6, 4)))
    scorer = SCORERS.create("cluster-min")  # default k = 200
    with pytest.warns(UserWarning, match="capped to the number of target examples"):
        scorer.fit(src, tgt)
    assert scorer.k_ == 6 and scorer.centres_.shape == (6, 4) and scorer.report()["notes"]
    # every target example is its own centre: a target point scored as source has distance 0 to its centre
    np.testing.assert_allclose(scorer.score(side("t2", tgt.features)), 0.0, atol=1e-3)


# ---------------------------------------------------------------------------------------------- entropy


def test_entropy_formula_matches_numpy():
    rng = np.random.default_rng(10)
    logits = np.concatenate([rng.normal(size=(20, 5)) * 3, [[0, 0, 0, 0, 0], [60, 0, 0, 0, 0]]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    want = -np.array([sum(pi * np.log(pi) for pi in row if pi > 0) for row in p])
    np.testing.assert_allclose(entropy_from_logits(logits), want, rtol=1e-12, atol=1e-12)
    assert entropy_from_logits(np.zeros((1, 5)))[0] == pytest.approx(np.log(5))
    # the target-trained network's head (source.logits) is used as given; inverse-entropy is its negative
    src = side("s", None, labels=np.zeros(22), logits=logits)
    tgt = side("t", None, labels=[0, 1, 2, 3, 4])
    np.testing.assert_allclose(SCORERS.create("entropy").fit(src, tgt).score(src), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(SCORERS.create("inverse-entropy").fit(src, tgt).score(src), -want, rtol=1e-12)


def test_entropy_known_answer():
    """Target: two well-separated classes along axis 0. Relevant source points sit in the class blobs (confident);
    the others sit on the decision boundary (x0 ~ 0): ambiguous, high entropy. So inverse-entropy ranks the
    relevant ones first and entropy (active learning) ranks the ambiguous ones first."""
    rng = np.random.default_rng(11)
    d = 8
    target = np.concatenate([blob(rng, axis(d, 0, 3), 60, 0.5), blob(rng, axis(d, 0, -3), 60, 0.5)])
    t_labels = np.repeat([0, 1], 60)
    near = np.concatenate([blob(rng, axis(d, 0, 3), 50, 0.5), blob(rng, axis(d, 0, -3), 50, 0.5)])
    boundary = blob(rng, np.zeros(d), 100, 0.5)
    boundary[:, 0] = rng.normal(scale=0.05, size=100)
    source = side("s", np.concatenate([near, boundary]))
    relevant = np.arange(200) < 100
    tgt = side("t", target, t_labels)
    _, inv = fit_score("inverse-entropy", source, tgt)
    _, ent = fit_score("entropy", source, tgt)
    assert auroc(inv, relevant) > 0.95 and auroc(ent, ~relevant) > 0.95
    np.testing.assert_allclose(ent, -inv)
    assert ent.max() <= np.log(2) + 1e-9 and ent.min() >= 0


# ---------------------------------------------------------------------------------------------- importance


def test_importance_hand_computed_example():
    """3 classes, T = 2. Target logits chosen so softmax(logits / 2) is exact:
    [2 ln 2, 0, 0] / 2 -> exp = [2, 1, 1] / 4 = [0.5, 0.25, 0.25];  [0, 2 ln 3, 2 ln 6] / 2 -> [1, 3, 6] / 10.
    P_t = mean = [0.3, 0.275, 0.425]. Source labels 0,0,0,1,2,2,2,2 -> P_s = [3/8, 1/8, 4/8] = [0.375, 0.125, 0.5].
    Weights: class 0: 0.3 / 0.375 = 0.8; class 1: 0.275 / 0.125 = 2.2; class 2: 0.425 / 0.5 = 0.85."""
    target_logits = np.array([[2 * np.log(2), 0.0, 0.0], [0.0, 2 * np.log(3), 2 * np.log(6)]])
    src = side("s", None, labels=[0, 0, 0, 1, 2, 2, 2, 2])
    tgt = side("t", None, logits=target_logits)
    scorer = SCORERS.create("importance")  # temperature 2.0 by default
    scores = scorer.fit(src, tgt).score(src)
    np.testing.assert_allclose(scorer.p_target_, [0.3, 0.275, 0.425], rtol=1e-12)
    np.testing.assert_allclose(scorer.p_source_, [0.375, 0.125, 0.5], rtol=1e-12)
    np.testing.assert_allclose(scores, [0.8, 0.8, 0.8, 2.2, 0.85, 0.85, 0.85, 0.85], rtol=1e-12)
    top = scorer.report()["top_target_classes"]
    assert [t["class"] for t in top] == [2, 0, 1] and top[0]["weight"] == pytest.approx(0.85)
    # another temperature: T = 1 squares the ratios inside the softmax
    p1 = (np.array([4, 1, 1]) / 6 + np.array([1, 9, 36]) / 46) / 2
    s1 = SCORERS.create("importance", temperature=1.0).fit(src, tgt).score(src)
    np.testing.assert_allclose(s1[[0, 3, 4]], p1 / [0.375, 0.125, 0.5], rtol=1e-12)


def importance_case(seed=12):
    """Source: 6 labeled classes (blobs on axes 0..5); target: unlabeled images of classes 0 and 1 only."""
    rng = np.random.default_rng(seed)
    d = 8
    xs = np.concatenate([blob(rng, axis(d, c, 4), 40) for c in range(6)])
    ys = np.repeat(np.arange(6), 40)
    xt = np.concatenate([blob(rng, axis(d, 0, 4), 30), blob(rng, axis(d, 1, 4), 30)])
    return side("s", xs, ys), side("t", xt, np.repeat([0, 1], 30)), ys < 2


def test_importance_known_answer_and_ignores_target_labels():
    src, tgt, relevant = importance_case()
    scorer, scores = fit_score("importance", src, tgt)
    assert auroc(scores, relevant) > 0.95
    assert scorer.p_target_[:2].sum() > 0.8 and scorer.p_source_ == pytest.approx(np.full(6, 1 / 6))
    for labels in (np.full(len(tgt), -1), np.random.default_rng(0).permutation(tgt.labels), np.full(len(tgt), 5)):
        other = Side(name="t", ids=tgt.ids, labels=labels, features=tgt.features)
        np.testing.assert_array_equal(SCORERS.create("importance").fit(src, other).score(src), scores)


# ---------------------------------------------------------------------------------------------- domain classifier


@pytest.mark.parametrize("head", ["logistic", "mlp"])
def test_domain_classifier_known_answer(blobs, head):
    source, target, relevant = blobs
    scorer, scores = fit_score("domain-classifier", source, target, head=head)
    assert auroc(scores, relevant) > 0.95
    rep = scorer.report()
    assert 0.5 <= rep["heldout_accuracy"] < 0.99 and "warning" not in rep and rep["folds"] == 5


def test_domain_classifier_mlp_head_is_nonlinear():
    """Target on +-axis 0, far source on +-axis 1: every class mean is 0, so a linear head cannot separate them."""
    rng = np.random.default_rng(13)
    d = 4
    target = np.concatenate([blob(rng, axis(d, 0, s), 50, 0.5) for s in (4, -4)])
    near = np.concatenate([blob(rng, axis(d, 0, s), 40, 0.5) for s in (4, -4)])
    far = np.concatenate([blob(rng, axis(d, 1, s), 40, 0.5) for s in (4, -4)])
    source, tgt = side("s", np.concatenate([near, far])), side("t", target)
    relevant = np.arange(160) < 80
    _, mlp = fit_score("domain-classifier", source, tgt, head="mlp", hidden=16)
    _, lin = fit_score("domain-classifier", source, tgt, head="logistic")
    assert auroc(mlp, relevant) > 0.95 and auroc(lin, relevant) < 0.8


def test_domain_classifier_out_of_fold_and_balanced(blobs, monkeypatch):
    source, target, _ = blobs
    calls = []
    real = dc_mod.fit_linear

    def spy(x, y, n_classes, **kw):
        rows = kw["rows"]
        calls.append((x[rows], rows, y.copy(), kw["weights"].copy()))
        return real(x, y, n_classes, **kw)

    monkeypatch.setattr(dc_mod, "fit_linear", spy)
    scorer = SCORERS.create("domain-classifier", folds=4).fit(source, target)
    assert len(calls) == len(scorer.models_) == 4
    xs, n_s = source.features, len(source)
    row_of = {xs[i].tobytes(): i for i in range(n_s)}
    scored_by = np.zeros(n_s, np.int64)
    for f, (x, rows, y, w) in enumerate(calls):
        np.testing.assert_array_equal(y, rows >= n_s)  # rows [0, n_s) are source (0), the rest target (1)
        np.testing.assert_array_equal(x[y == 1], target.features[rows[y == 1] - n_s])
        trained = {row_of[r.tobytes()] for r in x[y == 0]}  # identify the training rows by their content
        assert trained == set(rows[y == 0])
        held = set(np.flatnonzero(scorer.source_fold_ == f))
        assert not trained & held and trained | held == set(range(len(xs)))  # trains on exactly the other folds
        assert w[y == 0].sum() == pytest.approx(w[y == 1].sum())  # both sides carry the same total weight
        assert np.ptp(w[y == 0]) == 0 and np.ptp(w[y == 1]) == 0
        idx = np.flatnonzero(scorer.source_fold_ == f)
        np.testing.assert_allclose(scorer.oof_scores_[idx], scorer.models_[f].predict_proba(xs[idx])[:, 1])
        scored_by[idx] += 1
        t_held = scorer.target_fold_ == f
        assert abs(int(t_held.sum()) - len(target) / 4) <= 1  # stratified: every fold holds both sides
    assert np.all(scored_by == 1)  # each source example scored by exactly one model, which did not train on it
    assert np.isfinite(scorer.oof_scores_).all()
    np.testing.assert_array_equal(scorer.score(source), scorer.oof_scores_)
    # an unseen pool (different ids) is scored by the mean of the fold models
    fresh = side("other", xs[:10])
    mean = np.mean([m.predict_proba(xs[:10])[:, 1] for m in scorer.models_], axis=0)
    np.testing.assert_allclose(scorer.score(fresh), mean)


def test_balanced_weights():
    is_t = np.array([True] * 3 + [False] * 9)
    w = balanced_weights(is_t)
    assert w[is_t].sum() == pytest.approx(w[~is_t].sum()) == pytest.approx(6.0) and w.mean() == pytest.approx(1.0)


def test_domain_classifier_warns_on_near_perfect_separation():
    rng = np.random.default_rng(14)
    src, tgt = side("s", blob(rng, np.zeros(4), 60)), side("t", blob(rng, np.full(4, 50.0), 30))
    scorer = SCORERS.create("domain-classifier", folds=3)
    with pytest.warns(UserWarning, match="near-perfect separation"):
        scorer.fit(src, tgt)
    rep = scorer.report()
    assert rep["heldout_accuracy"] == 1.0 and rep["warning"] == SEPARATION_WARNING


def test_domain_classifier_image_mode_hands_off_to_domain_images(blobs, monkeypatch):
    """The CNN itself is trained by scoring.domain_images (pipeline); here only the hand-off is checked."""
    di = pytest.importorskip("thresher.scoring.domain_images")

    source, target, _ = blobs
    one_line_error(lambda: SCORERS.create("domain-classifier", mode="image").fit(source, target), "needs the images")
    one_line_error(lambda: SCORERS.create("domain-classifier", mode="pixels").fit(source, target), "mode must be")
    seen = {}

    def fake(src, tgt, *, folds, epochs, seed, init=None, lr=None, pool_sample=1.0):
        seen.update(folds=folds, epochs=epochs, seed=seed, init=init, lr=lr, pool_sample=pool_sample)
        return {"oof": np.linspace(0, 1, len(src)), "heldout_accuracy": 0.7, "fold_accuracy": [0.6, 0.8],
                "fold_pool_images": [3, 3]}  # fmt: skip

    monkeypatch.setattr(di, "fit_domain_images", fake)
    src = Side(name="s", ids=source.ids, labels=source.labels, dataset=object(), indices=np.arange(len(source)))
    tgt = Side(name="t", ids=target.ids, labels=target.labels, dataset=object(), indices=np.arange(len(target)))
    one_line_error(lambda: SCORERS.create("domain-classifier", mode="image").fit(src, tgt), "run it via thresher score")
    # the score stage's default models (the workspace is not touched here: fit_domain_images is replaced)
    paper = FeatureModelConfig(preset="paper")
    src.context = ScoringContext(None, paper, None, print, lambda which, pos=None: (which, len(pos)))
    scorer = SCORERS.create("domain-classifier", mode="image", folds=2, epochs=3, seed=7).fit(src, tgt)
    assert {k: seen[k] for k in ("folds", "epochs", "seed", "lr")} == {"folds": 2, "epochs": 3, "seed": 7, "lr": None}
    assert seen["init"](np.arange(5)) == ("source-model", 5)  # a pool model per fold, on given positions only
    assert seen["pool_sample"] == 1.0 and scorer.report()["init"] == "source-model"
    # the proxy preset: folds start from the target model (no pool image) and train on a sample of the pool
    src.context = ScoringContext(None, FeatureModelConfig(), None, print, lambda which, pos=None: (which, pos))
    assert (tgt.labels < 0).all()  # an unlabeled target: no target model to start from, a pool model instead
    SCORERS.create("domain-classifier", mode="image", folds=2, epochs=3, seed=7).fit(src, tgt)
    assert seen["init"](np.arange(5))[0] == "source-model" and seen["pool_sample"] == 2500
    labeled = Side(name="t", ids=target.ids, labels=np.zeros(len(target), np.int64), dataset=object(),
                   indices=np.arange(len(target)))  # fmt: skip
    proxied = SCORERS.create("domain-classifier", mode="image", folds=2, epochs=3, seed=7).fit(src, labeled)
    assert seen["init"](np.arange(5)) == ("target-model", None)
    assert "target model" in proxied.report()["out_of_fold"]
    SCORERS.create("domain-classifier", mode="image", folds=2, epochs=3, seed=7, init="none").fit(src, tgt)
    assert seen["init"] is None
    one_line_error(lambda: SCORERS.create("domain-classifier", mode="image", init="imagenet").fit(src, tgt), "init")
    np.testing.assert_array_equal(scorer.score(src), np.linspace(0, 1, len(src)))
    assert scorer.report()["heldout_accuracy"] == 0.7 and "warning" not in scorer.report()
    one_line_error(lambda: scorer.score(side("other", source.features)), "only the pool it was fitted on")


# ---------------------------------------------------------------------------------------------- memory maps


def test_memory_mapped_sides_score_like_in_memory(blobs, tmp_path):
    """Both sides may be read-only memory maps (embedding stores): the pool is read in blocks, same scores, and no
    torch warning about non-writable arrays."""
    source, target, _ = blobs
    np.save(tmp_path / "pool.npy", source.features)
    np.save(tmp_path / "target.npy", target.features)
    labels = np.repeat([0, 1], 60)
    mapped_src = Side(name="source", ids=source.ids, labels=source.labels,
                      features=np.load(tmp_path / "pool.npy", mmap_mode="r"))  # fmt: skip
    mapped_tgt = Side(name="target", ids=target.ids, labels=labels,
                      features=np.load(tmp_path / "target.npy", mmap_mode="r"))  # fmt: skip
    tgt = Side(name="target", ids=target.ids, labels=labels, features=target.features)
    for name in FEATURE_SCORERS:
        params = {"k": 4} if "cluster" in name or name == "knn" else {}
        want = SCORERS.create(name, **params).fit_score(source, tgt)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = SCORERS.create(name, **params).fit_score(mapped_src, mapped_tgt)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------- random + common


def test_random_is_seeded_and_reproducible():
    src, tgt = side("s", None, labels=np.zeros(100)), side("t", None, labels=np.zeros(3))
    a = SCORERS.create("random", seed=3).fit_score(src, tgt)
    b = SCORERS.create("random", seed=3).fit_score(src, tgt)
    c = SCORERS.create("random", seed=4).fit_score(src, tgt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and a.dtype == np.float64 and a.shape == (100,) and 0 <= a.min() < a.max() < 1
    cls = SCORERS.get("random")
    assert cls.uses is None and cls.features_from is None


@pytest.mark.parametrize("name", FEATURE_SCORERS)
def test_scores_shape_dtype_and_no_side_effects(blobs, name):
    source, target, _ = blobs
    params = {"folds": 3} if name == "domain-classifier" else {"k": 4} if "cluster" in name or name == "knn" else {}
    tgt = Side(name="target", ids=target.ids, labels=np.repeat([0, 1], 60), features=target.features)
    scorer = SCORERS.create(name, **params).fit(source, tgt)
    before = pickle.dumps(vars(scorer))
    scores = scorer.score(source)
    assert pickle.dumps(vars(scorer)) == before
    assert scores.dtype == np.float64 and scores.shape == (len(source),) and np.isfinite(scores).all()
    assert isinstance(scorer.report(), dict) and all(not k.endswith("_") for k in scorer.get_params())


def test_unfitted_scorer_is_a_clear_error(blobs):
    with pytest.raises(ThresherError, match="not fitted"):
        SCORERS.create("knn").score(blobs[0])


# ---------------------------------------------------------------------------------------------- errors


def one_line_error(fn, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ThresherError, match=match) as info:
            fn()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", FEATURE_SCORERS)
def test_errors_empty_target_dims_nan(blobs, name):
    source, target, _ = blobs
    labels = np.repeat([0, 1], 60)
    empty = Side(name="target", ids=np.array([], dtype=object), labels=np.array([], np.int64),
                 features=np.zeros((0, 16), np.float32))  # fmt: skip
    one_line_error(lambda: SCORERS.create(name).fit(source, empty), "empty")
    narrow = side("target", target.features[:, :8], labels)
    one_line_error(lambda: SCORERS.create(name).fit(source, narrow), "dimensions differ")
    nan = target.features.copy()
    nan[3, 2] = np.nan
    one_line_error(lambda: SCORERS.create(name).fit(source, side("target", nan, labels)), "non-finite")


@pytest.mark.parametrize("name", ["knn", "cluster-avg", "cluster-min", "entropy"])
def test_errors_nan_in_the_pool_at_score_time(blobs, name):
    source, target, _ = blobs
    tgt = side("target", target.features, np.repeat([0, 1], 60))
    scorer = SCORERS.create(name, **({"k": 4} if name != "entropy" else {})).fit(source, tgt)
    nan = source.features.copy()
    nan[7, 0] = np.inf
    one_line_error(lambda: scorer.score(side("pool", nan)), "non-finite")
    one_line_error(lambda: scorer.score(side("pool", source.features[:, :5])), "dimensions differ|expects")


def test_errors_labels_and_parameters(blobs):
    source, target, _ = blobs
    for name in ("entropy", "inverse-entropy"):
        one_line_error(lambda n=name: SCORERS.create(n).fit(source, target), "needs the labels of target")
    unlabeled = side("source", source.features)
    one_line_error(lambda: SCORERS.create("importance").fit(unlabeled, target), "needs the labels of source")
    for name in ("knn", "cluster-min"):
        one_line_error(lambda n=name: SCORERS.create(n, k=0).fit(source, target), "k must be an integer >= 1")
    one_line_error(lambda: SCORERS.create("importance", temperature=0).fit(source, target), "temperature")
    one_line_error(lambda: SCORERS.create("domain-classifier", folds=1).fit(source, target), "folds >= 2")
    one_line_error(lambda: SCORERS.create("domain-classifier", head="svm").fit(source, target), "head")
    one_line_error(lambda: knn_similarity(source.features, target.features[:3], 5), "larger than the base")
