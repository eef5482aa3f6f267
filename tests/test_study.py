"""thresher study and report end to end on tiny synthetic data: plan, baselines, caching, resume, table, HTML."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from test_score_pipeline import pool

from thresher.cli import main
from thresher.config import build_config, merge
from thresher.data.manifest import Manifest
from thresher.errors import ThresherError
from thresher.report import markdown_table, plots
from thresher.study import HPT_BASE, StudyConfig, gain_recovered, plan, run_study


@pytest.fixture(scope="module")
def study_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    src = pool(root / "src" / "train.npz")
    targets = []
    for name, classes, seed in (("ab", (0, 1), 1), ("cd", (2, 3), 2)):
        tr = pool(root / name / "train.npz", n_per_class=20, classes=classes, seed=seed)
        te = pool(root / name / "test.npz", n_per_class=10, classes=classes, seed=seed + 10)
        targets.append({"name": name, "train": {"spec": f"npz:{tr}"}, "test": {"spec": f"npz:{te}"}})
    values = {
        "source": {"spec": f"npz:{src}"},
        "targets": targets,
        "methods": ["knn", "importance"],
        "budgets": [0.5],
        "resolutions": [12],
        "pretrain": {"epochs": 2, "batch_size": 16, "lr": 0.05},
        # the papers' models: the whole-pool model is the scorers' source model (the proxies are tested apart)
        "score": {"models": {"preset": "paper", "resolution": 12, "target_epochs": 2, "batch_size": 16, "lr": 0.05}},
        "evaluation": {"protocol": "linear", "seeds": 2},
        "runtime": {"progress": False},
    }
    return values, root


def test_plan_has_every_baseline_and_shares_stages(study_cfg):
    values, _ = study_cfg
    stages = plan(build_config(StudyConfig, values=values))
    kinds = [s.kind for s in stages]
    assert kinds.count("pretrain") == 1 + 2 * 3  # the whole pool once; random + 2 methods per target
    assert kinds.count("score") == 2 and kinds.count("select") == 6
    evals = [s for s in stages if s.kind == "evaluate"]
    assert {e.meta["arm"] for e in evals} == {"no pre-training", "whole pool", "random", "knn", "importance"}
    assert len(evals) == 2 * 5
    score = next(s for s in stages if s.kind == "score")
    assert score.deps and score.deps[0].startswith("pretrain:pool")  # the whole-pool model is the source model
    assert len({s.key for s in stages}) == len(stages)
    # with the default proxies, scoring does not wait for (nor charge itself) the whole-pool pre-training
    values = {**values, "score": {"models": {"resolution": 12}}}
    score = next(s for s in plan(build_config(StudyConfig, values=values)) if s.kind == "score")
    assert not score.deps and score.values["reference"] == {"backbone": "small-cnn", "resolution": 12, "epochs": 2}


def test_study_runs_reuses_resumes_and_reports(study_cfg, tmp_path, capsys):
    values, root = study_cfg
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(values))
    args = ["study", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "S")]
    assert _cli(*args, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "25 stages" in out and "min at" in out and not (tmp_path / "S").exists()
    assert _cli(*args) == 0, capsys.readouterr().err
    capsys.readouterr()
    res = json.loads((tmp_path / "S" / "results.json").read_text())
    assert len(res["rows"]) == 10
    rows = {(r["target"], r["arm"]): r for r in res["rows"]}
    assert rows[("ab", "random")]["cost"]["scoring"]["flops"] == 0
    pool_cost = rows[("ab", "whole pool")]["cost"]["pretraining"]["flops"]
    assert rows[("ab", "importance")]["cost"]["scoring"]["flops"] >= pool_cost  # it needs the pool model
    assert rows[("ab", "knn")]["cost"]["pretraining"]["flops"] < pool_cost  # half the pool, same epochs (000)
    assert rows[("ab", "no pre-training")]["cost"]["total"]["flops"] == 0
    score_dirs = list((tmp_path / "S" / "stages").glob("score-*"))
    assert len(score_dirs) == 2
    shared = tmp_path / "S" / "stages" / "workspace"  # one workspace for every score and evaluate stage
    assert not any(p.name.startswith("model-source-model") for p in shared.iterdir())  # the pool model was reused
    assert sum(p.name.startswith("model-target-model") for p in shared.iterdir()) == 0  # knn/importance need none
    # the evaluate stages drew from it too: none kept a cache of its own
    assert not any((p / "cache").exists() for p in (tmp_path / "S" / "stages").glob("evaluate-*"))
    # a re-run resumes: every stage is already complete, nothing is trained again
    ckpts = {p: p.stat().st_mtime_ns for p in (tmp_path / "S" / "stages").glob("*/checkpoint.pt")}
    assert _cli(*args) == 0
    assert {p: p.stat().st_mtime_ns for p in ckpts} == ckpts
    md = (tmp_path / "S" / "report.md").read_text()
    assert "| budget | method | ab | cd | cost (TFLOPs)" in md and "whole pool" in md and "**" in md
    page = (tmp_path / "S" / "report.html").read_text()
    assert page.count("<svg") >= 6 and "data:image/png;base64" in page and "<table>" in page
    assert _cli("report", str(tmp_path / "S")) == 0


def test_gain_recovered_is_na_within_noise():
    scratch = {"mean": 0.50, "std": 0.02, "n": 3}
    assert gain_recovered(0.6, scratch, {"mean": 0.70, "std": 0.02, "n": 3}) == pytest.approx(0.5)
    # gap 0.03 < 2 * sqrt(0.02^2/3 + 0.02^2/3) = 0.0327: within noise
    assert gain_recovered(0.6, scratch, {"mean": 0.53, "std": 0.02, "n": 3}) is None
    assert gain_recovered(0.6, scratch, {"mean": 0.534, "std": 0.02, "n": 3}) is not None
    assert gain_recovered(0.6, {"mean": 0.5, "std": None, "n": 1}, {"mean": 0.7, "std": None, "n": 1}) is None


def test_config_errors(study_cfg):
    values, _ = study_cfg
    with pytest.raises(ThresherError, match="scorer"):
        build_config(StudyConfig, values={**values, "methods": ["knnn"]})
    with pytest.raises(ThresherError, match="same name"):
        build_config(StudyConfig, values={**values, "targets": values["targets"][:1] * 2})
    with pytest.raises(ThresherError, match="unknown config key 'budget'"):
        build_config(StudyConfig, values={**values, "budget": 0.1})
    assert np.isfinite(0.0)


def _cli(*args) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def test_plan_with_several_resolutions_names_every_variant(study_cfg):
    """Two pre-training resolutions: a pool run and a subset run per resolution, every arm evaluated at the largest."""
    values, _ = study_cfg
    stages = plan(build_config(StudyConfig, values={**values, "resolutions": [8, 12]}))
    pools = [s for s in stages if s.kind == "pretrain" and s.name.startswith("pool")]
    assert sorted(s.name for s in pools) == ["pool-12px", "pool-8px"]
    evals = [s for s in stages if s.kind == "evaluate"]
    assert len(evals) == 2 * (1 + 2 + 3 * 2)  # scratch once, pool per resolution, 3 arms x 2 resolutions
    assert {e.values["resolution"] for e in evals} == {12}
    assert len({s.folder for s in stages}) == len(stages)


def test_same_steps_gives_every_subset_the_whole_pools_steps(study_cfg):
    """``schedule_per_arm: same-steps``: every subset trains the whole pool's optimizer steps (a step budget, cut
    mid-epoch), not rounded-up epochs; the old ``equal_steps`` key says what replaced it."""
    values, _ = study_cfg
    pt = {**values["pretrain"], "schedule_per_arm": "same-steps"}
    stages = plan(build_config(StudyConfig, values={**values, "pretrain": pt}))
    pool = next(s for s in stages if s.kind == "pretrain" and s.name.startswith("pool"))
    subsets = [s for s in stages if s.kind == "pretrain" and not s.name.startswith("pool")]
    pool_steps = pt["epochs"] * (96 // 16)  # the pool's 96 images in batches of 16, for 2 epochs
    assert "steps" not in pool.values and {s.values["steps"] for s in subsets} == {pool_steps}
    with pytest.raises(ThresherError, match="'pretrain.equal_steps' was replaced: write schedule_per_arm: same-steps"):
        build_config(StudyConfig, values={**values, "pretrain": {**values["pretrain"], "equal_steps": True}})


def _compute_values(values: dict, **kw) -> dict:
    """One target with a hand-picked reference arm, the proxies (no pool-model reuse under compute), 4 epochs."""
    target = {**values["targets"][0], "references": [{"name": "hand-picked", "classes": [3]}]}
    out = {**values, "targets": [target], "score": {"models": {"resolution": 12, "target_epochs": 2, "batch_size": 16}},
           "compute": [0.05, 0.5], "pretrain": {**values["pretrain"], "epochs": 4}}  # fmt: skip
    return merge(out, kw)


def test_compute_matched_plan_sizes_whole_pool_and_never_reuses_its_model(study_cfg):
    values, _ = study_cfg
    cfg = build_config(StudyConfig, values=_compute_values(values))
    stages = plan(cfg)
    pools = {s.meta["compute"]: s for s in stages if s.kind == "pretrain" and s.meta["arm"] == "whole pool"}
    assert sorted(pools) == [0.05, 0.5, 1.0]  # the listed levels and C itself
    assert pools[1.0].values["epochs"] == 4 and "images" not in pools[1.0].values  # C is the study's own run
    assert pools[0.5].values["epochs"] == 2  # c x E whole epochs
    assert pools[0.05].values["images"] == int(0.05 * 4 * 96)  # a fraction of an epoch: an image budget
    assert not any(s.deps for s in stages if s.kind == "score")  # under compute the pool model is never a scorer's
    subsets = [s for s in stages if s.kind == "pretrain" and s.meta["arm"] != "whole pool"]
    assert len(subsets) == 4 * 2 and len({s.key for s in subsets}) == len(subsets)  # 4 arms x 2 levels, keyed apart
    assert {s.meta["pays_for"] for s in subsets} == {"random", "knn", "importance", None}  # a person's pick pays none
    # seeds for some arms only: the whole pool and kNN twice, the rest once; the first seed's runs keep their names
    seeded = plan(build_config(StudyConfig, values=_compute_values(
        values, pretrain={"seeds": 2, "seeded_arms": ["whole pool", "knn"]})))  # fmt: skip
    runs = [s for s in seeded if s.kind == "pretrain"]
    assert len(runs) == 2 * 3 + 2 * 2 + 3 * 2  # whole pool 3 levels x 2, knn 2 levels x 2, 3 arms x 2 levels
    assert {s.folder for s in stages if s.kind == "pretrain"} <= {s.folder for s in runs}
    with pytest.raises(ThresherError, match=r"seeded_arms names no arm of this study: \['knnn'\]"):
        build_config(StudyConfig, values=_compute_values(values, pretrain={"seeded_arms": ["knnn"]}))
    with pytest.raises(ThresherError, match="compute sets every arm's length"):
        build_config(StudyConfig, values=_compute_values(values, pretrain={"schedule_per_arm": "same-steps"}))
    with pytest.raises(ThresherError, match="compute levels are positive"):
        build_config(StudyConfig, values=_compute_values(values, compute=[0.5, -1]))
    bad = _compute_values(values)
    bad["targets"][0]["references"] = [{"name": "x", "classes": [0], "manifest": "m.parquet"}]
    with pytest.raises(ThresherError, match="give classes .or ancestor. or a manifest, one of the two"):
        build_config(StudyConfig, values=bad)
    bad["targets"][0]["references"] = [{"name": "knn", "classes": [0]}]
    with pytest.raises(ThresherError, match=r"reference names must be unique and not a method's: \['knn'\] name"):
        build_config(StudyConfig, values=bad)
    # a fixed set that cannot exist is refused before any stage runs, not after the scoring
    for ref, match in (({"classes": "hand-picked:mnist"}, "no hand-picked:mnist list"),
                       ({"classes": ["hand-picked:cifar10"]}, "write classes: hand-picked:TARGET alone"),
                       ({"manifest": "no/such/folder"}, "manifest .*no/such/folder does not exist")):  # fmt: skip
        bad["targets"][0]["references"] = [{"name": "mine", **ref}]
        with pytest.raises(ThresherError, match=match):
            build_config(StudyConfig, values=bad)


def test_compute_matched_study_spends_each_level(study_cfg, tmp_path):
    """Every arm's measured cost (its scoring as if alone + its pre-training) is its compute level, within a batch
    (or it is over budget); pre-training seeds repeat every pre-training; a hand-picked arm fills its budget."""
    values, _ = study_cfg
    cfg = build_config(StudyConfig, values=_compute_values(values, pretrain={"seeds": 2}, hpt_base=True))
    lines = []
    run_study(cfg, tmp_path / "S", dry_run=True, log=lines.append)  # the forecast: which arms scoring will sink
    forecast = next(line for line in lines if line.startswith("ab: estimated scoring (C): knn"))
    res = run_study(cfg, tmp_path / "S", log=lambda *a: None)
    unit_flops = res["unit"]["flops"]
    batch_share = 16 / (4 * 96)  # what the last, dropped partial batch can leave unspent, in C
    rows = {(r["arm"], r["compute"]): r for r in res["rows"]}
    assert ("whole pool", 0.5) in rows and ("whole pool", 1.0) in rows and ("whole pool", 0.05) in rows
    for (arm, c), r in rows.items():
        if arm == "no pre-training":
            assert r["cost"]["total"]["flops"] == 0 and r["top1"]["n"] == 2  # evaluation seeds only
            continue
        measured = r["cost"]["total"]["flops"] / unit_flops  # from the runs' own records, not the plan
        assert r["cost"]["C"]["total"] == pytest.approx(measured, abs=1e-4)
        if r["over_budget"]:  # importance's and kNN's scoring cost more than 0.05 C: reported, not shortened
            assert arm in ("knn", "importance") and c == 0.05 and r["top1"] is None
            assert r["cost"]["C"]["scoring"] >= c and r["cost"]["pretraining"]["flops"] == 0
            continue
        if arm == HPT_BASE:  # 001's Base: the whole pool (1 C) and a forward pass over the target's images
            pool = rows[("whole pool", 1.0)]["cost"]["total"]["flops"] / unit_flops
            assert c == 1.0 and pool < measured < pool + 0.2 and r["top1"]["n"] == 4
            continue
        assert c - batch_share <= measured <= c + 1e-6, (arm, c, measured)
        assert r["top1"]["n"] == 4 and r["pretrain_seeds"] == 2  # 2 pre-training x 2 evaluation seeds
    assert rows[("knn", 0.05)]["over_budget"] and not rows[("knn", 0.5)]["over_budget"]
    measured = {m for (m, c), r in rows.items() if r["over_budget"]}
    assert measured and all(f"{m} at 0.05 C" in forecast for m in measured) and "at 0.5 C" not in forecast
    assert rows[("knn", 0.5)]["cost"]["C"]["scoring"] > 0 and rows[("random", 0.5)]["cost"]["C"]["scoring"] == 0
    pre_seeds = {yaml.safe_load((p / "config.yaml").read_text())["config"]["seed"]
                 for p in (tmp_path / "S" / "stages").glob("pretrain-ab-random-0p5-c0p5-*")}  # fmt: skip
    assert pre_seeds == {0, 1}
    hand = Manifest.read(rows[("hand-picked", 0.5)]["select_folder"])
    rnd = Manifest.read(rows[("random", 0.5)]["select_folder"])  # 50% of the pool left after near-duplicates
    assert hand.n_unique == 24 and hand.total_count == rnd.total_count > 24  # class 3's 24 images, drawn to fill it
    assert set(hand.labels.tolist()) == {3} and hand.meta["selection"]["info"]["unique"] == 24
    md = markdown_table(res)
    assert "compute 0.5 C" in md and "over budget" in md and "Best pre-trained arm at 0.5 C: ab:" in md
    assert "0.000 + 0.500 = 0.500" in md  # the whole pool at half its compute
    page_figs = plots(res, tmp_path / "S")
    assert any("top-1 against compute" in caption for caption, _ in page_figs)


def test_a_scorer_without_a_recorded_cost_cannot_be_compute_matched(tmp_path):
    """Matching reads each method's cost from its score run; none recorded is an error, never a free arm."""
    from thresher.study import Stage, scoring_paid

    (tmp_path / "scores.parquet").write_bytes(b"")  # a finished run's table (its contents are not read here)
    (tmp_path / "scores.json").write_text(json.dumps({"reports": {"knn": {"cost": {"flops": 2e9}}, "old": {}}}))
    stage = Stage("pretrain", "x", {}, meta={"pays_for": "knn"})
    assert scoring_paid(stage, tmp_path)["flops"] == 2e9
    stage.meta["pays_for"] = None  # a person's pick
    assert scoring_paid(stage, tmp_path)["flops"] == 0
    stage.meta["pays_for"] = "old"
    with pytest.raises(ThresherError, match="recorded no cost for old; compute matching needs it"):
        scoring_paid(stage, tmp_path)


def test_report_sections_follow_the_compute_levels_in_order():
    from thresher.report import table_rows

    def row(arm, c):
        return {"arm": arm, "budget": None, "target": "t", "variant": {"resolution": 32}, "compute": c}

    rows = [row("whole pool", 10.0), row("whole pool", 2.0), row("no pre-training", None), row("whole pool", 0.5)]
    sections = table_rows({"rows": rows})
    assert list(sections) == [
        "resolution 32, compute 0.5 C",
        "resolution 32, compute 2 C",
        "resolution 32, compute 10 C",
    ]
    assert all(s[0]["arm"] == "no pre-training" for s in sections.values())  # in every section
