"""thresher select / inspect on a hand-made score table: manifests, near-duplicate exclusion, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.cli import main
from thresher.config import build_config
from thresher.data.manifest import Manifest
from thresher.errors import ThresherError
from thresher.select_run import SelectConfig, inspect_selection, run_select

from conftest import make_npz


@pytest.fixture
def score_dir(tmp_path):
    """A score run folder over a 64-image npz pool: 'good' ranks class 3 first; two rows are near-duplicates."""
    pool = make_npz(tmp_path / "pool" / "train.npz", n=64, classes=4)
    labels = np.arange(64) % 4
    good = labels + np.linspace(0, 0.5, 64)
    dup = np.zeros(64, bool)
    dup[[63, 59]] = True  # two of the best-scored images are near-duplicates of target images
    folder = tmp_path / "scores"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "id": [f"train-{i:06d}" for i in range(64)],
                "label": labels,
                "index": np.arange(64),
                "max_target_cosine": np.where(dup, 0.99, 0.5),
                "near_duplicate": dup,
                "good": good,
                "bad": np.where(np.arange(64) == 5, np.nan, good),
            }
        ),
        folder / "scores.parquet",
    )
    (folder / "scores.json").write_text(
        json.dumps({"source": f"npz:{pool}", "target": "npz:elsewhere", "classes": [f"class{k}" for k in range(4)]})
    )
    return folder


def cfg(scores, **kw):
    return build_config(SelectConfig, values={"scores": str(scores), **kw})


def test_top_selection_excludes_near_duplicates(score_dir, tmp_path):
    m = run_select(cfg(score_dir, method="good", budget=0.25), tmp_path / "sel", log=lambda *_: None)
    assert m.n_unique == 16 - 0 and len(set(m.ids)) == 16
    assert "train-000063" not in set(m.ids) and "train-000059" not in set(m.ids)
    assert set(m.labels) == {3, 2} and (m.labels == 3).sum() == 14  # class 3 minus its two duplicates, then class 2
    doc = json.loads((tmp_path / "sel" / "manifest.json").read_text())
    assert doc["method"] == "good" and doc["selection"]["mode"] == "top" and doc["selection"]["excluded"] == 2
    assert doc["inputs"]["scores_sha256"]
    again = run_select(
        cfg(score_dir, method="good", budget=0.25, include_near_duplicates=True), tmp_path / "sel2", log=lambda *_: None
    )
    assert "train-000063" in set(again.ids)


def test_weighted_and_elastic_modes_write_counts(score_dir, tmp_path):
    w = run_select(cfg(score_dir, method="good", budget=200, mode="weighted"), tmp_path / "w", log=lambda *_: None)
    assert w.total_count == 200 and (w.counts >= 1).all()
    e = run_select(cfg(score_dir, method="good", budget=20, mode="elastic"), tmp_path / "e", log=lambda *_: None)
    assert e.total_count == 20 and (e.counts == 1).all()
    read = Manifest.read(tmp_path / "e")
    assert list(read.ids) == list(e.ids)


def test_errors(score_dir, tmp_path):
    with pytest.raises(ThresherError, match="available: good, bad"):
        run_select(cfg(score_dir, method="nope", budget=0.1), tmp_path / "a", log=lambda *_: None)
    with pytest.raises(ThresherError, match="NaN"):
        run_select(cfg(score_dir, method="bad", budget=0.1), tmp_path / "b", log=lambda *_: None)
    with pytest.raises(ThresherError):
        run_select(cfg(score_dir, method="good", budget=500), tmp_path / "c", log=lambda *_: None)
    with pytest.raises(ThresherError, match="budget"):
        cfg(score_dir, method="good", budget=0)
    with pytest.raises(ThresherError, match="mode"):
        cfg(score_dir, method="good", budget=0.1, mode="topp")
    with pytest.raises(ThresherError, match="run thresher score first"):
        run_select(cfg(tmp_path / "nowhere", method="good", budget=0.1), tmp_path / "d", log=lambda *_: None)


def test_inspect_and_cli(score_dir, tmp_path, capsys):
    out = tmp_path / "sel"
    with pytest.raises(SystemExit) as exc:
        main(["select", "--scores", str(score_dir), "--method", "good", "--budget", "0.25", "--out", str(out)])
    assert exc.value.code in (0, None)
    lines = []
    info = inspect_selection(out, log=lines.append)
    assert info["classes_covered"] == 2
    assert any("class3" in line for line in lines)
    assert (out / "top.png").is_file() and (out / "bottom.png").is_file()
    with pytest.raises(SystemExit):
        main(["inspect", str(out)])
    assert "enrichment" in capsys.readouterr().out


def test_inspect_refuses_scores_changed_after_selection(score_dir, tmp_path):
    run_select(cfg(score_dir, method="good", budget=0.25), tmp_path / "sel", log=lambda *_: None)
    table = pq.read_table(score_dir / "scores.parquet")
    pq.write_table(
        table.set_column(table.column_names.index("good"), "good", pa.array(np.zeros(64))), score_dir / "scores.parquet"
    )
    with pytest.raises(ThresherError, match="changed since"):
        inspect_selection(tmp_path / "sel", log=lambda *_: None)


def test_absolute_spec(tmp_path, monkeypatch):
    from thresher.data.spec import absolute_spec

    make_npz(tmp_path / "d" / "train.npz")
    monkeypatch.chdir(tmp_path)
    assert absolute_spec("npz:d/train.npz") == f"npz:{tmp_path / 'd' / 'train.npz'}"
    assert absolute_spec("npz:d:train") == f"npz:{tmp_path / 'd'}:train"
    assert absolute_spec("builtin:cifar10:train") == "builtin:cifar10:train"
    assert absolute_spec("hf:d?image=img") == f"hf:{tmp_path / 'd'}?image=img"


def test_score_table_round_trip(tmp_path):
    """The ScoreTable type reads what it writes: methods are the columns beyond the fixed ones, costs are typed."""
    from thresher.scoring.table import ScoreTable

    table = pa.table({"id": ["a", "b"], "label": [0, 1], "index": [0, 1], "knn": [0.5, np.nan]})
    report = {"classes": ["x", "y"], "reports": {"knn": {"cost": {"images": 10, "flops": np.float64(2.5)}}}}
    assert not ScoreTable.exists(tmp_path)
    ScoreTable(table, report).write(tmp_path)
    back = ScoreTable.read(tmp_path)
    assert ScoreTable.exists(tmp_path) and back.methods == ["knn"] and back.classes == ["x", "y"]
    assert list(back.ids) == ["a", "b"] and np.isnan(back.column("knn")[1])
    assert back.method_cost("knn") == {"images": 10.0, "flops": 2.5, "seconds": 0.0}
    assert back.method_cost("random") == {"images": 0.0, "flops": 0.0, "seconds": 0.0}


def test_a_given_fixed_set_is_a_reference_arm_and_its_edits_are_seen(score_dir, tmp_path):
    """Mode given: the manifest's examples at the budget's size (drawn with replacement when fewer); the fixed set
    is an input of the selection, so editing it is refused as a resume instead of silently reusing the old one."""
    quiet = {"log": lambda *_: None}
    first = run_select(cfg(score_dir, method="good", budget=4), tmp_path / "four", **quiet)
    ref = run_select(cfg(score_dir, budget=10, mode="given", params={"manifest": str(tmp_path / "four")}),
                     tmp_path / "ref", **quiet)  # fmt: skip
    assert set(ref.ids) == set(first.ids) and ref.total_count == 10 and ref.n_unique == 4
    assert json.loads((tmp_path / "ref" / "manifest.json").read_text())["inputs"]["manifest_sha256"]
    run_select(cfg(score_dir, method="good", budget=6), tmp_path / "four", force=True, **quiet)  # the set changes
    with pytest.raises(ThresherError, match="different"):
        run_select(cfg(score_dir, budget=10, mode="given", params={"manifest": str(tmp_path / "four")}),
                   tmp_path / "ref", **quiet)  # fmt: skip
