"""torchrun with 2 CPU processes (gloo) end to end through the CLI: same result as one process, rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ENTRY = str(Path(__file__).with_name("ddp_entry.py"))


def cli(args: list[str], procs: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
    cmd = (launcher if procs > 1 else [sys.executable]) + [ENTRY, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def pretrain_args(spec: str, out: Path, *extra: str) -> list[str]:
    return [
        "pretrain", spec, "--out", str(out), "--resolution", "12", "--epochs", "4", "--batch-size", "16",
        "--lr", "0.05", "--set", "runtime.progress=false", "--set", "checkpoint_every=3", *extra,
    ]  # fmt: skip


def checkpoint(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)


def test_two_processes_match_one_process(tiny_npz, tmp_path):
    """Without batch norm and random augmentation, DDP over 2 ranks equals one process up to float rounding,
    drop-and-pick schedule included (its per-sample losses are summed over the ranks)."""
    extra = [
        "--backbone", "test-nonorm-cnn", "--set", "transform=eval", "--schedule", "drop-and-pick",
        "--set", "schedule_params.warmup=1", "--set", "schedule_params.interval=1",
        "--set", "schedule_params.keep=0.75",
    ]  # fmt: skip
    one = cli(pretrain_args(f"npz:{tiny_npz}", tmp_path / "one", *extra), 1)
    assert one.returncode == 0, one.stderr
    two = cli(pretrain_args(f"npz:{tiny_npz}", tmp_path / "two", *extra), 2)
    assert two.returncode == 0, two.stderr
    a, b = checkpoint(tmp_path / "one"), checkpoint(tmp_path / "two")
    assert torch.equal(a["data_schedule"]["active"], b["data_schedule"]["active"])
    assert a["state"]["step"] == b["state"]["step"] and a["state"]["images"] == b["state"]["images"]
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-4, atol=1e-5)
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert sa["schedule"] == sb["schedule"]
    for x, y in zip(sa["epoch_loss"], sb["epoch_loss"], strict=True):
        assert y == pytest.approx(x, rel=1e-4)


def test_moco_under_torchrun_writes_once_and_resumes(tiny_npz, tmp_path):
    args = pretrain_args(
        f"npz:{tiny_npz}", tmp_path / "m", "--objective", "moco", "--set", "objective_params.queue_size=32"
    )
    run = cli(args, 2)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("steps, loss per epoch") == 1  # rank 0 reports
    s = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert s["steps"] == 16 and all(v == v for v in s["epoch_loss"])
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if not p.name.startswith(".")) == [
        "checkpoint.pt", "config.yaml", "log.jsonl", "summary.json",
    ]  # fmt: skip
    again = cli(args, 2)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr
    refused = cli([*args[:-2], "--set", "objective_params.queue_size=16"], 2)  # another config, same folder
    assert refused.returncode != 0 and "use another --out, or pass --force" in refused.stderr  # on every rank
    assert checkpoint(tmp_path / "m")["state"]["done"]  # the earlier results are untouched
