"""Issue 9, untrusted files: a config, a run folder or a checkpoint from someone else never runs code.

Each payload, if it were loaded unsafely, would create a marker file (YAML ``!!python`` tags) or call a recording
function (test_models' ``Payload``, whose ``__reduce__`` records a call). Every case goes through the command line,
fails with one clear line and leaves no marker.
"""

from __future__ import annotations

import pytest
import torch
from test_models import UNPICKLED as CALLS  # what test_models' Payload records when unpickled
from test_models import Payload

from thresher.cli import main
from thresher.models import create_backbone

from conftest import make_npz


def run(capsys, *args) -> tuple[int, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_calls():
    CALLS.clear()
    yield
    assert CALLS == [], "a pickle payload was executed"


def _yaml_payload(marker) -> str:
    return f"!!python/object/apply:os.system ['touch {marker}']\n"


def test_config_file_with_python_tag_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"backbone: small-cnn\nseed: {_yaml_payload(marker)}")
    data = make_npz(tmp_path / "d" / "train.npz")
    code, err = run(capsys, "embed", f"npz:{data}", "--config", cfg, "--out", tmp_path / "e")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert str(cfg) in err
    assert not marker.exists() and not (tmp_path / "e").exists()


def test_set_value_with_python_tag_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    data = make_npz(tmp_path / "d" / "train.npz")
    code, err = run(capsys, "embed", f"npz:{data}", "--out", tmp_path / "e", "--set",
                    f"seed=!!python/object/apply:os.system ['touch {marker}']")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "seed" in err
    assert not marker.exists()


def test_run_folder_config_with_python_tag_is_refused(tmp_path, capsys):
    """A run folder planted with a malicious config.yaml is not loaded unsafely, and it is not overwritten."""
    marker = tmp_path / "pwned"
    out = tmp_path / "e"
    out.mkdir()
    planted = f"thresher: {_yaml_payload(marker)}"
    (out / "config.yaml").write_text(planted)
    (out / "results.txt").write_text("earlier results")
    data = make_npz(tmp_path / "d" / "train.npz")
    code, err = run(capsys, "embed", f"npz:{data}", "--backbone", "small-cnn", "--resolution", "12", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "config.yaml" in err
    assert not marker.exists()
    assert (out / "config.yaml").read_text() == planted and (out / "results.txt").read_text() == "earlier results"


def _evil_checkpoint(path):
    torch.save({"state_dict": create_backbone("small-cnn").state_dict(), "args": Payload()}, path)
    return path


def test_pickle_checkpoint_for_embedding_is_refused(tmp_path, capsys):
    ckpt = _evil_checkpoint(tmp_path / "evil.pt")
    data = make_npz(tmp_path / "d" / "train.npz")
    code, err = run(capsys, "embed", f"npz:{data}", "--backbone", "small-cnn", "--resolution", "12",
                    "--checkpoint", ckpt, "--out", tmp_path / "e")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "re-save" in err


def test_pickle_checkpoint_for_evaluation_is_refused(tmp_path, capsys):
    ckpt = _evil_checkpoint(tmp_path / "evil.pt")
    train = make_npz(tmp_path / "t" / "train.npz")
    test = make_npz(tmp_path / "t" / "test.npz", seed=1)
    code, err = run(capsys, "evaluate", "--checkpoint", ckpt, "--backbone", "small-cnn", "--train", f"npz:{train}",
                    "--test", f"npz:{test}", "--out", tmp_path / "ev")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_pickle_checkpoint_planted_in_a_run_folder_is_not_resumed_from(tmp_path, capsys):
    """``pretrain`` resumes from its folder's checkpoint.pt: a planted pickle is refused, never unpickled."""
    data = make_npz(tmp_path / "d" / "train.npz")
    args = ["pretrain", f"npz:{data}", "--backbone", "small-cnn", "--resolution", "12", "--epochs", "2",
            "--batch-size", "16", "--out", tmp_path / "p"]  # fmt: skip
    code, err = run(capsys, *args)
    assert code == 0, err
    torch.save({"model": {}, "state": Payload()}, tmp_path / "p" / "checkpoint.pt")
    (tmp_path / "p" / "summary.json").unlink()  # looks unfinished: the next run would resume from the checkpoint
    code, err = run(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and "checkpoint.pt" in err
