"""The ``clip-score`` scorer (issue 21; DataComp's CLIP-score filter aimed at the target): its scores against a slow
NumPy version of the formula, the pool's images of the target's class ranked first by a clip model that learnt the
class names, unknown class names left out, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from thresher.errors import ThresherError
from thresher.pretrain.objectives.clip import load_clip
from thresher.scoring import SCORERS, Side
from thresher.scoring.base import ScoringContext

from conftest import make_npz

POOL_CLASSES = "n01\tgoldfish, carp\nn02\tcat\nn03\tdog, hound\nn04\ttruck\n"


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory) -> tuple[Path, Path]:
    """A clip model trained on template captions of a four-class colour pool (the zero-shot test's model), and the
    pool."""
    from thresher.config import build_config
    from thresher.pretrain.run import pretrain
    from thresher.train.config import TrainConfig

    root = tmp_path_factory.mktemp("clip-score")
    pool = make_npz(root / "pool" / "train.npz", n=128, size=12, classes=4)
    (pool.parent / "classes.txt").write_text(POOL_CLASSES)
    cfg = build_config(TrainConfig, values={
        "data": {"spec": f"npz:{pool}"}, "backbone": "small-cnn", "objective": "clip", "resolution": 12, "epochs": 12,
        "batch_size": 16, "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05}, "runtime": {"progress": False},
        "objective_params": {"dim": 16, "width": 16, "layers": 1, "heads": 2, "length": 8}})  # fmt: skip
    pretrain(cfg, root / "clip", log=lambda *_: None)
    return root / "clip" / "checkpoint.pt", pool


def _target(tmp_path: Path, names: list[str], n: int = 8) -> Path:
    """A target of ``n`` images whose classes.txt names ``names`` (its images do not matter to clip-score)."""
    path = make_npz(tmp_path / "target" / "train.npz", n=n, size=12, classes=len(names), seed=3)
    (path.parent / "classes.txt").write_text("".join(f"{x}\n" for x in names))
    return path


def _sides(features: np.ndarray, target_names: list[str], ckpt: Path | None) -> tuple[Side, Side]:
    class Named:  # what clip-score reads of the target's dataset: its class names
        classes, descriptions = target_names, None

    ctx = ScoringContext(None, None, None, print, None, ckpt)
    n = len(features)
    src = Side("pool", np.arange(n).astype(str), np.full(n, -1), features=features, context=ctx)
    labels = np.arange(len(target_names))
    tgt = Side("target", labels.astype(str), labels, dataset=Named(), context=ctx)
    return src, tgt


def numpy_clip_score(features: np.ndarray, projection: np.ndarray, prompts: list[np.ndarray]) -> np.ndarray:
    """max_c cos(P x, t_c), t_c = normalised mean of the class's normalised prompt embeddings, row by row."""
    texts = []
    for emb in prompts:
        unit = [e / np.linalg.norm(e) for e in emb]
        mean = sum(unit) / len(unit)
        texts.append(mean / np.linalg.norm(mean))
    out = []
    for x in features:
        z = projection @ x
        z = z / np.linalg.norm(z)
        out.append(max(float(z @ t) for t in texts))
    return np.array(out)


def test_clip_score_equals_the_formula_and_leaves_unknown_class_names_out(clip_run):
    ckpt, _ = clip_run
    rng = np.random.default_rng(0)
    model = load_clip(ckpt, ["cat"])
    features = rng.normal(size=(20, model.image_projection.in_features)).astype(np.float32)
    src, tgt = _sides(features, ["cat", "dog", "zebra"], ckpt)  # zebra: not a word of the pool's classes
    scorer = SCORERS.create("clip-score").fit(src, tgt)
    assert scorer.report()["classes"] == ["cat", "dog"] and scorer.report()["unknown_classes"] == ["zebra"]
    from thresher.text.templates import class_prompts

    with torch.no_grad():
        prompts = [model.embed_text(class_prompts(c, model.templates)).double().numpy() for c in ("cat", "dog")]
    want = numpy_clip_score(features.astype(np.float64), model.image_projection.weight.detach().numpy(), prompts)
    np.testing.assert_allclose(scorer.score(src), want, atol=1e-5)
    assert scorer.own_flops_ == 2.0 * 20 * (features.shape[1] * 16 + 16 * 2)
    kept = SCORERS.create("clip-score", unknown="keep").fit(src, tgt)
    assert kept.report()["classes"] == ["cat", "dog", "zebra"]
    mean = SCORERS.create("clip-score", reduce="mean").fit(src, tgt).score(src)
    assert (mean <= scorer.score(src) + 1e-9).all() and not np.allclose(mean, scorer.score(src))


def test_clip_score_errors_say_what_to_give(clip_run, tmp_path, capsys):
    ckpt, pool = clip_run
    features = np.zeros((4, 64), np.float32)
    with pytest.raises(ThresherError, match="knows none of target's class names"):
        SCORERS.create("clip-score").fit(*_sides(features, ["zebra", "okapi"], ckpt))
    with pytest.raises(ThresherError, match="give --encoder RUN"):
        SCORERS.create("clip-score").fit(*_sides(features, ["cat"], None))
    with pytest.raises(ThresherError, match="give --encoder RUN"):
        SCORERS.create("clip-score").resolve_inputs(features_given=False)
    with pytest.raises(ThresherError, match="reduce is max or mean"):
        SCORERS.create("clip-score", reduce="median").resolve_inputs(features_given=True)
    from thresher.config import build_config
    from thresher.pretrain.run import pretrain
    from thresher.train.config import TrainConfig

    sup = build_config(TrainConfig, values={"data": {"spec": f"npz:{pool}"}, "backbone": "small-cnn", "epochs": 1,
                                            "resolution": 12, "batch_size": 16})  # fmt: skip
    pretrain(sup, tmp_path / "sup", log=lambda *_: None)
    with pytest.raises(ThresherError, match="was trained with objective 'supervised'; give --encoder RUN"):
        SCORERS.create("clip-score").fit(*_sides(features, ["cat"], tmp_path / "sup" / "checkpoint.pt"))
    from conftest import run_cli

    target = _target(tmp_path, ["cat"])
    code, _, err = run_cli(capsys, "score", "--source", f"npz:{pool}", "--target", f"npz:{target}", "-m", "clip-score",
                           "--encoder", tmp_path / "sup", "--out", tmp_path / "s")  # fmt: skip
    assert code == 2 and "was trained with objective 'supervised'" in err
    assert not list((tmp_path / "s").glob("cache/embeddings-*"))  # refused before the pool was embedded


def test_score_with_a_clip_run_ranks_the_pool_s_images_of_the_target_s_class_first(clip_run, tmp_path, capsys):
    """``thresher score --encoder RUN -m clip-score`` against a target named "cat": the pool's cat images (a quarter)
    fill the top of the ranking; without --encoder the run refuses before any work."""
    from conftest import run_cli

    ckpt, pool = clip_run
    target = _target(tmp_path, ["cat"])
    args = ["score", "--source", f"npz:{pool}", "--target", f"npz:{target}", "-m", "clip-score"]
    code, _, err = run_cli(capsys, *args, "--encoder", str(ckpt.parent), "--out", tmp_path / "s")
    assert code == 0, err
    table = pq.read_table(tmp_path / "s" / "scores.parquet")
    scores, labels = table.column("clip-score").to_numpy(), table.column("label").to_numpy()
    top = labels[np.argsort(-scores)[:32]]
    assert (top == 1).mean() >= 0.75, top  # cat is the pool's class 1; chance 0.25
    report = json.loads((tmp_path / "s" / "scores.json").read_text())["reports"]["clip-score"]
    assert report["classes"] == ["cat"] and report["features_from"].startswith("encoder ")
    assert {a["cost"]["kind"] for a in report["artefacts"]} >= {"forward"}
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "s2")
    assert code != 0 and "give --encoder RUN" in err and not (tmp_path / "s2" / "scores.parquet").exists()
