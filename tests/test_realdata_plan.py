"""The planner on real data (issue 19): plan cifar10 from tiny-imagenet at a small budget, then ``--check`` it.

Sized for the test suite (a 2,000-image pool at 16 px, one epoch as C, knn and random at 20% and the whole pool);
``bench/plan.py`` is the full-size measurement. The test split must be read by --check alone.
"""

from __future__ import annotations

import pytest

import thresher.data.loader as loader
from thresher.config import build_config
from thresher.plan.config import PlanConfig
from thresher.plan.run import check_plan, run_plan

pytestmark = pytest.mark.realdata

TEST_SPLIT = "builtin:cifar10:test"


def test_plan_cifar10_at_a_small_budget_and_check_it(tmp_path, monkeypatch):
    cfg = build_config(
        PlanConfig,
        values={
            "source": {"spec": "builtin:tiny-imagenet-32:train", "subset": 2000},
            "target": {"spec": "builtin:cifar10:train", "subset": 1000},
            "target_test": {"spec": TEST_SPLIT, "subset": 1000},
            "budget": "48C",
            "methods": ["knn"],
            "fractions": [0.2],
            "resolutions": [16],
            "epochs": 1,
            "batch_size": 32,
            "min_steps": 4,
            "score": {"models": {"target_epochs": 2}},
            "runtime": {"progress": False},
        },
    )
    opened = []
    real = loader.open_dataset
    monkeypatch.setattr(loader, "open_dataset", lambda spec, **kw: (opened.append(spec), real(spec, **kw))[1])
    doc = run_plan(cfg, tmp_path / "plan", log=lambda *a: None)
    assert opened and TEST_SPLIT not in opened  # the pilots never read the test split
    assert doc["share_spent"] <= 0.25 * 1.02
    rec = doc["candidates"][doc["recommended"]]["prediction"]
    assert rec["high"] > rec["low"]  # not degenerate: the pilots' seeds and the held-out level give it width
    assert doc["whole_pool_at_budget"]["high"] > doc["whole_pool_at_budget"]["low"]
    assert 0.1 < doc["no_pretraining"] < 0.5  # a 10-class probe on random features: above chance, far from solved

    check = check_plan(tmp_path / "plan", log=lambda *a: None)
    assert TEST_SPLIT in opened  # --check alone reads it
    for row in check["rows"].values():
        assert row["within_budget"] and row["total_C"] <= doc["budget"]["C"] * (1 + 1e-6)
        assert 0.1 < row["test_top1"] < 1.0
    # the recommendation spends what the plan left: scoring and pilots plus its run make up the budget
    assert check["rows"]["recommended"]["total_C"] == pytest.approx(doc["budget"]["C"], rel=0.02)
