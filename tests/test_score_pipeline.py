"""thresher score end to end on small synthetic images: default trained models, caching, resume, --features."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from thresher.config import build_config
from thresher.errors import ThresherError
from thresher.scoring.pipeline import ScoreConfig, score

COLOURS = np.array([[230, 40, 40], [40, 200, 40], [40, 40, 230], [220, 220, 40]])


def pool(path, n_per_class=24, classes=(0, 1, 2, 3), seed=0, size=12):
    """Images of flat class colours plus noise: the target below looks like source classes 0 and 1 only."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    base = COLOURS[np.asarray(classes)[labels]][:, None, None, :]
    images = np.clip(base + rng.integers(-30, 30, (len(labels), size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=labels)
    return path


def auroc(scores, positive):
    pos, neg = scores[positive], scores[~positive]
    return (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()


@pytest.fixture
def problem(tmp_path):
    src = pool(tmp_path / "src" / "train.npz")
    tgt = pool(tmp_path / "tgt" / "train.npz", n_per_class=16, classes=(0, 1), seed=1)
    return src, tgt


def cfg(src, tgt, methods, **kw):
    values = {
        "source": {"spec": f"npz:{src}"},
        "target": {"spec": f"npz:{tgt}"},
        "methods": methods,
        # the papers' models (preset paper: whole pool, folds from pool models); the proxies are tested apart
        "models": {
            "preset": "paper",
            "resolution": 12,
            "target_epochs": 6,
            "source_epochs": 6,
            "batch_size": 16,
            "lr": 0.05,
        },  # fmt: skip
        "params": {"cluster-min": {"k": 4}, "cluster-avg": {"k": 2}, "domain-classifier": {"folds": 2, "epochs": 4}},
        "runtime": {"progress": False},
    }
    values.update(kw)
    values["params"] = {k: v for k, v in values["params"].items() if k in methods}
    return build_config(ScoreConfig, values=values)


def test_default_models_rank_target_like_classes_first(problem, tmp_path):
    src, tgt = problem
    methods = ["random", "knn", "cluster-min", "cluster-avg", "importance", "domain-classifier"]
    path = score(cfg(src, tgt, methods), tmp_path / "s", log=lambda *_: None)
    table = pq.read_table(path)
    labels = table.column("label").to_numpy()
    relevant = labels < 2
    for m in methods:
        s = table.column(m).to_numpy()
        assert s.shape == (96,) and np.isfinite(s).all()
        if m != "random":
            assert auroc(s, relevant) > 0.9, (m, auroc(s, relevant))
    report = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert set(report["reports"]) == set(methods)
    assert "heldout_accuracy" in json.dumps(report["reports"]["domain-classifier"])
    # each method's cost: every model and embedding it needed, as if it ran alone (000 counts scoring in the cost)
    costs = {m: report["reports"][m]["cost"] for m in methods}
    assert costs["random"]["images"] == 0 and costs["random"]["flops"] == 0
    for m in ("knn", "cluster-min", "importance", "domain-classifier"):
        assert costs[m]["images"] > 0 and costs[m]["flops"] > 0 and costs[m]["seconds"] > 0, (m, costs[m])
    numeric = {m: {k: costs[m][k] for k in ("images", "flops")} for m in methods}
    assert numeric["cluster-min"] == numeric["cluster-avg"]  # the same target model and embeddings, counted alike
    knn_used = {a["kind"] for a in report["reports"]["knn"]["artefacts"]}
    assert costs["knn"]["kind"] == "mixed" and knn_used == {"model", "embeddings", "head outputs"}
    # the domain classifier pays for its pool models and fold CNNs on top: more than kNN's source model
    assert costs["domain-classifier"]["images"] > costs["knn"]["images"]
    # models and embeddings are cached as run folders and reused
    cache = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "s" / "cache").iterdir())
    assert cache.count("model-source-model") == 1 and cache.count("model-target-model") == 1


def test_resume_skips_finished_methods_and_refuses_other_config(problem, tmp_path, monkeypatch):
    src, tgt = problem
    out = tmp_path / "s"
    import thresher.scoring.pipeline as pipe

    calls = []
    real = pipe.check_scores

    def spy(name, *a):
        calls.append(name)
        if name == "knn":
            raise KeyboardInterrupt  # killed while scoring the second method
        return real(name, *a)

    monkeypatch.setattr(pipe, "check_scores", spy)
    with pytest.raises(KeyboardInterrupt):
        score(cfg(src, tgt, ["random", "knn"]), out, log=lambda *_: None)
    monkeypatch.setattr(pipe, "check_scores", lambda name, *a: calls.append(name) or real(name, *a))
    resumed = pq.read_table(score(cfg(src, tgt, ["random", "knn"]), out, log=lambda *_: None))
    assert calls == ["random", "knn", "knn"]  # random was not recomputed
    whole = pq.read_table(score(cfg(src, tgt, ["random", "knn"]), tmp_path / "whole", log=lambda *_: None))
    assert resumed.equals(whole)  # resuming gives the uninterrupted table
    with pytest.raises(ThresherError, match="--force"):
        score(cfg(src, tgt, ["random", "cluster-min"]), out, log=lambda *_: None)
    # --force replaces the results but keeps the content-addressed cache: the source model is not retrained
    (ckpt,) = (out / "cache").glob("model-source-model-*/checkpoint.pt")
    before = ckpt.stat().st_mtime_ns
    score(cfg(src, tgt, ["knn", "cluster-min"]), out, force=True, log=lambda *_: None)
    assert ckpt.stat().st_mtime_ns == before
    assert set(pq.read_table(out / "scores.parquet").column_names) >= {"knn", "cluster-min"}


def test_given_features_store_and_checkpoint(problem, tmp_path):
    from thresher.embed import EmbedConfig, embed

    src, tgt = problem
    e = {"backbone": "small-cnn", "resolution": 12, "runtime": {"progress": False}}
    es = embed(build_config(EmbedConfig, values={"data": {"spec": f"npz:{src}"}, **e}), tmp_path / "es", log=print)
    et = embed(build_config(EmbedConfig, values={"data": {"spec": f"npz:{tgt}"}, **e}), tmp_path / "et", log=print)
    path = score(
        cfg(src, tgt, ["knn", "cluster-min"], features=str(es.path), target_features=str(et.path)),
        tmp_path / "s",
        log=lambda *_: None,
    )
    assert not (tmp_path / "s" / "cache").exists() or not any(
        p.name.startswith("model-") for p in (tmp_path / "s" / "cache").iterdir()
    )
    t = pq.read_table(path)
    assert t.column("knn").to_numpy().shape == (96,)
    # a store in another order (or a superset) is read through a lazy row view, never copied whole
    from thresher.data.spec import open_dataset
    from thresher.embed import EmbeddingStore, RowView
    from thresher.scoring.pipeline import align

    ds = open_dataset(f"npz:{src}")
    rev = np.arange(len(ds))[::-1][:50].copy()
    view = align(EmbeddingStore(es.path), (ds, rev), "--features")
    assert isinstance(view, RowView) and np.array_equal(np.asarray(view), EmbeddingStore(es.path)[rev])
    with pytest.raises(ThresherError, match="--target-features"):
        score(cfg(src, tgt, ["knn"], features=str(es.path)), tmp_path / "s2", log=lambda *_: None)


def test_bad_inputs(problem, tmp_path):
    src, tgt = problem
    with pytest.raises(ThresherError, match="did you mean 'cluster-min'"):
        cfg(src, tgt, ["cluster-mn"])
    with pytest.raises(ThresherError, match="bad parameters for knn"):
        score(cfg(src, tgt, ["knn"], params={"knn": {"kk": 3}}), tmp_path / "a", log=lambda *_: None)
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 12, 12, 3), np.uint8), labels=np.zeros(0, np.int64))
    with pytest.raises(ThresherError, match="holds no images|empty"):
        score(cfg(src, tmp_path / "empty.npz", ["random"]), tmp_path / "b", log=lambda *_: None)
    np.save(tmp_path / "unlabeled.npy", np.zeros((8, 12, 12, 3), np.uint8))
    with pytest.raises(ThresherError, match="target-model.*has none"):
        score(cfg(src, tmp_path / "unlabeled.npy", ["cluster-min"]), tmp_path / "c", log=lambda *_: None)
    assert not (tmp_path / "a" / "scores.parquet").exists()


def test_runs_sharing_a_cache_never_collide(problem, tmp_path):
    """Two score runs over different subsets with one --cache: each gets its own models and folds."""
    src, tgt = problem
    cache = str(tmp_path / "shared-cache")
    for n in (60, 80):
        c = cfg(
            src,
            tgt,
            ["knn", "domain-classifier"],
            cache=cache,
            source={"spec": f"npz:{src}", "subset": n},
            params={"domain-classifier": {"folds": 2, "epochs": 1}},
        )
        path = score(c, tmp_path / f"s{n}", log=lambda *_: None)
        assert pq.read_table(path).num_rows == n
    names = [p.name for p in (tmp_path / "shared-cache").iterdir()]
    assert sum(n.startswith("model-source-model-") and "-part-" not in n for n in names) == 2  # knn's, one per run
    # strictly out of fold: each image-mode fold starts from a pool model trained on the other fold only
    parts = [p for p in (tmp_path / "shared-cache").iterdir() if p.name.startswith("model-source-model-part-")]
    assert len(parts) == 4
    import yaml

    used = sorted(yaml.safe_load((p / "config.yaml").read_text())["inputs"]["data"]["used"] for p in parts)
    assert used == [30, 30, 40, 40]  # half of the 60- and of the 80-image pools
    assert sum(n.startswith("model-domain-fold0") for n in names) == 2


def test_unreadable_pool_and_target_images_are_left_out(tmp_path, monkeypatch):
    """A corrupt pool image gets NaN scores and an 'unreadable' flag, and is never selected; scoring goes on.

    Every image file is decoded exactly once, although three models are trained and both sides embedded.
    """
    from collections import Counter

    from PIL import Image

    from thresher.data.folder import FolderDataset
    from thresher.select_run import SelectConfig, run_select

    loads = Counter()
    real_load = FolderDataset.load

    def counting_load(self, index):
        loads[(self.spec, index)] += 1
        return real_load(self, index)

    monkeypatch.setattr(FolderDataset, "load", counting_load)

    rng = np.random.default_rng(0)
    for side, classes, n in (("pool", (0, 1, 2, 3), 10), ("tgt", (0, 1), 8)):
        for k, c in enumerate(classes):
            d = tmp_path / side / f"c{k}"
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(COLOURS[c] + rng.integers(-30, 30, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    (tmp_path / "pool" / "c0" / "3.png").write_bytes(b"broken")
    (tmp_path / "tgt" / "c1" / "0.png").write_bytes(b"")
    msgs = []
    c = cfg(
        tmp_path / "pool",
        tmp_path / "tgt",
        ["knn", "cluster-min", "domain-classifier"],
        source={"spec": f"folder:{tmp_path / 'pool'}"},
        target={"spec": f"folder:{tmp_path / 'tgt'}"},
        params={"cluster-min": {"k": 2}, "domain-classifier": {"folds": 2, "epochs": 1}},
    )
    path = score(c, tmp_path / "s", log=msgs.append)
    assert len(loads) == 40 + 16 and set(loads.values()) == {1}, loads.most_common(3)
    t = pq.read_table(path)
    bad = t.column("unreadable").to_numpy()
    assert list(t.column("id").to_numpy(zero_copy_only=False)[bad]) == ["c0/3.png"]
    for m in ("knn", "cluster-min", "domain-classifier"):
        s = t.column(m).to_numpy()
        assert np.isnan(s[bad]).all() and np.isfinite(s[~bad]).all()
    assert any("1 unreadable pool image" in m for m in msgs) and any("1 unreadable target image" in m for m in msgs)
    m = run_select(
        build_config(
            SelectConfig,
            values={"scores": str(tmp_path / "s"), "method": "knn", "budget": 39, "include_near_duplicates": True},
        ),
        tmp_path / "sel",
        log=lambda *_: None,
    )
    assert "c0/3.png" not in set(m.ids) and m.n_unique == 39


def test_given_checkpoint_embeds_both_sides_and_trains_nothing(problem, tmp_path):
    """--features RUN: a thresher run (its checkpoint and backbone) embeds source and target; no default model."""
    from thresher.pretrain.run import pretrain
    from thresher.train.config import TrainConfig

    src, tgt = problem
    pretrain(
        build_config(
            TrainConfig,
            values={
                "data": {"spec": f"npz:{src}"},
                "backbone": "small-cnn",
                "resolution": 12,
                "epochs": 1,
                "batch_size": 16,
                "runtime": {"progress": False},
            },
        ),
        tmp_path / "run",
        log=lambda *_: None,
    )
    path = score(
        cfg(src, tgt, ["knn", "cluster-min", "domain-classifier"], features=str(tmp_path / "run"), resolution=12),
        tmp_path / "s",
        log=lambda *_: None,
    )
    cache = [p.name for p in (tmp_path / "s" / "cache").iterdir()]
    assert not any(n.startswith("model-") for n in cache)  # nothing trained
    assert sum(n.startswith("embeddings-") for n in cache) == 2
    report = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert report["reports"]["domain-classifier"]["mode"] == "embedding"
    assert np.isfinite(pq.read_table(path).column("knn").to_numpy()).all()


def test_importance_alone_does_not_embed_the_pool(problem, tmp_path):
    """Importance reads the source model's head on the target only: the pool is never embedded for it."""
    src, tgt = problem
    score(cfg(src, tgt, ["importance"]), tmp_path / "s", log=lambda *_: None)
    names = sorted(p.name.split("-")[0] for p in (tmp_path / "s" / "cache").iterdir())
    assert names == ["embeddings", "head", "head", "model"]  # the source model; the target's embeddings and logits
    (store,) = (tmp_path / "s" / "cache").glob("embeddings-*")
    assert json.loads((store / "meta.json").read_text())["rows"] == 32  # the target's 32 images, not the pool's


def test_given_source_model_replaces_training_one(problem, tmp_path):
    """A study's whole-pool model serves as the scorers' source model: nothing is trained on the source labels."""
    from thresher.pretrain.run import pretrain
    from thresher.train.config import TrainConfig

    src, tgt = problem
    tcfg = {"data": {"spec": f"npz:{src}"}, "backbone": "small-cnn", "resolution": 12, "epochs": 3, "batch_size": 16}
    pretrain(build_config(TrainConfig, values={**tcfg, "runtime": {"progress": False}}), tmp_path / "pool", log=print)
    ckpt = str(tmp_path / "pool" / "checkpoint.pt")
    path = score(cfg(src, tgt, ["importance", "knn"], source_model=ckpt), tmp_path / "s", log=lambda *_: None)
    assert not any(p.name.startswith("model-") for p in (tmp_path / "s" / "cache").iterdir())
    report = json.loads((tmp_path / "s" / "scores.json").read_text())["reports"]
    pool_images = json.loads((tmp_path / "pool" / "summary.json").read_text())["cost"]["images"]
    assert report["importance"]["cost"]["images"] >= pool_images  # the given model's training is its cost
    labels = pq.read_table(path).column("label").to_numpy()
    assert auroc(pq.read_table(path).column("importance").to_numpy(), labels < 2) > 0.9
    # a given model is embedded with its own backbone, whatever the default models' backbone
    other = {"preset": "paper", "backbone": "resnet18", "resolution": 12, "target_epochs": 1}
    score(cfg(src, tgt, ["knn"], source_model=ckpt, models=other), tmp_path / "y", log=lambda *_: None)
    metas = [json.loads(m.read_text()) for m in (tmp_path / "y" / "cache").glob("embeddings-*/meta.json")]
    assert len(metas) == 2 and {m["backbone"] for m in metas} == {"small-cnn"}
    # a model without a head (e.g. self-supervised) cannot be the source classifier
    import torch

    from thresher.models import create_backbone
    from thresher.models.checkpoint import write_checkpoint

    weights = {f"backbone.{k}": v for k, v in create_backbone("small-cnn").state_dict().items()}
    write_checkpoint(tmp_path / "ssl.pt", backbone="small-cnn", model=weights, objective="simclr")
    with pytest.raises(ThresherError, match="supervised thresher checkpoint with its head"):
        score(cfg(src, tgt, ["knn"], source_model=str(tmp_path / "ssl.pt")), tmp_path / "x", log=print)
    assert torch is not None


def test_domain_classifier_on_an_unlabeled_pool_starts_from_the_target_model(problem, tmp_path):
    """000's domain classifier needs no source labels: on a pool without labels its fold CNNs start from the target
    model (which never saw a pool image) instead of failing for want of a source model."""
    src, tgt = problem
    with np.load(src) as z:
        unlabeled = tmp_path / "unlabeled" / "train.npz"
        unlabeled.parent.mkdir()
        np.savez(unlabeled, images=z["images"])  # no labels at all
    path = score(cfg(unlabeled, tgt, ["domain-classifier"]), tmp_path / "s", log=lambda *_: None)
    s = pq.read_table(path).column("domain-classifier").to_numpy()
    with np.load(src) as z:
        relevant = z["labels"] < 2
    assert np.isfinite(s).all() and auroc(s, relevant) > 0.8, auroc(s, relevant)
    rep = json.loads((tmp_path / "s" / "scores.json").read_text())["reports"]["domain-classifier"]
    assert rep["mode"] == "image" and rep["init"] == "target-model"
    names = [p.name for p in (tmp_path / "s" / "cache").iterdir()]
    assert any(n.startswith("model-target-model") for n in names)
    assert not any(n.startswith("model-source-model") for n in names)


def test_evaluate_reuses_the_embeddings_score_made(problem, tmp_path, monkeypatch):
    """One workspace: the source model's embeddings of the target's train split, made by `score`, are read back by
    `evaluate --protocol linear` on that checkpoint and data, not computed again; its cost says they were reused."""
    import thresher.embed as embed_module
    from thresher.evaluate.config import EvalConfig
    from thresher.evaluate.run import evaluate

    src, tgt = problem
    test = pool(tmp_path / "tgt-test" / "test.npz", n_per_class=8, classes=(0, 1), seed=5)
    ws = tmp_path / "workspace"
    score(cfg(src, tgt, ["knn"], cache=str(ws)), tmp_path / "s", log=lambda *_: None)
    (ckpt,) = ws.glob("model-source-model-*/checkpoint.pt")
    embedded = []
    real = embed_module.embed_dataset

    def spy(ds, indices, *args, **kwargs):
        embedded.append((ds.spec, len(indices)))
        return real(ds, indices, *args, **kwargs)

    monkeypatch.setattr(embed_module, "embed_dataset", spy)
    values = {
        "checkpoint": str(ckpt),
        "train": {"spec": f"npz:{tgt}"},
        "test": {"spec": f"npz:{test}"},
        "protocol": "linear",
        "seeds": 1,
        "resolution": 12,
        "cache": str(ws),
        "runtime": {"progress": False},
    }
    doc = evaluate(build_config(EvalConfig, values=values), tmp_path / "e", log=lambda *_: None)
    assert embedded == [(f"npz:{test}", 16)]  # only the test split was embedded; the train split's came from score
    arts = doc["cost"]["evaluation"]["artefacts"]
    assert sorted(a["reused"] for a in arts) == [False, True] and {a["kind"] for a in arts} == {"embeddings"}
    assert doc["cost"]["evaluation"]["reused_artefacts"] == 1 and doc["cost"]["evaluation"]["forward_images"] == 32 + 16
