"""thresher evaluate / compare / search-source end to end on tiny synthetic targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thresher.cli import main
from thresher.config import build_config
from thresher.errors import ThresherError
from thresher.evaluate.config import EvalConfig
from thresher.evaluate.run import evaluate
from thresher.pretrain.run import pretrain
from thresher.train.config import TrainConfig

from conftest import make_npz

QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A 4-class target (train 160, test 64) and a checkpoint pre-trained briefly on another draw of it."""
    root = tmp_path_factory.mktemp("target")
    train = make_npz(root / "train" / "train.npz", n=160, seed=0)
    test = make_npz(root / "test" / "train.npz", n=64, seed=1)
    src = make_npz(root / "src" / "train.npz", n=96, seed=2)
    tcfg = {"data": {"spec": f"npz:{src}"}, "backbone": "small-cnn", "resolution": 12, "epochs": 2, "batch_size": 16}
    pretrain(build_config(TrainConfig, values={**tcfg, "runtime": {"progress": False}}), root / "pt", **QUIET)
    return {"train": train, "test": test, "src": src, "ckpt": root / "pt" / "checkpoint.pt", "root": root}


def ecfg(t, **kw):
    values = {
        "checkpoint": str(t["ckpt"]),
        "train": {"spec": f"npz:{t['train']}"},
        "test": {"spec": f"npz:{t['test']}"},
        "seeds": 2,
        "resolution": 12,
        "finetune": {"epochs": 2, "batch_size": 16},
        "runtime": {"progress": False},
    }
    values.update(kw)
    return build_config(EvalConfig, values=values)


def test_linear_protocol_writes_metrics_with_spread_and_resumes(target, tmp_path, monkeypatch):
    doc = evaluate(ecfg(target), tmp_path / "ev", **QUIET)
    assert doc["tuned"] and doc["summary"]["top1"]["n"] == 2
    s = doc["summary"]["top1"]
    assert s["ci95"][0] <= s["mean"] <= s["ci95"][1] and s["std"] is not None
    for d in doc["seeds"]:
        assert np.asarray(d["confusion"]).sum() == 64 and d["hparams"]["l2"] in ecfg(target).linear.l2_grid
        assert 0 <= d["top1"] <= 1 and 0 <= d["mean_per_class"] <= 1 and 0 <= d["auroc_ovr"] <= 1
    assert doc["cost"]["pretraining"]["images"] == 2 * 96 and doc["cost"]["evaluation"]["forward_images"] == 160 + 64
    with np.load(tmp_path / "ev" / "predictions.npz") as z:
        assert z["probs"].shape == (2, 64, 4) and len(z["ids"]) == 64
    import thresher.evaluate.run as run_mod

    def never(*_):
        raise AssertionError("a finished seed was recomputed")

    monkeypatch.setattr(run_mod.PROTOCOLS, "get", lambda name: never)  # resuming a finished evaluation
    again = evaluate(ecfg(target), tmp_path / "ev", **QUIET)
    assert again["summary"] == doc["summary"]


def test_test_labels_and_images_never_reach_model_selection(target, tmp_path):
    """The chosen penalty and every validation score are the same whatever the test split holds."""
    base = evaluate(ecfg(target), tmp_path / "a", **QUIET)
    with np.load(target["test"]) as z:
        images, labels = z["images"], z["labels"]
    rng = np.random.default_rng(5)
    other = tmp_path / "other" / "train.npz"
    other.parent.mkdir()
    np.savez(other, images=rng.integers(0, 255, images.shape, dtype=np.uint8), labels=rng.permutation(labels))
    swapped = evaluate(ecfg(target, test={"spec": f"npz:{other}"}), tmp_path / "b", **QUIET)
    for x, y in zip(base["seeds"], swapped["seeds"], strict=True):
        assert x["hparams"] == y["hparams"]
    assert base["summary"]["top1"] != swapped["summary"]["top1"]  # the test split itself did change


def test_fewshot_uses_documented_defaults_and_says_so(target, tmp_path, capsys):
    code = _cli(
        "evaluate", "--checkpoint", str(target["ckpt"]), "--train", f"npz:{target['train']}",
        "--test", f"npz:{target['test']}", "--protocol", "fewshot", "--shots-per-class", "1", "--seeds", "2",
        "--resolution", "12", "--out", str(tmp_path / "fs"),
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "not chosen on validation: validation split too small: fixed default l2" in out.out
    doc = json.loads((tmp_path / "fs" / "metrics.json").read_text())
    assert not doc["tuned"] and all(d["hparams"]["shots"] == 4 for d in doc["seeds"])
    assert "fixed default" in doc["seeds"][0]["note"]


@pytest.mark.parametrize("protocol", ["finetune", "lpft"])
def test_finetune_and_lpft_choose_the_rate_on_validation(target, tmp_path, protocol):
    doc = evaluate(ecfg(target, protocol=protocol, seeds=1), tmp_path / protocol, **QUIET)
    d = doc["seeds"][0]
    assert doc["tuned"] and d["hparams"]["lr"] in (0.01, 0.03)
    assert set(d["hparams"]["validation_accuracy"]) == {"0.01", "0.03"}
    assert d["cost"]["images"] > 0 and d["cost"]["flops"] > 0
    if protocol == "lpft":  # fine-tuning started from the probe's head
        runs = [p for p in (tmp_path / protocol / "cache").iterdir() if p.name.startswith("finetune-")]
        import yaml

        assert all(yaml.safe_load((r / "config.yaml").read_text())["config"]["init_head"] for r in runs)
        assert "probe_l2" in d["hparams"]


def test_random_init_baseline_and_config_errors(target, tmp_path, capsys):
    code = _cli(
        "evaluate", "--backbone", "small-cnn", "--random-init", "--train", f"npz:{target['train']}",
        "--test", f"npz:{target['test']}", "--seeds", "1", "--resolution", "12", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert doc["model"]["random_init"] and doc["cost"]["pretraining"] is None
    with pytest.raises(ThresherError, match="give one of --checkpoint, --encoder or"):
        ecfg(target, random_init=True, backbone="small-cnn")
    with pytest.raises(ThresherError, match="fewshot needs exactly one"):
        ecfg(target, protocol="fewshot")
    with pytest.raises(ThresherError, match="evaluation protocol"):
        ecfg(target, protocol="linaer")
    unlabeled = tmp_path / "u" / "x.npy"
    unlabeled.parent.mkdir()
    np.save(unlabeled, np.zeros((8, 12, 12, 3), np.uint8))
    with pytest.raises(ThresherError, match="has no labels"):
        evaluate(ecfg(target, train={"spec": f"npz:{unlabeled}"}), tmp_path / "bad", **QUIET)


def test_compare_two_models_on_one_test_set(target, tmp_path, capsys):
    evaluate(ecfg(target, seeds=1), tmp_path / "a", **QUIET)
    evaluate(ecfg(target, checkpoint=None, random_init=True, backbone="small-cnn", seeds=1), tmp_path / "b", **QUIET)
    code = _cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--test", f"npz:{target['test']}",
                "--out", str(tmp_path / "cmp"))  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    res = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert {"paired_bootstrap", "error_iou", "rv2"} <= set(res)
    assert -1 <= res["paired_bootstrap"]["difference"] <= 1 and 0 <= res["rv2"] <= 1
    assert res["rv2_layer"] == "pooled features"
    assert _cli("compare", str(tmp_path / "a"), str(tmp_path / "a"), "--test", f"npz:{target['test']}",
                "--layer", "features.3", "--out", str(tmp_path / "self")) == 0  # fmt: skip
    same = json.loads((tmp_path / "self" / "comparison.json").read_text())
    assert same["rv2"] == pytest.approx(1.0)  # a model against itself, at an inner layer
    assert same["error_iou"] == 1.0 or np.isnan(same["error_iou"])  # same errors (or none at all)
    assert _cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--test", f"npz:{target['test']}",
                "--layer", "nope") == 2  # fmt: skip
    assert "no layer 'nope'" in capsys.readouterr().err
    other = make_npz(tmp_path / "t2" / "train.npz", n=32, seed=9)
    evaluate(ecfg(target, test={"spec": f"npz:{other}"}, seeds=1), tmp_path / "c", **QUIET)
    assert _cli("compare", str(tmp_path / "a"), str(tmp_path / "c")) == 2
    assert "different test sets" in capsys.readouterr().err


def _search(target, out, test, **kw):
    from thresher.evaluate.search import SearchConfig, search_source

    other = target["root"] / "cand2" / "train.npz"
    if not other.is_file():
        make_npz(other, n=64, seed=4, classes=2)
    values = {
        "base": str(target["ckpt"]),
        "candidates": [f"npz:{target['src']}", f"npz:{other}"],
        "train": {"spec": f"npz:{target['train']}"},
        "test": {"spec": f"npz:{test}"},
        "resolution": 12,
        "pretrain": {"objective": "supervised", "epochs": 1, "batch_size": 16},
        "runtime": {"progress": False},
        **kw,
    }
    return search_source(build_config(SearchConfig, values=values), out, **QUIET)


def test_search_source_ranks_candidates_with_probe_and_logme(target, tmp_path):
    res = _search(target, tmp_path / "s", target["test"], proxy="both")
    assert len(res["rows"]) == 3 and [r["rank"] for r in res["rows"]] == [1, 2, 3]
    vals = [r["validation"]["mean"] for r in res["rows"]]
    assert vals == sorted(vals, reverse=True) and all(0 <= r["test"]["mean"] <= 1 for r in res["rows"])
    assert all(np.isfinite(r["logme"]) for r in res["rows"]) and "spearman_logme_vs_validation" in res
    assert {r["candidate"] for r in res["rows"]} == {
        "(base, no source)",
        f"npz:{target['src']}",
        f"npz:{target['root'] / 'cand2' / 'train.npz'}",
    }
    assert (tmp_path / "s" / "ranking.json").is_file()
    table = (tmp_path / "s" / "ranking.md").read_text()
    assert table.count("\n| ") == 3 + 1 and "Spearman" in table and "pre-training FLOPs" in table
    assert "did not choose it" in table


def test_search_source_ranking_never_reads_the_test_split(target, tmp_path):
    """001 selects the source on validation data: replacing the test split by noise with permuted labels changes
    the test column, not the ranking nor the scores it was made from."""
    real = _search(target, tmp_path / "real", target["test"])
    rng = np.random.default_rng(7)
    noise = tmp_path / "noise" / "train.npz"
    make_npz(noise, n=64, seed=11)
    with np.load(noise) as z:
        labels = rng.permutation(z["labels"])
    np.savez(noise, images=rng.integers(0, 256, (64, 12, 12, 3), dtype=np.uint8), labels=labels)
    noisy = _search(target, tmp_path / "noisy", noise)
    assert [r["candidate"] for r in real["rows"]] == [r["candidate"] for r in noisy["rows"]]
    assert [r["validation"]["values"] for r in real["rows"]] == [r["validation"]["values"] for r in noisy["rows"]]
    assert [r["test"]["mean"] for r in real["rows"]] != [r["test"]["mean"] for r in noisy["rows"]]
    assert max(r["test"]["mean"] for r in noisy["rows"]) < min(r["test"]["mean"] for r in real["rows"])


def _cli(*args) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def _multilabel_npz(path, n, seed):
    """Each of 3 labels is on when its colour channel is boosted; images carry any combination of them."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, (n, 3))
    images = rng.integers(0, 90, (n, 12, 12, 3)) + targets[:, None, None, :] * 150
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images.astype(np.uint8), multilabels=targets)
    return path


def test_multilabel_target_is_evaluated_by_macro_auroc(tmp_path, capsys):
    train = _multilabel_npz(tmp_path / "ml" / "train.npz", 120, 0)
    test = _multilabel_npz(tmp_path / "ml" / "test.npz", 60, 1)
    values = {
        "backbone": "small-cnn", "random_init": True, "train": {"spec": f"npz:{train}"},
        "test": {"spec": f"npz:{test}"}, "seeds": 2, "resolution": 12, "runtime": {"progress": False},
    }  # fmt: skip
    doc = evaluate(build_config(EvalConfig, values=values), tmp_path / "ev", **QUIET)
    assert doc["primary"] == "auroc_macro" and set(doc["summary"]) == {"auroc_macro"}
    assert doc["summary"]["auroc_macro"]["mean"] > 0.9 and doc["tuned"]
    with np.load(tmp_path / "ev" / "predictions.npz") as z:
        assert z["labels"].shape == (60, 3) and z["probs"].shape == (2, 60, 3)
    with pytest.raises(ThresherError, match="multi-label targets support the linear protocol"):
        evaluate(build_config(EvalConfig, values={**values, "protocol": "finetune"}), tmp_path / "ft", **QUIET)
    assert _cli("compare", str(tmp_path / "ev"), str(tmp_path / "ev")) == 2
    assert "single-label" in capsys.readouterr().err
    from thresher.data.npz import ArrayDataset

    with pytest.raises(ThresherError, match="only 0 and 1"):
        ArrayDataset(np.zeros((2, 4, 4, 3), np.uint8), multilabels=np.array([[0, 2], [1, 0]]))
    with pytest.raises(ThresherError, match=r"multilabels must be \(n, classes\)"):
        ArrayDataset(np.zeros((2, 4, 4, 3), np.uint8), multilabels=np.array([0, 1]))


def test_unreadable_target_images_are_left_out_with_a_warning(target, tmp_path):
    from PIL import Image

    with np.load(target["train"]) as z:
        images, labels = z["images"], z["labels"]
    for k in range(len(images)):
        d = tmp_path / "folder" / f"c{labels[k]}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[k]).save(d / f"{k:03d}.png")
    (tmp_path / "folder" / "c1" / "001.png").write_bytes(b"not a png")
    msgs = []
    doc = evaluate(
        ecfg(target, train={"spec": f"folder:{tmp_path / 'folder'}"}, seeds=1), tmp_path / "ev", log=msgs.append
    )
    assert any("1 unreadable train image" in m and "c1/001.png" in m for m in msgs), msgs
    assert doc["seeds"][0]["hparams"]["train_examples"] == len(images) - 1
