"""The command line: data list/info, embed, pretrain; one-line errors with exit code 2; --debug tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from thresher.cli import main

from conftest import make_npz


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_data_info_and_sheet(tiny_npz, tmp_path, capsys):
    code, out, err = run(capsys, "data", "info", f"npz:{tiny_npz}", "--sheet", str(tmp_path / "s.png"))
    assert code == 0, err
    assert "images    64" in out and "classes   4" in out and "12x12x3 (64)" in out and "class3" in out
    from PIL import Image

    with Image.open(tmp_path / "s.png") as im:
        assert im.size[0] == 8 * 64 and im.size[1] > 64


def test_data_list(capsys):
    code, out, _ = run(capsys, "data", "list")
    assert code == 0 and "builtin:tiny-imagenet-32" in out and "folder:" in out and "wds:" in out


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    code, out, err = run(capsys, "data", "info", "npz:" + str(tmp_path / "missing.npz"))
    assert code == 2 and err.strip().count("\n") == 0 and "does not exist" in err and "Traceback" not in err
    code, _, err = run(capsys, "embed", "npz:x.npz", "--out", str(tmp_path / "o"), "--set", "resoluton=3")
    assert code == 2 and "did you mean 'resolution'" in err
    assert not (tmp_path / "o").exists()  # nothing written for a config error


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "thresher", "--debug", "data", "info", "npz:/nonexistent.npz"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_embed_cli_then_refuse_then_force(tiny_npz, tmp_path, capsys):
    out = tmp_path / "e"
    args = ["embed", f"npz:{tiny_npz}", "--backbone", "small-cnn", "--resolution", "16", "--out", str(out)]
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    assert "64 x" in stdout and (out / "config.yaml").is_file()
    code, _, err = run(capsys, *args[:-2], "--resolution", "20", "--out", str(out))
    assert code == 2 and "--force" in err
    code, _, err = run(capsys, *args, "--force", "--set", "dtype=float16")
    assert code == 0, err


def test_config_file_and_pretrain_cli(tiny_npz, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data: {{spec: 'npz:{tiny_npz}'}}\nbackbone: small-cnn\nresolution: 12\nepochs: 2\nbatch_size: 16\n"
    )
    code, out, err = run(capsys, "pretrain", "--config", str(cfg), "--out", str(tmp_path / "p"), "--lr", "0.05")
    assert code == 0, err
    assert "8 steps" in out
    # an embed with the run folder as checkpoint
    code, out, err = run(
        capsys,
        "embed",
        f"npz:{tiny_npz}",
        "--backbone",
        "small-cnn",
        "--checkpoint",
        str(tmp_path / "p"),
        "--resolution",
        "12",
        "--out",
        str(tmp_path / "e"),
    )
    assert code == 0, err


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "process ended early"
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.05)


def test_pretrain_survives_sigkill(tmp_path):
    """A real SIGKILL mid-run; re-running the command finishes with the weights of an uninterrupted run."""
    data = make_npz(tmp_path / "d" / "train.npz", n=256, size=12)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [
        sys.executable,
        "-m",
        "thresher",
        "pretrain",
        f"npz:{data}",
        "--backbone",
        "small-cnn",
        "--resolution",
        "12",
        "--epochs",
        "10",
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--checkpoint-every",
        "3",
    ]
    subprocess.run(base + ["--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        base + ["--out", str(tmp_path / "cut")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(tmp_path / "cut" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]["step"]
    assert 0 < step < 160, "kill landed outside the run"
    done = subprocess.run(base + ["--out", str(tmp_path / "cut")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {step}" in done.stdout
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.realdata
def test_real_data_info_cli(capsys):
    code, out, err = run(capsys, "data", "info", "builtin:tiny-imagenet-32:train")
    assert code == 0, err
    assert "images    30000" in out and "classes   200" in out and "per class min 150, max 150" in out


def test_models_list(capsys):
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "small-cnn" in out and "feature_dim   512" in out and "timm:<name>" in out


def test_usage_errors_exit_2_without_traceback(tmp_path):
    for args in (
        ["embed", "npz:x.npz"],
        ["embed", "npz:x.npz", "--out", str(tmp_path / "o"), "--resolution", "abc"],
        ["nosuchcommand"],
    ):
        proc = subprocess.run([sys.executable, "-m", "thresher", *args], capture_output=True, text=True)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
