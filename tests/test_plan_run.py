"""thresher plan end to end on tiny synthetic data: pilots within their share, the minimum-budget refusal, a budget in
hours, the recommendation rules, and that the target's test split is read by --check alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from test_score_pipeline import pool

import thresher.data.loader as loader
from thresher.cli import main
from thresher.config import build_config
from thresher.errors import ThresherError
from thresher.plan.config import PlanConfig
from thresher.plan.curves import Points
from thresher.plan.grid import Candidate
from thresher.plan.recommend import Piloted, recommend
from thresher.plan.run import check_plan, run_plan
from thresher.train.config import TrainConfig

BUDGET = "90C"  # the smallest this tiny plan allows is about 81 C (C is only 2 epochs of 80 images)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    src = pool(root / "src" / "train.npz", n_per_class=20)
    tr = pool(root / "t" / "train.npz", n_per_class=20, classes=(0, 1), seed=1)
    values = {
        "source": {"spec": f"npz:{src}"},
        "target": {"spec": f"npz:{tr}"},
        "target_test": {"spec": f"npz:{root / 't' / 'test.npz'}"},  # not written yet: only --check may read it
        "budget": BUDGET,
        "methods": ["knn"],
        "fractions": [0.5],
        "resolutions": [12],
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.05,
        "min_steps": 2,
        "score": {"models": {"resolution": 12, "target_epochs": 2, "batch_size": 16, "lr": 0.05}},
        "runtime": {"progress": False},
    }
    return values, root


@pytest.fixture(scope="module")
def planned(tiny, tmp_path_factory):
    values, root = tiny
    out = tmp_path_factory.mktemp("planned") / "plan"
    opened = []
    real = loader.open_dataset
    mp = pytest.MonkeyPatch()
    mp.setattr(loader, "open_dataset", lambda spec, **kw: (opened.append(spec), real(spec, **kw))[1])
    try:
        doc = run_plan(build_config(PlanConfig, values=values), out, log=lambda *a: None)
    finally:
        mp.undo()
    return doc, out, opened, root


def test_the_plan_never_reads_the_test_split_and_spends_its_share(planned):
    doc, out, opened, root = planned
    assert opened and not any("test.npz" in s for s in opened)  # (the file does not even exist yet)
    assert doc["share_spent"] <= doc["share_allowed"] * 1.02  # the grid was sized from the measured scoring cost
    spent = sum(v["flops"] for v in doc["overhead"].values()) / doc["unit"]["flops"]
    assert spent == pytest.approx(doc["spent_C"]) and doc["left_C"] == pytest.approx(doc["budget"]["C"] - spent)
    names = {"random @ 0.5, 12 px", "knn @ 0.5, 12 px", "whole pool, 12 px"}
    assert set(doc["candidates"]) == names and doc["recommended"] in names
    assert len(doc["pilots"]) == 3 * 4 * 2 and len(doc["levels_C"]) == 4
    levels = doc["levels_C"]
    assert all(b == pytest.approx(2 * a) for a, b in zip(levels, levels[1:], strict=False))
    for p in doc["pilots"]:  # each pilot trained the images its level buys (whole batches), and was measured
        assert 0 <= p["accuracy"] <= 1 and p["compute_C"] == pytest.approx(p["level"], rel=0.25)
    rec = doc["candidates"][doc["recommended"]]["prediction"]
    assert rec["low"] <= rec["mean"] <= rec["high"] and rec["compute"] == pytest.approx(doc["left_C"])
    assert doc["whole_pool_at_budget"]["compute"] == pytest.approx(doc["budget"]["C"])
    md = (out / "plan.md").read_text()
    assert "**Recommended: " in md and "thresher pretrain --config" in md and "<svg" in (out / "plan.html").read_text()
    # the command's config is a valid training config that spends what the plan left
    final = doc["final"]["recommended"]
    cfg = build_config(TrainConfig, file=final["config"])
    assert cfg.images == final["images"] and final["compute_C"] == pytest.approx(doc["left_C"])


def test_check_runs_the_recommendation_within_budget_and_alone_reads_the_test_split(planned, capsys):
    doc, out, _, root = planned
    with pytest.raises(ThresherError, match="test.npz"):  # the test split is opened by --check (and is missing)
        check_plan(out, log=lambda *a: None)
    pool(root / "t" / "test.npz", n_per_class=10, classes=(0, 1), seed=11)
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(out), "--check"])
    assert exc.value.code == 0
    check = json.loads((out / "check.json").read_text())
    assert set(check["rows"]) == {"recommended", "whole_pool"}
    for r in check["rows"].values():
        assert r["within_budget"] and 0 <= r["measured"] <= 1 and 0 <= r["test_top1"] <= 1
        assert r["in_interval"] == (r["predicted"]["low"] <= r["measured"] <= r["predicted"]["high"])
    assert check["rows"]["whole_pool"]["total_C"] == pytest.approx(doc["budget"]["C"], rel=0.01)
    assert "Check: predicted against measured" in (out / "plan.md").read_text()
    assert "whole pool: whole pool, 12 px: predicted" in capsys.readouterr().out


def test_below_the_minimum_budget_the_plan_refuses_before_any_work(tiny, tmp_path):
    values, _ = tiny
    with pytest.raises(ThresherError, match=r"too small to plan: .* need at least [0-9.]+ C") as exc:
        run_plan(build_config(PlanConfig, values={**values, "budget": "10C"}), tmp_path / "p", log=lambda *a: None)
    assert "\n" not in str(exc.value)
    assert not list((tmp_path / "p").glob("stages/score-*"))  # refused from the estimate, before scoring


def test_a_budget_in_hours_is_converted_by_a_measured_calibration_run(tiny, tmp_path):
    """A budget of a moment: the calibration measures this machine's speed, and the refusal names the minimum in C
    and in hours, converted at that speed (C here is 2 epochs x 80 images)."""
    import re

    from thresher.models.checkpoint import checkpoint_path, training_cost

    values, _ = tiny
    cfg = build_config(PlanConfig, values={**values, "budget": "0.01min", "calibration_steps": 5})
    with pytest.raises(ThresherError, match="too small to plan") as exc:
        run_plan(cfg, tmp_path / "p", log=lambda *a: None)
    (cal,) = (tmp_path / "p" / "stages").glob("pretrain-calibration-*")
    cost = training_cost(checkpoint_path(cal))
    speed = cost["images"] / cost["seconds"]
    need_c, need_h = map(float, re.search(r"at least ([0-9.e+-]+) C .*\(= ([0-9.e+-]+) hours", str(exc.value)).groups())
    assert need_h == pytest.approx(need_c * 160 / speed / 3600, rel=0.02)


def test_config_rejects_bad_budgets_and_fractions(tiny):
    values, _ = tiny
    with pytest.raises(ThresherError, match="budget"):
        build_config(PlanConfig, values={**values, "budget": "3 parsecs"})
    with pytest.raises(ThresherError, match="fractions"):
        build_config(PlanConfig, values={**values, "fractions": [1.5]})
    with pytest.raises(ThresherError, match="bugdet"):
        build_config(PlanConfig, values={**values, "bugdet": "1C"})


def test_a_plan_folder_refuses_another_plan_and_keeps_its_results(planned, tiny):
    doc, out, _, _ = planned
    values, _ = tiny
    before = (out / "plan.json").read_text()
    with pytest.raises(ThresherError, match="different config"):
        run_plan(build_config(PlanConfig, values={**values, "budget": "100C"}), out, log=lambda *a: None)
    assert (out / "plan.json").read_text() == before


# --- the recommendation rules, on pilots whose answer is known ---------------------------------------------------
def _piloted(method: str, ceiling: float, scoring: float, noise: float, seed: int = 0) -> Piloted:
    rng = np.random.default_rng(seed)
    c = np.repeat([0.1, 0.2, 0.4, 0.8], 3)
    y = ceiling - 0.2 * c**-0.5 * 0.1 + rng.normal(0, noise, len(c))
    return Piloted(Candidate(method, 0.1 if method != "whole pool" else 1.0, 32), scoring, Points.of(c, y))


def test_well_separated_candidates_give_the_best_one():
    piloted = {
        "a": _piloted("knn", 0.70, 0.1, 0.002),
        "b": _piloted("random", 0.50, 0.0, 0.002, seed=1),
        "whole": _piloted("whole pool", 0.55, 0.0, 0.002, seed=2),
    }
    out = recommend(piloted, budget=10.0, spent=2.5, whole_pool="whole")
    assert out["recommended"] == "a" and out["told_apart"] and out["runner_up"] == "whole"
    assert out["left_C"] == pytest.approx(7.5) and out["candidates"]["a"]["prediction"]["compute"] == 7.5
    assert out["whole_pool_at_budget"]["compute"] == 10.0


def test_candidates_the_pilots_cannot_tell_apart_give_the_cheapest():
    piloted = {
        "a": _piloted("knn", 0.60, 0.3, 0.05),
        "b": _piloted("random", 0.59, 0.0, 0.05, seed=1),
        "whole": _piloted("whole pool", 0.20, 0.0, 0.002, seed=2),
    }
    out = recommend(piloted, budget=10.0, spent=2.0, whole_pool="whole")
    assert not out["told_apart"] and set(out["indistinguishable"]) == {"a", "b"}
    assert out["recommended"] == "b"  # no scoring to pay: the lowest total cost
    with pytest.raises(ThresherError, match="nothing is left"):
        recommend(piloted, budget=2.0, spent=2.5, whole_pool="whole")


def test_every_command_config_reloads_from_its_config_yaml_with_the_same_fingerprint(tiny, tmp_path):
    """A run folder's config.yaml, read back (``--config RUN/config.yaml``, ``plan DIR --check``), is the same config:
    defaults that validation would change (an int in a float field) must not make a finished run look foreign."""
    from thresher.config import fingerprint
    from thresher.evaluate.config import EvalConfig
    from thresher.runs import RunFolder
    from thresher.scoring.pipeline import ScoreConfig
    from thresher.select_run import SelectConfig

    values, _ = tiny
    d = {"spec": values["source"]["spec"]}
    configs = [
        build_config(PlanConfig, values=values),
        build_config(ScoreConfig, values={"source": d, "target": d, "methods": ["knn", "domain-classifier"]}),
        build_config(TrainConfig, values={"data": d}),
        build_config(EvalConfig, values={"train": d, "test": d, "random_init": True, "backbone": "small-cnn"}),
        build_config(SelectConfig, values={"scores": "x", "method": "knn", "budget": 0.1}),
    ]
    for k, cfg in enumerate(configs):
        with RunFolder(tmp_path / str(k), "x", cfg):
            pass
        again = build_config(type(cfg), file=tmp_path / str(k) / "config.yaml")
        assert fingerprint(again) == fingerprint(cfg), type(cfg).__name__
        assert yaml.safe_load((tmp_path / str(k) / "config.yaml").read_text())["config"]
