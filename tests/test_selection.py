"""Selection modes (000 B.2; 004 4.2, 4.3), budgets, exclusions, hierarchies/WordNet, and the Manifest artefact."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from thresher import hierarchy as hierarchy_mod
from thresher.data.manifest import Manifest, file_sha256
from thresher.errors import ThresherError
from thresher.hierarchy import classes_under, read_hierarchy, resolve_class_list, wordnet_hierarchy
from thresher.selection import (
    SELECTORS,
    Pool,
    Selection,
    parse_budget,
    resolve_budget,
    select,
    to_weights,
)


def importance_like(sizes=(50, 50, 50, 50), values=(3.0, 2.0, 1.0, 0.0)):
    """Scores constant within each class (as the importance score of 004 3.3), classes interleaved by position."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    order = np.random.default_rng(123).permutation(len(labels))
    labels = labels[order]
    return np.asarray(values, dtype=float)[labels], labels


# --- budget ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "budget, n, expected",
    [
        ("0.1", 1000, 100),
        (0.1, 1000, 100),
        ("3000", 5000, 3000),
        (3000, 5000, 3000),
        (3000.0, 5000, 3000),
        ("3e3", 5000, 3000),
        (np.int64(7), 10, 7),
        ("10%", 50, 5),
        (1.0, 37, 37),  # a fraction: the whole pool
        (1, 37, 1),  # an integer: one example
        (0.25, 10, 3),  # 2.5 rounds half up
        (0.5, 1, 1),
    ],
)
def test_resolve_budget_accepts_fractions_and_counts(budget, n, expected):
    assert resolve_budget(budget, n) == expected


def test_parse_budget_kinds():
    assert parse_budget("0.1") == ("fraction", 0.1)
    assert parse_budget(12) == ("count", 12.0)
    assert parse_budget(2.0) == ("count", 2.0)


@pytest.mark.parametrize(
    "budget, pattern",
    [
        (0, "must be >= 1"),
        ("0", "must be >= 1"),
        (-3, "must be >= 1"),
        (-0.5, "must be positive"),
        (0.0, "must be positive"),
        (float("nan"), "not finite"),
        ("nan", "not finite"),
        (float("inf"), "not finite"),
        (1.5, "neither a fraction"),
        ("abc", "not a number"),
        (True, "not a number"),
        (None, "budget is required"),
        ("150%", "more than 100%"),
    ],
)
def test_bad_budgets_are_clear_errors(budget, pattern):
    with pytest.raises(ThresherError, match=pattern):
        resolve_budget(budget, 100)


def test_budget_larger_than_pool_and_rounding_to_zero():
    with pytest.raises(ThresherError, match=r"budget 101 is more than the 100 examples in the pool"):
        resolve_budget(101, 100)
    assert resolve_budget(101, 100, replacement=True) == 101
    with pytest.raises(ThresherError, match="rounds to 0"):
        resolve_budget(0.001, 100)
    with pytest.raises(ThresherError, match="pool is empty"):
        resolve_budget(0.5, 0)
    scores = np.arange(10.0)
    for mode in ("top", "elastic"):
        with pytest.raises(ThresherError, match="more than the 10 examples"):
            select(scores, budget=11, mode=mode, labels=np.zeros(10, int))
    assert select(scores, budget=25, mode="weighted").total_count == 25  # with replacement: allowed


def test_modes_other_than_classes_need_a_budget():
    with pytest.raises(ThresherError, match="mode 'top' needs a budget"):
        select(np.arange(5.0), budget=None, mode="top")


# --- top ------------------------------------------------------------------------------------------------------------
def test_top_takes_the_highest_scores():
    scores = np.random.default_rng(0).normal(size=200)
    s = select(scores, budget=0.1, mode="top", seed=3)
    assert s.resolved_budget == 20 and len(s) == 20 and s.total_count == 20
    np.testing.assert_array_equal(np.sort(s.positions), np.sort(np.argsort(-scores)[:20]))
    np.testing.assert_array_equal(s.positions, np.argsort(-scores)[:20])  # in rank order
    np.testing.assert_allclose(s.weights, 1 / 20)
    assert (s.counts == 1).all() and s.mode == "top" and s.params == {} and s.seed == 3


def test_top_breaks_ties_randomly_but_reproducibly():
    scores, labels = importance_like()
    class1 = set(np.flatnonzero(labels == 1).tolist())
    picks = {}
    for seed in range(8):
        s = select(scores, budget=75, mode="top", seed=seed)
        assert set(np.flatnonzero(labels == 0)) <= set(s.positions.tolist())  # the best class entirely
        chosen = set(s.positions.tolist()) - set(np.flatnonzero(labels == 0).tolist())
        assert len(chosen) == 25 and chosen <= class1
        picks[seed] = chosen
        again = select(scores, budget=75, mode="top", seed=seed)
        np.testing.assert_array_equal(again.positions, s.positions)  # same seed, same subset and order
    assert len({frozenset(p) for p in picks.values()}) == len(picks)  # every seed picks other members
    lowest_positions = set(sorted(class1)[:25])
    assert all(p != lowest_positions for p in picks.values())  # not position order
    assert set().union(*picks.values()) != lowest_positions and len(set().union(*picks.values())) > 40


# --- weights and weighted -----------------------------------------------------------------------------------------
def test_transforms():
    s = np.array([-1.0, 0.5, 0.5, 2.0])
    w, used = to_weights(s)
    assert used == "rank"
    np.testing.assert_allclose(w, stats.rankdata(s))  # ties share the mean rank
    np.testing.assert_allclose(to_weights(s, "shift")[0], s + 1.0)
    z = (s - s.mean()) / s.std()
    for t in (1.0, 0.5, 3.0):
        w, _ = to_weights(s, "softmax", temperature=t)
        np.testing.assert_allclose(w / w.sum(), np.exp(z / t) / np.exp(z / t).sum())
    w, used = to_weights(np.array([0.0, 1.0, 3.0]))
    assert used == "identity" and w.tolist() == [0.0, 1.0, 3.0]
    assert to_weights(np.zeros(4))[1] == "rank"  # all-zero weights: auto falls back to uniform ranks
    np.testing.assert_allclose(to_weights(np.full(3, 7.0), "softmax")[0], 1.0)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"transform": "identity"}, "1 are negative"),
        ({"transform": "rank", "temperature": 2.0}, "softmax' only"),
        ({"transform": "softmax", "temperature": 0}, "positive finite"),
        ({"transform": "softmax", "temperature": "hot"}, "not a number"),
        ({"transform": "rnak"}, "did you mean 'rank'"),
    ],
)
def test_transform_errors(kwargs, pattern):
    with pytest.raises(ThresherError, match=pattern):
        to_weights(np.array([-1.0, 0.5, 2.0]), **kwargs)


def test_shift_of_constant_scores_is_an_error():
    with pytest.raises(ThresherError, match="weight 0"):
        to_weights(np.full(5, 2.0), "shift")


def test_weighted_draws_match_the_weights_chi_square():
    weights = np.arange(1.0, 21.0)
    p = weights / weights.sum()
    m = 20_000
    s = select(weights, budget=m, mode="weighted", seed=11)
    assert s.resolved_budget == m and s.total_count == m
    assert len(np.unique(s.positions)) == len(s.positions) == 20 and (s.counts >= 1).all()
    np.testing.assert_allclose(s.weights, p[s.positions])  # weight column = normalised probability
    freq = np.zeros(20)
    freq[s.positions] = s.counts
    assert stats.chisquare(freq, m * p).pvalue > 1e-3
    assert stats.chisquare(freq, np.full(20, m / 20)).pvalue < 1e-3  # the wrong (uniform) distribution fails
    reversed_p = p[::-1]
    assert stats.chisquare(freq, m * reversed_p).pvalue < 1e-3


def test_weighted_transform_rank_and_softmax_frequencies():
    scores = np.linspace(-2, 2, 10)
    m = 30_000
    for transform, extra in (("auto", {}), ("softmax", {"temperature": 2.0})):
        s = select(scores, budget=m, mode="weighted", seed=5, transform=transform, **extra)
        w, _ = to_weights(scores, "rank" if transform == "auto" else transform, extra.get("temperature"))
        freq = np.zeros(10)
        freq[s.positions] = s.counts
        assert stats.chisquare(freq, m * w / w.sum()).pvalue > 1e-3
        assert s.info["transform_used"] == ("rank" if transform == "auto" else "softmax")
        assert s.params == {"transform": transform, "temperature": extra.get("temperature")}


def test_weighted_is_seeded_and_never_draws_zero_weights():
    scores = np.array([0.0, 1.0, 0.0, 2.0, 0.0])
    a = select(scores, budget=500, mode="weighted", seed=1)
    b = select(scores, budget=500, mode="weighted", seed=1)
    c = select(scores, budget=500, mode="weighted", seed=2)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)
    assert set(a.positions.tolist()) == {1, 3}
    assert select(scores, budget=0.4, mode="weighted").total_count == 2  # fraction of the pool, in draws


# --- elastic --------------------------------------------------------------------------------------------------------
def _elastic_fixture():
    # class 0: 2 examples, score 5 (W=10); class 1: 10 x 0.3 (W=3); class 2: 10 x 0.7 (W=7)
    labels = np.array([1, 0, 2, 1, 2, 2, 1, 0, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1])
    scores = np.array(
        [0.3, 5, 0.7, 0.3, 0.7, 0.7, 0.3, 5, 0.7, 0.3, 0.7, 0.3, 0.7, 0.3, 0.7, 0.3, 0.7, 0.3, 0.7, 0.3, 0.7, 0.3]
    )
    return scores, labels


def test_elastic_matches_a_hand_computed_example():
    scores, labels = _elastic_fixture()
    s = select(scores, budget=10, mode="elastic", labels=labels, seed=0)
    # order 0 (10/20 of 10 = 5, only 2 exist) -> 2 (7/10 of 8 = 5.6 -> 6) -> 1 (all of the remaining 2)
    assert labels[s.positions].tolist() == [0, 0, 2, 2, 2, 2, 2, 2, 1, 1]
    assert [(c["label"], c["taken"]) for c in s.info["classes"]] == [(0, 2), (2, 6), (1, 2)]
    assert s.info["transform_used"] == "identity" and s.resolved_budget == 10
    np.testing.assert_allclose(s.weights, 0.1)
    assert (s.counts == 1).all()


def test_elastic_takes_the_best_scores_within_a_class_and_redistributes_the_excess():
    # class 1: 100 examples of rising score, total weight 9; class 0: one example of weight 1
    ramp = np.linspace(0.1, 1.0, 100)
    scores = np.r_[ramp * 9 / ramp.sum(), 1.0]
    labels = np.r_[np.ones(100, int), 0]
    # pass 1: class 1 takes round(50 * 0.9) = 45, class 0 wants 5 but has 1; pass 2: class 1 takes the other 4
    s = select(scores, budget=50, mode="elastic", labels=labels)
    taken = Counter(labels[s.positions].tolist())
    assert taken == {1: 49, 0: 1} and len(s) == 50
    class1 = s.positions[labels[s.positions] == 1]
    assert set(class1.tolist()) == set(range(51, 100))  # the highest-scoring 49 of class 1


def test_elastic_never_repeats_fills_in_weight_order_and_meets_the_budget():
    rng = np.random.default_rng(7)
    for trial in range(40):
        n_classes = int(rng.integers(1, 8))
        sizes = rng.integers(1, 30, size=n_classes)
        class_w = rng.uniform(0.1, 5.0, size=n_classes)
        labels = np.concatenate([np.full(k, c) for c, k in enumerate(sizes)])
        scores = class_w[labels] * rng.uniform(0.5, 1.5, size=len(labels))
        budget = int(rng.integers(1, len(labels) + 1))
        s = select(scores, budget=budget, mode="elastic", labels=labels, seed=trial)
        assert len(s) == budget == s.total_count  # exactly the budget when the pool allows
        assert len(np.unique(s.positions)) == len(s.positions)  # never repeats
        seq = labels[s.positions]
        firsts = list(dict.fromkeys(seq.tolist()))
        totals = np.bincount(labels, weights=scores)
        assert all(totals[a] >= totals[b] for a, b in zip(firsts, firsts[1:], strict=False))  # weight order
        assert 1 + int((np.diff(seq) != 0).sum()) == len(firsts)  # each class one contiguous block
        heaviest = int(np.argmax(totals))
        want = math.floor(budget * totals[heaviest] / totals.sum() + 0.5)
        assert Counter(seq.tolist())[heaviest] >= min(want, sizes[heaviest])


def test_elastic_ignores_unlabeled_and_zero_weight_classes_and_needs_labels():
    scores = np.array([1.0, 1.0, 0.0, 0.0, 5.0, 2.0])
    labels = np.array([0, 0, 1, 1, -1, 2])
    s = select(scores, budget=3, mode="elastic", labels=labels, transform="identity")
    assert sorted(s.positions.tolist()) == [0, 1, 5]
    with pytest.raises(ThresherError, match="3 labeled examples in classes of positive weight"):
        select(scores, budget=4, mode="elastic", labels=labels, transform="identity")
    with pytest.raises(ThresherError, match="needs the source labels"):
        select(scores, budget=2, mode="elastic")
    with pytest.raises(ThresherError, match="needs the source labels"):
        select(scores, budget=2, mode="elastic", labels=np.full(6, -1))


def test_elastic_ties_between_classes_are_seeded():
    scores = np.ones(40)
    labels = np.repeat(np.arange(4), 10)
    a = select(scores, budget=5, mode="elastic", labels=labels, seed=1)
    b = select(scores, budget=5, mode="elastic", labels=labels, seed=1)
    np.testing.assert_array_equal(a.positions, b.positions)
    firsts = {
        int(labels[select(scores, budget=5, mode="elastic", labels=labels, seed=k).positions[0]]) for k in range(12)
    }
    assert len(firsts) > 1


# --- classes ----------------------------------------------------------------------------------------------------
NAMES = ["robin", "jay", "beagle", "car", "rock"]


def _class_pool():
    labels = np.repeat(np.arange(5), 6)
    return np.arange(30.0), labels


def test_classes_by_names_and_ids():
    scores, labels = _class_pool()
    s = select(scores, budget=None, mode="classes", labels=labels, class_names=NAMES, classes=["jay", 3])
    assert s.positions.tolist() == list(range(6, 12)) + list(range(18, 24))
    assert s.resolved_budget == 12 and s.info["class_names"] == ["jay", "car"]
    np.testing.assert_allclose(s.weights, 1 / 12)
    s2 = select(None, budget=None, mode="classes", labels=labels, class_names=NAMES, classes="jay, 3")
    np.testing.assert_array_equal(s.positions, s2.positions)
    assert resolve_class_list(["4", np.int64(0)], None) == [0, 4]


def test_classes_budget_caps_by_a_seeded_random_subset():
    scores, labels = _class_pool()
    kw = dict(mode="classes", labels=labels, class_names=NAMES, classes=[0, 1, 2])
    a = select(scores, budget=5, seed=4, **kw)
    b = select(scores, budget=5, seed=4, **kw)
    others = {frozenset(select(scores, budget=5, seed=k, **kw).positions.tolist()) for k in range(10)}
    np.testing.assert_array_equal(a.positions, b.positions)
    assert len(a) == 5 and set(labels[a.positions]) <= {0, 1, 2} and len(others) > 1
    assert a.info["capped"] is True
    big = select(scores, budget=0.9, seed=4, **kw)  # 27 of the pool, more than the 18 there: all of them
    assert len(big) == 18 and big.info["capped"] is False


@pytest.mark.parametrize(
    "classes, pattern",
    [
        (["jya"], "unknown class 'jya'; did you mean 'jay'"),
        ([7], "class id 7 is out of range"),
        ([-1], "out of range"),
        ([], "no classes given"),
    ],
)
def test_classes_errors(classes, pattern):
    scores, labels = _class_pool()
    with pytest.raises(ThresherError, match=pattern):
        select(scores, budget=None, mode="classes", labels=labels, class_names=NAMES, classes=classes)


def test_classes_names_need_class_names_and_something_to_select():
    scores, labels = _class_pool()
    with pytest.raises(ThresherError, match="no class names"):
        select(scores, budget=None, mode="classes", labels=labels, classes=["jay"])
    with pytest.raises(ThresherError, match="needs classes="):
        select(scores, budget=None, mode="classes", labels=labels, class_names=NAMES)
    with pytest.raises(ThresherError, match="no example in the pool"):
        select(scores, budget=None, mode="classes", labels=labels, classes=[9])


HIERARCHY = """\
# child parent
robin  bird
jay    bird
bird   animal
beagle dog
dog    animal
dog    pet
car    vehicle
flower plant
"""


def test_hierarchy_file_selects_every_class_under_the_ancestor(tmp_path):
    h = tmp_path / "h.txt"
    h.write_text(HIERARCHY)
    assert read_hierarchy(h)["dog"] == {"animal", "pet"}
    assert classes_under("bird", NAMES, hierarchy=h) == [0, 1]
    assert classes_under("animal", NAMES, hierarchy=h) == [0, 1, 2]
    assert classes_under("pet", NAMES, hierarchy=h) == [2]  # through the second parent
    assert classes_under("car", NAMES, hierarchy=h) == [3]  # the ancestor is itself a class
    assert classes_under("rock", NAMES, hierarchy=h) == [4]  # a class absent from the hierarchy
    scores, labels = _class_pool()
    s = select(
        scores, budget=None, mode="classes", labels=labels, class_names=NAMES, ancestor="animal", hierarchy=str(h)
    )
    assert sorted(set(labels[s.positions])) == [0, 1, 2] and len(s) == 18
    assert s.params["ancestor"] == "animal" and s.params["hierarchy"] == str(h)
    with pytest.raises(ThresherError, match="did you mean 'animal'"):
        classes_under("animall", NAMES, hierarchy=h)
    with pytest.raises(ThresherError, match="no source class lies under plant"):
        classes_under("plant", NAMES, hierarchy=h)
    with pytest.raises(ThresherError, match="needs hierarchy=FILE"):
        classes_under("animal", NAMES)


def test_hierarchy_file_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("robin bird\nlonely\n")
    with pytest.raises(ThresherError, match=r"bad.txt:2: expected 'child parent'"):
        read_hierarchy(bad)
    with pytest.raises(ThresherError, match="cannot read hierarchy"):
        read_hierarchy(tmp_path / "missing.txt")
    cyc = tmp_path / "cyc.txt"
    cyc.write_text("a b\nb a\nrobin a\n")
    assert classes_under("b", ["robin", "jay"], hierarchy=cyc) == [0]  # a cycle does not loop forever


# A few lines in the real data.noun format: offset lex_filenum ss_type w_cnt(hex) word lex_id ... p_cnt pointers | gloss
DATA_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by
  2 Princeton University under the following license.
00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04431553 n 0000 | that which is perceived
01466257 05 n 02 chordate 0 Chordata 0 002 @ 00001740 n 0000 ~ 01503061 n 0000 | an animal with a notochord
01503061 05 n 02 bird 0 fowl 0 003 @ 01466257 n 0000 #m 01503999 n 0000 ~ 01514859 n 0000 | warm-blooded vertebrates
01514859 05 n 0a cock 0 rooster 0 a 0 b 0 c 0 d 0 e 0 f 0 g 0 h 0 001 @ 01503061 n 0000 | adult male chicken
02512053 05 n 01 fish 0 002 @ 01466257 n 0000 ;c 06037666 n 0000 | any of various cold-blooded aquatic vertebrates
01443537 05 n 02 goldfish 0 Carassius_auratus 0 001 @ 02512053 n 0000 | small golden or orange-red freshwater fishes
01530000 05 n 01 Big_Bird 0 001 @i 01503061 n 0000 | a famous bird (instance hypernym)
04285008 06 n 02 sports_car 0 sport_car 0 000 | a small low car
"""
WNIDS = ["n01514859", "n01443537", "n01530000", "n04285008"]


def test_wordnet_hypernyms_parsed_from_data_noun(tmp_path):
    f = tmp_path / "data.noun"
    f.write_text(DATA_NOUN)
    parents = wordnet_hierarchy(f)
    assert parents["n01514859"] == {"n01503061"}  # past ten (hex 0a) words
    assert parents["n01503061"] == {"n01466257"}  # the member-meronym '#m' pointer is not a hypernym
    assert parents["n01530000"] == {"n01503061"}  # instance hypernym '@i'
    assert parents["n02512053"] == {"n01466257"}
    assert "n00001740" not in parents and "n04285008" not in parents
    assert classes_under("n01503061", WNIDS, wordnet=tmp_path) == [0, 2]
    assert classes_under("n01466257", WNIDS, wordnet=f) == [0, 1, 2]
    labels = np.repeat(np.arange(4), 3)
    s = select(
        np.zeros(12),
        budget=None,
        mode="classes",
        labels=labels,
        class_names=WNIDS,
        ancestor="n01503061",
        wordnet=str(f),
    )
    assert s.positions.tolist() == [0, 1, 2, 6, 7, 8]


def test_wordnet_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(hierarchy_mod, "WORDNET_CANDIDATES", ("/nonexistent/wordnet/data.noun",))
    with pytest.raises(ThresherError, match="--hierarchy.*wordnet-base"):
        classes_under("n01503061", WNIDS)
    with pytest.raises(ThresherError, match="not found"):
        classes_under("n01503061", WNIDS, wordnet="/nonexistent/data.noun")


# --- exclusions, NaN, interface -----------------------------------------------------------------------------------
def test_excluded_examples_are_never_selected_and_the_fraction_is_of_the_rest():
    scores, labels = importance_like()
    exclude = np.zeros(len(scores), bool)
    exclude[np.flatnonzero(labels == 0)[:30]] = True  # near-duplicates among the best class
    scores = scores.copy()
    scores[exclude] = np.nan  # excluded examples may be unscored
    for mode, extra in (
        ("top", {}),
        ("weighted", {}),
        ("elastic", {"labels": labels}),
        ("classes", {"labels": labels, "classes": [0, 1]}),
    ):
        s = select(scores, budget=0.5, mode=mode, exclude=exclude, seed=2, **extra)
        assert not exclude[s.positions].any(), mode
        assert s.resolved_budget == 85 and s.n_excluded == 30 and s.pool_size == 170
    with pytest.raises(ThresherError, match="after excluding 30 near-duplicates"):
        select(scores, budget=171, mode="top", exclude=exclude)
    with pytest.raises(ThresherError, match="exclude flags"):
        select(scores, budget=1, mode="top", exclude=exclude[:5])


def test_nan_and_inf_scores_are_clear_errors():
    scores = np.arange(10.0)
    scores[[2, 5, 7]] = np.nan
    scores[8] = np.inf
    with pytest.raises(ThresherError, match=r"4 of 10 scores are NaN or infinite \(first at position 2\)"):
        select(scores, budget=3, mode="top")


def test_interface_errors():
    with pytest.raises(ThresherError, match="unknown selection mode 'tpo'; did you mean 'top'"):
        select(np.arange(3.0), budget=1, mode="tpo")
    with pytest.raises(ThresherError, match="mode 'top' has no parameter 'transform'"):
        select(np.arange(3.0), budget=1, mode="top", transform="rank")
    with pytest.raises(ThresherError, match="did you mean 'temperature'"):
        select(np.arange(3.0), budget=1, mode="weighted", temprature=2)
    with pytest.raises(ThresherError, match="3 labels for 4 scores"):
        select(np.arange(4.0), budget=1, mode="top", labels=[0, 1, 2])
    with pytest.raises(ThresherError, match="seed"):
        select(np.arange(4.0), budget=1, mode="top", seed=-1)
    assert {"top", "weighted", "elastic", "classes"} <= set(SELECTORS)


def test_a_new_mode_is_one_function_and_one_decorator():
    @SELECTORS.register("test-bottom")
    def bottom(pool: Pool, *, reverse: bool = False) -> Selection:
        k = pool.count("test-bottom")
        order = np.argsort(pool.scores)
        return Selection(order[::-1][:k] if reverse else order[:k], np.full(k, 1 / k), np.ones(k, int), k)

    try:
        s = select(np.array([3.0, 1.0, 2.0, 0.0]), budget=2, mode="test-bottom", exclude=[False, False, False, True])
        assert s.positions.tolist() == [1, 2] and s.params == {"reverse": False} and s.mode == "test-bottom"
    finally:
        SELECTORS._items.pop("test-bottom")


# --- manifest -----------------------------------------------------------------------------------------------------
def _ids(n):
    return np.array([f"img-{i:04d}" for i in range(n)], dtype=object)


def test_selection_to_manifest_round_trip(tmp_path):
    scores, labels = importance_like(sizes=(5, 5, 5), values=(2.0, 1.0, 0.5))
    ids = _ids(len(scores))
    scores_file = tmp_path / "scores.parquet"
    scores_file.write_bytes(b"pretend parquet")
    s = select(scores, budget=40, mode="weighted", seed=9)
    meta = {
        "source": "npz:/data/pool.npz",
        "method": "importance",
        "inputs": {"scores.parquet": file_sha256(scores_file)},
    }
    m = s.to_manifest(ids, labels, scores, meta)
    out = m.write(tmp_path / "sel")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "manifest.parquet"]  # no temporaries left
    table = pq.read_table(out / "manifest.parquet")
    assert table.schema.names == ["id", "weight", "count", "label", "score"]
    assert [str(t) for t in table.schema.types] == ["string", "double", "int64", "int64", "double"]
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["format"] == "thresher.manifest" and doc["schema_version"] >= 1 and doc["thresher_version"]
    assert doc["source"] == "npz:/data/pool.npz" and doc["method"] == "importance"
    assert doc["inputs"]["scores.parquet"] == hashlib.sha256(b"pretend parquet").hexdigest()
    assert doc["selection"]["mode"] == "weighted" and doc["selection"]["budget"] == 40
    assert doc["selection"]["resolved_budget"] == 40 and doc["selection"]["seed"] == 9
    assert doc["selection"]["params"] == {"transform": "auto", "temperature": None}
    assert doc["n_unique"] == len(s) and doc["total_count"] == 40
    back = Manifest.read(out)
    assert back.ids.tolist() == ids[s.positions].tolist()
    np.testing.assert_array_equal(back.counts, s.counts)
    np.testing.assert_allclose(back.weights, s.weights)
    np.testing.assert_array_equal(back.labels, labels[s.positions])
    np.testing.assert_allclose(back.scores, scores[s.positions])
    assert back.meta["selection"] == doc["selection"] and back.total_count == 40
    assert Manifest.read(out / "manifest.json").n_unique == len(s)


def test_manifest_resolve_maps_ids_to_dataset_positions():
    m = Manifest(ids=["c", "a"], weights=[0.25, 0.75], counts=[1, 3])
    assert m.labels is None and m.scores is None
    pos, w, c = m.resolve(np.array(["a", "b", "c"], dtype=object))
    assert pos.tolist() == [2, 0] and w.tolist() == [0.25, 0.75] and c.tolist() == [1, 3]
    m2 = Manifest(ids=[f"x{i}" for i in range(8)] + ["a"], weights=np.ones(9), counts=np.ones(9, int))
    with pytest.raises(
        ThresherError,
        match=r"8 of the manifest's 9 ids are not in the dataset \(first: 'x0', "
        r"'x1', 'x2', 'x3', 'x4', \.\.\.\)",
    ):
        m2.resolve(["a", "b"])
    with pytest.raises(ThresherError, match="1 duplicate ids"):
        m.resolve(["a", "c", "a"])


def _write_raw(folder: Path, table: pa.Table, meta: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "manifest.parquet")
    (folder / "manifest.json").write_text(json.dumps(meta or {"format": "thresher.manifest"}))
    return folder


@pytest.mark.parametrize(
    "columns, pattern",
    [
        ({"id": ["a", "a", "b"], "weight": [1.0, 1.0, 1.0], "count": [1, 1, 1]}, "1 duplicate ids \\(first: 'a'\\)"),
        ({"id": ["a", "b"], "weight": [1.0, float("nan")], "count": [1, 1]}, "1 non-finite weights"),
        ({"id": ["a", "b"], "weight": [1.0, float("inf")], "count": [1, 1]}, "non-finite weights"),
        ({"id": ["a", "b"], "weight": [-1.0, 1.0], "count": [1, 1]}, "1 negative weights"),
        ({"id": ["a", "b"], "weight": [1.0, 1.0], "count": [0, 2]}, "1 counts below 1"),
        ({"id": [1, 2], "weight": [1.0, 1.0], "count": [1, 1]}, "column 'id' must be strings"),
        ({"id": ["a", "b"], "weight": [1.0, 1.0], "count": [1.0, 1.0]}, "column 'count' must be integers"),
        ({"id": ["a", None], "weight": [1.0, 1.0], "count": [1, 1]}, "column 'id' has 1 missing values"),
        ({"id": ["a", "b"], "weight": [1.0, 1.0]}, "lacks column\\(s\\) count"),
    ],
)
def test_manifest_read_rejects_bad_rows(tmp_path, columns, pattern):
    folder = _write_raw(tmp_path / "m", pa.table(columns))
    with pytest.raises(ThresherError, match=pattern):
        Manifest.read(folder)


def test_manifest_read_rejects_missing_or_inconsistent_files(tmp_path):
    with pytest.raises(ThresherError, match="does not exist"):
        Manifest.read(tmp_path / "nope")
    good = Manifest(ids=["a", "b"], weights=[0.5, 0.5], counts=[1, 2], meta={"method": "random"}).write(tmp_path / "g")
    (good / "manifest.json").unlink()
    with pytest.raises(ThresherError, match="manifest.json is missing"):
        Manifest.read(good)
    other = Manifest(ids=["a"], weights=[1.0], counts=[1]).write(tmp_path / "o")
    (other / "manifest.parquet").unlink()
    with pytest.raises(ThresherError, match="manifest.parquet is missing"):
        Manifest.read(other)
    mixed = _write_raw(
        tmp_path / "x", pa.table({"id": ["a"], "weight": [1.0], "count": [3]}), {"n_unique": 1, "total_count": 2}
    )
    with pytest.raises(ThresherError, match="total_count = 2 but manifest.parquet has 3"):
        Manifest.read(mixed)
    newer = _write_raw(tmp_path / "n", pa.table({"id": ["a"], "weight": [1.0], "count": [1]}), {"schema_version": 99})
    with pytest.raises(ThresherError, match="newer"):
        Manifest.read(newer)
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "manifest.parquet").write_bytes(b"not parquet")
    (tmp_path / "j" / "manifest.json").write_text("{}")
    with pytest.raises(ThresherError, match="cannot read"):
        Manifest.read(tmp_path / "j")


def test_manifest_constructor_validates():
    with pytest.raises(ThresherError, match="duplicate ids"):
        Manifest(ids=["a", "a"], weights=[1.0, 1.0], counts=[1, 1])
    with pytest.raises(ThresherError, match="shape"):
        Manifest(ids=["a", "b"], weights=[1.0], counts=[1, 1])
    with pytest.raises(ThresherError, match="ids must be strings"):
        Manifest(ids=[1, 2], weights=[1.0, 1.0], counts=[1, 1])


# --- fixed sets: hand-picked classes and given manifests (issue 18) --------------------------------------------------
def test_classes_fill_draws_with_replacement_to_the_budget_and_keeps_the_unique_count():
    labels = np.repeat(np.arange(4), 10)
    plain = select(None, budget=25, mode="classes", labels=labels, classes=[1])
    assert len(plain) == 10 and plain.total_count == 10  # without fill: all 10 of class 1, fewer than the budget
    s = select(None, budget=25, mode="classes", labels=labels, classes=[1], fill=True, seed=2)
    assert len(s) == 10 and s.total_count == 25 and (s.counts >= 1).all()  # every one once, 15 more draws
    assert set(labels[s.positions].tolist()) == {1} and s.info["unique"] == 10
    np.testing.assert_allclose(s.weights, s.counts / 25)
    capped = select(None, budget=5, mode="classes", labels=labels, classes=[1, 2], fill=True)
    assert len(capped) == 5 and capped.total_count == 5 and capped.info["capped"]  # more than the budget: a subset


def test_hand_picked_classes_resolve_by_name_for_a_builtin_target():
    from thresher.data.hand_picked import HAND_PICKED

    names = [f"n{k:08d}" for k in range(5)] + HAND_PICKED["cifar10"][:2]
    labels = np.arange(len(names)).repeat(3)
    s = select(None, budget=None, mode="classes", labels=labels, class_names=names, classes="hand-picked:cifar10")
    assert sorted(set(labels[s.positions].tolist())) == [5, 6]
    with pytest.raises(ThresherError, match="no hand-picked classes for 'mnist'"):
        select(None, budget=None, mode="classes", labels=labels, class_names=names, classes="hand-picked:mnist")


def test_given_manifest_is_a_reference_arm_of_the_budgets_size(tmp_path):
    ids = np.array([f"x{k}" for k in range(20)], dtype=object)
    Manifest(ids=ids[[3, 4, 5, 99 % 20]], weights=np.full(4, 0.25), counts=np.ones(4, np.int64)).write(tmp_path)
    s = select(None, budget=10, mode="given", ids=ids, manifest=str(tmp_path), seed=1)
    assert sorted(set(s.positions.tolist())) == [3, 4, 5, 19] and s.total_count == 10 and s.info["unique"] == 4
    small = select(None, budget=2, mode="given", ids=ids, manifest=str(tmp_path))
    assert small.total_count == 2 and set(small.positions.tolist()) <= {3, 4, 5, 19}
    with pytest.raises(ThresherError, match="none of the 4 examples"):
        select(None, budget=2, mode="given", ids=np.array(["y1", "y2"], dtype=object), manifest=str(tmp_path))
    with pytest.raises(ThresherError, match="needs manifest=PATH"):
        select(None, budget=2, mode="given", ids=ids)
