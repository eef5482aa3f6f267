"""Issue 17: scoring's default models are cheap shared proxies, every answer says what scoring cost (as if each
method ran alone, the run's total with shared models once, fractions of C), the dry run estimates it before any
work, and every scorer but importance works on an unlabeled pool."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_score_pipeline import auroc, pool

from thresher.config import build_config
from thresher.errors import ThresherError
from thresher.scoring.cost import CostReference, run_total, train_flops_per_image
from thresher.scoring.estimate import estimate
from thresher.scoring.pipeline import ScoreConfig, build_scorers, score
from thresher.scoring.proxies import PRESETS, FeatureModelConfig, sample_positions, sample_size, target_epochs
from thresher.workspace import Cost

from conftest import run_cli

METHODS = ["random", "knn", "cluster-min", "importance", "entropy", "domain-classifier"]


def proxy_cfg(src, tgt, methods=METHODS, **kw):
    values = {
        "source": {"spec": f"npz:{src}"},
        "target": {"spec": f"npz:{tgt}"},
        "methods": methods,
        "models": {"resolution": 12, "target_epochs": 6, "batch_size": 16, "lr": 0.05},  # the proxy preset
        "params": {"cluster-min": {"k": 4}, "domain-classifier": {"folds": 2, "epochs": 3}},
        "runtime": {"progress": False},
    }
    values.update(kw)
    values["params"] = {k: v for k, v in values["params"].items() if k in methods}
    return build_config(ScoreConfig, values=values)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxies")
    return pool(root / "src" / "train.npz"), pool(root / "tgt" / "train.npz", n_per_class=16, classes=(0, 1), seed=1)


@pytest.fixture(scope="module")
def proxied(problem, tmp_path_factory):
    out = tmp_path_factory.mktemp("proxied") / "s"
    cfg = proxy_cfg(*problem)
    score(cfg, out, log=lambda *_: None)
    return cfg, out, json.loads((out / "scores.json").read_text())


# ------------------------------------------------------------------------------------------------- settings


def test_presets_fill_what_the_user_left_unset():
    proxy, paper = FeatureModelConfig(), FeatureModelConfig(preset="paper", source_epochs=3)
    assert proxy.model_dump(include=set(PRESETS["proxy"])) == PRESETS["proxy"]
    assert paper.source_epochs == 3 and paper.source_sample == 1.0 and paper.backbone == "small-cnn"
    assert paper.model_fields_set == {"preset", "source_epochs"}  # what the user set, not what the preset filled
    # the resolved config written beside a result names every value
    assert FeatureModelConfig(**proxy.model_dump()) == proxy
    with pytest.raises(ValueError):
        FeatureModelConfig(preset="huge")


def test_samples_and_target_epochs():
    assert sample_size(0.35, 1000, "x") == 350 and sample_size(2500, 1000, "x") == 1000
    assert sample_size(40, 1000, "x") == 40
    with pytest.raises(ThresherError, match="whole number"):
        sample_size(2.5, 1000, "models.source_sample")
    pos = sample_positions(100, 0.3, 0, "x")
    assert len(pos) == 30 and (np.diff(pos) > 0).all() and sample_positions(100, 1.0, 0, "x") is None
    np.testing.assert_array_equal(pos, sample_positions(100, 0.3, 0, "x"))  # seeded
    m = FeatureModelConfig(target_epochs=15, target_images=40_000)
    assert target_epochs(m, 5000) == 8 and target_epochs(m, 1000) == 15 and target_epochs(m, 100_000) == 1
    assert target_epochs(FeatureModelConfig(preset="paper"), 100_000) == 15  # no cap


def test_run_total_counts_shared_artefacts_once():
    model = {"key": "m", "cost": Cost(images=100, flops=1e9, seconds=2, kind="trained").as_dict()}
    emb = {"key": "e", "cost": Cost(images=10, flops=1e6, seconds=1, kind="forward").as_dict()}
    own = Cost(seconds=0.5, kind="own").as_dict()
    reports = {"a": {"artefacts": [model, emb], "own": own}, "b": {"artefacts": [model], "own": own}}
    total = run_total(reports)
    assert total.flops == 1e9 + 1e6 and total.images == 110 and total.seconds == pytest.approx(4.0)
    assert total.kind == "mixed"


def test_reference_counts_what_the_loop_counts():
    ref = CostReference()
    assert ref.flops(30_000) == pytest.approx(8 * 30_000 * train_flops_per_image("small-cnn", 32))
    # the demo's C: about 18.3 TFLOPs (issue 17)
    assert ref.flops(30_000) / 1e12 == pytest.approx(18.3, rel=0.02)
    # the proxy's backbone costs about a quarter of small-cnn per image at the same resolution
    assert 0.2 < train_flops_per_image("small-cnn-half", 32) / train_flops_per_image("small-cnn", 32) < 0.35


# ------------------------------------------------------------------------------------------------- a score run


def test_proxies_rank_target_like_classes_first_and_are_shared(proxied):
    cfg, out, report = proxied
    table = pq.read_table(out / "scores.parquet")
    relevant = table.column("label").to_numpy() < 2
    for m in METHODS[1:]:
        if m != "entropy":  # entropy ranks confusing images, not target-like ones
            assert auroc(table.column(m).to_numpy(), relevant) > 0.8, m
    cache = sorted(p.name.rsplit("-", 1)[0] for p in (out / "cache").iterdir() if p.name.startswith("model-"))
    # one target proxy serves every scorer (and the domain classifier's two folds start from it); no source model
    assert cache == ["model-domain-fold0", "model-domain-fold1", "model-target-model"]
    reports = report["reports"]
    assert {reports[m]["features_from"] for m in ("knn", "importance", "cluster-min")} == {"target-model"}
    assert reports["importance"]["classifier"].startswith("classifier on source features")
    dc = reports["domain-classifier"]
    assert dc["init"] == "target-model" and "target model" in dc["out_of_fold"] and dc["fold_pool_images"] == [48, 48]


def test_every_answer_says_what_scoring_cost(proxied):
    cfg, out, report = proxied
    cost = report["cost"]
    assert cost["unit"]["name"] == "C" and cost["unit"]["flops"] == pytest.approx(cfg.reference.flops(96))
    methods = {m: report["reports"][m]["cost"] for m in METHODS}
    total = cost["total"]
    # shared models counted once: more than any one method, less than their sum
    assert max(c["flops"] for c in methods.values()) <= total["flops"] < sum(c["flops"] for c in methods.values())
    assert cost["total_C"] == pytest.approx(total["flops"] / cost["unit"]["flops"], abs=1e-6)
    for m in METHODS:
        assert cost["methods_C"][m] == pytest.approx(methods[m]["flops"] / cost["unit"]["flops"], abs=1e-6)
    assert methods["random"]["flops"] == 0
    assert "cost" in report["near_duplicates"]


def test_dry_run_estimate_matches_what_the_run_paid(proxied):
    cfg, _, report = proxied
    est = estimate(cfg, build_scorers(cfg))
    for m in METHODS:
        paid = report["reports"][m]["cost"]["flops"]
        if m == "importance":  # its head is counted at the L-BFGS cap of evaluations; this fit stops earlier
            assert paid <= est["methods"][m]["flops"] <= 1.3 * paid
        else:
            assert est["methods"][m]["flops"] == pytest.approx(paid, rel=0.05, abs=1e3), m
    assert report["cost"]["total"]["flops"] <= est["total"]["flops"] <= 1.3 * report["cost"]["total"]["flops"]


def test_select_and_inspect_carry_the_cost(proxied, tmp_path, capsys):
    _, out, report = proxied
    code, printed, _ = run_cli(capsys, "select", "--scores", out, "--method", "knn", "--budget", "0.25", "--out",
                               tmp_path / "sel")  # fmt: skip
    assert code == 0 and "scoring with knn cost" in printed
    meta = json.loads((tmp_path / "sel" / "manifest.json").read_text())
    paid = meta["meta"]["scoring_cost"] if "meta" in meta else meta["scoring_cost"]
    assert paid["cost"] == report["reports"]["knn"]["cost"] and paid["C"] == report["cost"]["methods_C"]["knn"]
    code, printed, _ = run_cli(capsys, "inspect", tmp_path / "sel")
    assert code == 0 and "scoring cost:" in printed


def test_cli_dry_run_prints_costs_before_any_work(problem, tmp_path, capsys):
    src, tgt = problem
    code, printed, _ = run_cli(capsys, "score", "--source", f"npz:{src}", "--target", f"npz:{tgt}", "-m", "knn",
                               "-m", "domain-classifier", "--out", tmp_path / "s", "--dry-run")  # fmt: skip
    assert code == 0 and "knn" in printed and "shared once" in printed and " C " in printed
    assert not (tmp_path / "s").exists()
    code, _, _ = run_cli(capsys, "score", "--source", f"npz:{src}", "--target", f"npz:{tgt}", "-m", "knn",
                         "--preset", "paper", "--out", tmp_path / "s", "--dry-run")  # fmt: skip
    assert code == 0 and not (tmp_path / "s").exists()


def test_paper_preset_is_the_old_behaviour(problem):
    src, tgt = problem
    cfg = proxy_cfg(src, tgt, models={"preset": "paper", "resolution": 12, "source_epochs": 2, "target_epochs": 2})
    est = estimate(cfg, build_scorers(cfg))
    # knn reads the source model trained on the whole pool (96 images x 2 epochs) and embeds both sides
    assert est["parts"]["source-model"]["images"] == 96 * 2
    assert "source-model" in est["methods"]["knn"]["parts"] and "source-model" in est["methods"]["importance"]["parts"]
    assert any(p.startswith("source-model-part") for p in est["methods"]["domain-classifier"]["parts"])


# ------------------------------------------------------------------------------------------------- unlabeled


def without_labels(path, out):
    """A copy of an npz dataset whose labels are all -1 (unlabeled)."""
    with np.load(path) as z:
        images = z["images"]
    out.parent.mkdir()
    np.savez(out, images=images, labels=np.full(len(images), -1, np.int64))
    return out


def test_every_scorer_but_importance_works_on_an_unlabeled_pool(problem, tmp_path):
    src, tgt = problem
    unlabeled = without_labels(src, tmp_path / "u" / "train.npz")
    methods = ["knn", "cluster-min", "entropy", "domain-classifier"]
    for preset in ("proxy", "paper"):
        models = {"preset": preset, "resolution": 12, "target_epochs": 6, "source_epochs": 2, "batch_size": 16}
        out = tmp_path / preset
        score(proxy_cfg(unlabeled, tgt, methods, models=models), out, log=lambda *_: None)
        table = pq.read_table(out / "scores.parquet")
        with np.load(src) as z:
            relevant = z["labels"] < 2
        for m in ("knn", "cluster-min", "domain-classifier"):
            assert auroc(table.column(m).to_numpy(), relevant) > 0.8, (preset, m)
        reports = json.loads((out / "scores.json").read_text())["reports"]
        assert reports["knn"]["features_from"] == "target-model"  # the source model needs labels the pool lacks
    with pytest.raises(ThresherError, match="importance needs the pool's labels") as err:
        score(proxy_cfg(unlabeled, tgt, ["knn", "importance"]), tmp_path / "imp", log=lambda *_: None)
    assert "\n" not in str(err.value) and not (tmp_path / "imp").exists()


# ------------------------------------------------------------------------------------------------- test split


def test_near_duplicates_of_the_test_split_are_excluded_and_counted(tmp_path, capsys):
    """Issue 17 item 5: pool images near-identical to the target's test images are flagged too (DataComp)."""
    rng = np.random.default_rng(5)

    def noise(n: int, name: str, images=None):  # images of uniform noise: no two alike unless copied
        images = rng.integers(0, 256, (n, 12, 12, 3)).astype(np.uint8) if images is None else images
        path = tmp_path / name / "train.npz"
        path.parent.mkdir()
        np.savez(path, images=images, labels=np.arange(len(images)) % 2)
        return path, images

    src, pool_images = noise(60, "pool")
    _, tgt_images = noise(10, "target")
    copies = np.array([3, 40, 57])  # pool rows that reappear in the test split (and one in the train split)
    tgt, _ = noise(0, "tgt", np.concatenate([tgt_images, pool_images[[10]]]))
    test, _ = noise(0, "test", np.concatenate([pool_images[copies], rng.integers(0, 256, (5, 12, 12, 3), np.uint8)]))
    code, printed, _ = run_cli(capsys, "score", "--source", f"npz:{src}", "--target", f"npz:{tgt}", "--target-test",
                               f"npz:{test}", "-m", "random", "--out", tmp_path / "s")  # fmt: skip
    assert code == 0 and "4 flagged: 1 of train, 3 of test images" in printed, printed
    table = pq.read_table(tmp_path / "s" / "scores.parquet")
    np.testing.assert_array_equal(np.flatnonzero(table.column("near_duplicate_test").to_numpy()), copies)
    np.testing.assert_array_equal(np.flatnonzero(table.column("near_duplicate").to_numpy()), [3, 10, 40, 57])
    assert (table.column("max_test_cosine").to_numpy()[copies] > 0.999).all()
    report = json.loads((tmp_path / "s" / "scores.json").read_text())
    dup = report["near_duplicates"]
    assert dup["of_target_test"] == 3 and dup["of_target_train"] == 1 and dup["count"] == 4
    assert dup["target_test"] == f"npz:{test}"
    code, _, _ = run_cli(capsys, "select", "--scores", tmp_path / "s", "--method", "random", "--budget", "0.9",
                         "--out", tmp_path / "sel")  # fmt: skip
    manifest = pq.read_table(tmp_path / "sel" / "manifest.parquet")
    ids = set(manifest.column("id").to_pylist())
    assert code == 0 and len(ids) == round(0.9 * 56) and not ids & set(table.column("id").to_numpy()[copies].tolist())


def test_an_unlabeled_target_is_scored_through_the_pool_model(problem, tmp_path):
    """The target proxy needs the target's labels: on an unlabeled target kNN and importance read the source model
    (004 needs no target labels) and the domain classifier's folds start from pool models; the estimate agrees."""
    src, tgt = problem
    unlabeled = without_labels(tgt, tmp_path / "t" / "train.npz")
    methods = ["knn", "importance", "domain-classifier"]
    models = {"resolution": 12, "source_epochs": 3, "batch_size": 16, "lr": 0.05}
    cfg = proxy_cfg(src, unlabeled, methods, models=models)
    score(cfg, tmp_path / "s", log=lambda *_: None)
    report = json.loads((tmp_path / "s" / "scores.json").read_text())
    table = pq.read_table(tmp_path / "s" / "scores.parquet")
    relevant = table.column("label").to_numpy() < 2
    for m in methods:
        assert auroc(table.column(m).to_numpy(), relevant) > 0.8, m
    assert report["reports"]["knn"]["features_from"] == "source-model"
    assert report["reports"]["domain-classifier"]["init"] == "source-model"
    est = estimate(cfg, build_scorers(cfg))
    for m in methods:  # importance reads the source model's own head here: nothing fitted
        assert est["methods"][m]["flops"] == pytest.approx(report["reports"][m]["cost"]["flops"], rel=0.05), m
