"""Issue 9: a long stage killed by SIGKILL at any moment resumes, with the same command, to the uninterrupted result.

Each command runs once uninterrupted (the reference). Then, in a fresh folder, it is started again and again, each
time killed after a seeded random delay measured from the moment it holds the run folder's lock (so kills land in
the work, not in Python's start-up), until it finishes; the finished folder must hold exactly the reference's
result. Episodes repeat until at least ``KILLS`` kills have landed on a working process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from conftest import make_npz

KILLS = 10
pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the run's lock")


def _holds(pid: int, lock: Path) -> bool:
    """Whether process ``pid`` has the run folder's lock file open (it opens it only to take the lock)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(lock):
                return True
        except OSError:
            continue
    return False


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_lock(proc: subprocess.Popen, lock: Path, timeout: float = 120.0) -> float | None:
    """The time the process took the lock, or None if it ended first."""
    t0 = time.monotonic()
    while proc.poll() is None:
        if _holds(proc.pid, lock.resolve()):
            return time.monotonic()
        assert time.monotonic() - t0 < timeout, "the run never took its folder's lock"
        time.sleep(0.01)
    return None


def _reference(cmd: list[str], out: Path) -> float:
    """Run ``cmd`` uninterrupted into ``out``; returns the seconds it worked while holding the lock."""
    proc = _start(cmd + ["--out", str(out)])
    locked = _wait_for_lock(proc, out / ".lock")
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return max(0.5, time.monotonic() - (locked or time.monotonic()))


def _kill_until_done(cmd: list[str], out: Path, work: float, rng: np.random.Generator, kills: int) -> int:
    """Start and kill after a random delay, ``kills`` times, then let a run finish; returns how many kills hit a
    working run. (A run is not killed forever: its last steps, such as the final summary, may take longer than the
    random delays.)"""
    landed = 0
    for _ in range(kills):
        proc = _start(cmd + ["--out", str(out)])
        if _wait_for_lock(proc, out / ".lock") is not None:
            time.sleep(rng.uniform(0.0, 0.35 * work))
        if proc.poll() is not None:  # it finished first
            _, err = proc.communicate()
            assert proc.returncode == 0, err
            return landed
        proc.kill()
        proc.wait()
        landed += 1
    proc = _start(cmd + ["--out", str(out)])
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return landed


def _episodes(cmd: list[str], tmp: Path, same_result, seed: int, kills: int = KILLS) -> int:
    """Kill-and-resume episodes until ``kills`` kills have landed; every finished folder must match the reference."""
    rng = np.random.default_rng(seed)
    work = _reference(cmd, tmp / "reference")
    landed = 0
    for episode in range(8):
        out = tmp / f"killed-{episode}"
        landed += _kill_until_done(cmd, out, work, rng, kills=max(1, kills // 2))
        same_result(tmp / "reference", out)
        if landed >= kills:
            return landed
    raise AssertionError(f"only {landed} kills landed on a working run in 8 episodes")


def _thresher(*args: str) -> list[str]:
    return [sys.executable, "-m", "thresher", *args]


def test_embed_survives_sigkill_anywhere(tmp_path):
    """Embedding store: every shard and the ids equal the uninterrupted run's, bit for bit."""
    data = make_npz(tmp_path / "data" / "train.npz", n=3072, size=32, classes=8)
    cmd = _thresher("embed", f"npz:{data}", "--backbone", "resnet18", "--resolution", "32", "--batch-size", "64",
                    "--shard-size", "128")  # fmt: skip

    def same(ref: Path, out: Path) -> None:
        from thresher.embed import EmbeddingStore

        a, b = EmbeddingStore(ref), EmbeddingStore(out)
        assert a.shape == b.shape
        assert np.array_equal(np.asarray(a[:]), np.asarray(b[:]))
        assert list(a.ids) == list(b.ids)
        assert not list(out.glob("**/.*.tmp-*")), "a temporary file of a killed writer was left behind"

    landed = _episodes(cmd, tmp_path, same, seed=0)
    assert landed >= KILLS


def test_pretrain_survives_sigkill_anywhere(tmp_path):
    """Pre-training: the final weights, the epoch losses and the data schedule equal the uninterrupted run's."""
    data = make_npz(tmp_path / "data" / "train.npz", n=512, size=12)
    cmd = _thresher("pretrain", f"npz:{data}", "--backbone", "small-cnn", "--resolution", "12", "--epochs", "8",
                    "--batch-size", "16", "--lr", "0.05", "--checkpoint-every", "4", "--schedule", "drop-and-pick",
                    "--set", "schedule_params.warmup=2", "--set", "schedule_params.interval=1",
                    "--set", "schedule_params.pick=[6]")  # fmt: skip

    def same(ref: Path, out: Path) -> None:
        a = torch.load(ref / "checkpoint.pt", weights_only=True)
        b = torch.load(out / "checkpoint.pt", weights_only=True)
        assert a["state"]["step"] == b["state"]["step"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        sa, sb = (json.loads((p / "summary.json").read_text()) for p in (ref, out))
        assert sa["epoch_loss"] == sb["epoch_loss"]
        assert sa["schedule"] == sb["schedule"]

    landed = _episodes(cmd, tmp_path, same, seed=1)
    assert landed >= KILLS


def test_clip_pretrain_survives_sigkill_anywhere(tmp_path):
    """Image-text pre-training (issue 21) on a dataset's own captions, AdamW: the final weights, the learnt
    temperature, the vocabulary stored with them and the epoch losses equal the uninterrupted run's."""
    data = make_npz(tmp_path / "data" / "train.npz", n=256, size=12)
    with np.load(data) as f:
        arrays = dict(f)
    words = ["red fish", "grey cat", "brown dog", "blue truck"]
    arrays["captions"] = np.array([f"a {words[c]} number {i % 7}" for i, c in enumerate(arrays["labels"])])
    np.savez(data, **arrays)
    cmd = _thresher("pretrain", f"npz:{data}", "--backbone", "small-cnn", "--objective", "clip", "--resolution", "12",
                    "--epochs", "4", "--batch-size", "16", "--lr", "1e-3", "--checkpoint-every", "4",
                    "--set", "optim.name=adamw", "--set", "objective_params.dim=16",
                    "--set", "objective_params.width=16", "--set", "objective_params.layers=1")  # fmt: skip

    def same(ref: Path, out: Path) -> None:
        a = torch.load(ref / "checkpoint.pt", weights_only=True)
        b = torch.load(out / "checkpoint.pt", weights_only=True)
        assert a["state"]["step"] == b["state"]["step"] and a["model"].keys() == b["model"].keys()
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]) if torch.is_tensor(v) else v == b["model"][k], k
        assert "logit_scale" in a["model"] and a["model"]["_extra_state"]["vocabulary"]
        sa, sb = (json.loads((p / "summary.json").read_text()) for p in (ref, out))
        assert sa["epoch_loss"] == sb["epoch_loss"]

    landed = _episodes(cmd, tmp_path, same, seed=2, kills=4)
    assert landed >= 4


# --- the other long stages: fewer kills each (each run is longer) --------------------------------------------------
OTHER_KILLS = 3


def _without_clock(doc):
    """A JSON document without what depends on the clock (costs hold seconds)."""
    if isinstance(doc, dict):
        return {k: _without_clock(v) for k, v in doc.items() if k not in ("cost", "seconds", "created")}
    if isinstance(doc, list):
        return [_without_clock(v) for v in doc]
    return doc


def _metrics(folder: Path) -> dict:
    return _without_clock(json.loads((folder / "metrics.json").read_text()))


def test_score_survives_sigkill_anywhere(tmp_path):
    """Scoring (pool model, target model, embeddings, three scorers): the same scores.parquet."""
    pool = make_npz(tmp_path / "pool" / "train.npz", n=384, size=12, classes=6)
    target = make_npz(tmp_path / "target" / "train.npz", n=96, size=12, classes=3, seed=1)
    cmd = _thresher("score", "--source", f"npz:{pool}", "--target", f"npz:{target}", "-m", "knn", "-m", "importance",
                    "-m", "cluster-min", "--set", "models.resolution=12", "--set", "models.source_epochs=3",
                    "--set", "models.target_epochs=3", "--set", "models.batch_size=16")  # fmt: skip

    def same(ref: Path, out: Path) -> None:
        a, b = pq.read_table(ref / "scores.parquet"), pq.read_table(out / "scores.parquet")
        assert a.column_names == b.column_names
        for name in a.column_names:
            assert a.column(name).to_pylist() == b.column(name).to_pylist(), name

    assert _episodes(cmd, tmp_path, same, seed=2, kills=OTHER_KILLS) >= OTHER_KILLS


def test_evaluate_survives_sigkill_anywhere(tmp_path):
    """Fine-tuning over seeds: the same metrics and predictions."""
    train = make_npz(tmp_path / "t" / "train.npz", n=256, size=12)
    test = make_npz(tmp_path / "t" / "test.npz", n=128, size=12, seed=1)
    fine = ["--set", "finetune.epochs=4", "--set", "finetune.batch_size=16", "--set", "finetune.lr_grid=[0.05]"]
    cmd = _thresher("evaluate", "--backbone", "small-cnn", "--random-init", "--train", f"npz:{train}", "--test",
                    f"npz:{test}", "--protocol", "finetune", "--seeds", "2", "--resolution", "12", *fine)  # fmt: skip

    def same(ref: Path, out: Path) -> None:
        assert _metrics(ref) == _metrics(out)
        a, b = np.load(ref / "predictions.npz"), np.load(out / "predictions.npz")
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[k], b[k]) for k in a.files)

    assert _episodes(cmd, tmp_path, same, seed=3, kills=OTHER_KILLS) >= OTHER_KILLS


def test_study_survives_sigkill_anywhere(tmp_path):
    """A whole compute-matched study (scoring, selection, pre-training sized by the scoring's recorded cost,
    evaluation of every arm): the same results table, compute and costs included."""
    src = make_npz(tmp_path / "src" / "train.npz", n=192, size=12, classes=4)
    tr = make_npz(tmp_path / "ab" / "train.npz", n=48, size=12, classes=2, seed=1)
    te = make_npz(tmp_path / "ab" / "test.npz", n=32, size=12, classes=2, seed=2)
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"spec": f"npz:{src}"},
        "targets": [{"name": "ab", "train": {"spec": f"npz:{tr}"}, "test": {"spec": f"npz:{te}"}}],
        "methods": ["knn"], "budgets": [0.5], "resolutions": [12], "compute": [0.5],
        "pretrain": {"epochs": 2, "batch_size": 16, "lr": 0.05},
        "score": {"models": {"resolution": 12, "target_epochs": 2, "batch_size": 16, "lr": 0.05}},
        "evaluation": {"protocol": "linear", "seeds": 2}, "runtime": {"progress": False},
    }))  # fmt: skip
    cmd = _thresher("study", str(cfg), "--no-report")

    def same(ref: Path, out: Path) -> None:
        def table(folder: Path) -> list:
            rows = json.loads((folder / "results.json").read_text())["rows"]
            return sorted((str(r["arm"]), str(r["budget"]), str(r["compute"]), r["target"], r["top1"]["mean"],
                           r["cost"]["C"]["total"]) for r in rows)  # fmt: skip

        assert table(ref) == table(out)

    assert _episodes(cmd, tmp_path, same, seed=4, kills=OTHER_KILLS) >= OTHER_KILLS


def test_dense_evaluate_survives_sigkill_anywhere(tmp_path):
    """Issue 20: Mask R-CNN fine-tuning (the RPN's and RoI heads' sampling draw from the restored RNG): the same box
    and mask metrics after any kill."""
    from test_dense_training import squares

    train, test = squares(tmp_path / "d", n=32), squares(tmp_path / "d", n=8, seed=1, split="test")
    fine = ["--set", "finetune.epochs=3", "--set", "finetune.batch_size=8", "--set", "finetune.lr_grid=[0.02]"]
    cmd = _thresher("evaluate", "--backbone", "small-cnn", "--random-init", "--train", train, "--test", test,
                    "--protocol", "instance-segmentation", "--seeds", "1", "--resolution", "32", *fine)  # fmt: skip

    def same(ref: Path, out: Path) -> None:
        assert _metrics(ref) == _metrics(out)

    assert _episodes(cmd, tmp_path, same, seed=5, kills=OTHER_KILLS) >= OTHER_KILLS
