"""End-to-end on the real built-in data: the 'done when' of the foundation issue, with real kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.realdata

POOL = "builtin:tiny-imagenet-32:train"


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _kill_when(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill: {proc.stderr.read()}")
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_embed_pool_resnet18_killed_half_way_resumes_to_same_array(tmp_path):
    out = tmp_path / "E"
    cmd = [
        sys.executable,
        "-m",
        "thresher",
        "embed",
        POOL,
        "--backbone",
        "resnet18",
        "--resolution",
        "32",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(out / ".parts" / "00001.done", proc)  # two of four shards written
    assert not (out / "meta.json").exists()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming, 2 of 4 shards" in done.stdout
    from thresher.data import open_dataset
    from thresher.data.transforms import build_transform
    from thresher.embed import EmbeddingStore
    from thresher.models import build_backbone

    store = EmbeddingStore(out)
    assert store.shape == (30000, 512) and store.dtype == np.float32
    assert len(set(store.ids)) == 30000 and (np.bincount(store.labels) == 150).all()
    # rows written before and after the kill are the backbone's features of those very images
    rows = np.array([0, 5000, 8191, 8192, 16383, 16384, 24000, 29999])
    ds = open_dataset(POOL)
    model = build_backbone("resnet18", None, 0).eval()
    x, _ = ds.load_batch(store.indices[rows], 32)
    with torch.inference_mode():
        ref = model.forward_features(build_transform("eval", 32)(x, None)).numpy()
    np.testing.assert_allclose(store[rows], ref, rtol=1e-4, atol=1e-4)


def test_supervised_training_on_real_pool_learns_and_survives_kill(tmp_path):
    base = [
        sys.executable,
        "-m",
        "thresher",
        "pretrain",
        POOL,
        "--subset",
        "3000",
        "--backbone",
        "small-cnn",
        "--resolution",
        "32",
        "--epochs",
        "4",
        "--batch-size",
        "100",
        "--lr",
        "0.1",
        "--checkpoint-every",
        "10",
    ]
    full = subprocess.run(base + ["--out", str(tmp_path / "full")], env=_env(), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    losses = summary["epoch_loss"]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.1, losses  # it learns on real images
    assert summary["cost"]["images"] == 4 * 3000

    proc = subprocess.Popen(
        base + ["--out", str(tmp_path / "cut")], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _kill_when(tmp_path / "cut" / "checkpoint.pt", proc)
    again = subprocess.run(base + ["--out", str(tmp_path / "cut")], env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resuming at step" in again.stdout
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["epoch_loss"] == losses


def test_quick_demo_runs_on_real_data(tmp_path):
    """The quick demo study end to end on the built-in data, compute-matched (issue 18): every arm on both targets,
    each arm's measured cost within 10% of its compute level (or over budget), the whole pool at the same compute,
    a report, and a resume."""
    from thresher.demo import run_demo

    lines = []
    results = run_demo(tmp_path / "demo", quick=True, echo=lines.append)
    rows = {(r["target"], r["arm"], r["compute"]): r for r in results["rows"]}
    assert len(rows) == 2 * (1 + 2 + 4) and ("fashion-mnist", "domain-classifier", 0.5) in rows
    for t in ("cifar10", "fashion-mnist"):
        assert ("whole pool", 0.5) in {(a, c) for (tt, a, c) in rows if tt == t}  # the competitor at equal compute
    for (_, arm, c), r in rows.items():
        if arm == "no pre-training":
            continue
        # measured: the score run's recorded cost of the method and the pre-training runs' own FLOPs
        total = (r["cost"]["scoring"]["flops"] + r["cost"]["pretraining"]["flops"]) / results["unit"]["flops"]
        assert r["over_budget"] or abs(total - c) <= 0.1 * c, (arm, c, total)
        assert r["over_budget"] or 0 < r["top1"]["mean"] <= 1
    assert (tmp_path / "demo" / "report.html").is_file() and (tmp_path / "demo" / "report.md").is_file()
    assert "compute 0.5 C" in (tmp_path / "demo" / "report.md").read_text()
    ckpts = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("checkpoint.pt")}
    again = []
    run_demo(tmp_path / "demo", quick=True, echo=again.append)  # a second run resumes: nothing is recomputed
    assert len(ckpts) > 10 and {p: p.stat().st_mtime_ns for p in ckpts} == ckpts
    assert any("already complete" in line for line in again)
