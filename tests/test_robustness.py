"""Regression tests for the review of the foundation: every bad input or kill position keeps results intact."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from thresher.config import build_config
from thresher.embed import EmbedConfig, embed
from thresher.errors import ThresherError
from thresher.pretrain.run import pretrain
from thresher.runs import RunFolder
from thresher.train.config import TrainConfig

from conftest import make_npz

QUIET = {"progress": False}


def tcfg(spec, **kw):
    values = {
        "data": {"spec": spec},
        "backbone": "small-cnn",
        "resolution": 12,
        "epochs": 2,
        "batch_size": 16,
        "optim": {"lr": 0.05},
        "log_every": 1,
        "runtime": QUIET,
    }
    values.update(kw)
    return build_config(TrainConfig, values=values)


def ecfg(spec, **kw):
    values = {"data": {"spec": spec}, "backbone": "small-cnn", "resolution": 12, "runtime": QUIET}
    values.update(kw)
    return build_config(EmbedConfig, values=values)


class Killed(BaseException):
    pass


def test_kill_after_last_checkpoint_before_summary(tiny_npz, tmp_path, monkeypatch):
    import thresher.train.loop as loop

    def die(*a, **k):
        raise Killed

    monkeypatch.setattr(loop.Trainer, "_finish", die)
    with pytest.raises(Killed):
        pretrain(tcfg(f"npz:{tiny_npz}"), tmp_path / "r", log=lambda *_: None)
    assert not (tmp_path / "r" / "summary.json").exists()
    monkeypatch.undo()
    s = pretrain(tcfg(f"npz:{tiny_npz}"), tmp_path / "r", log=lambda *_: None)
    assert json.loads((tmp_path / "r" / "summary.json").read_text()) == s and len(s["epoch_loss"]) == 2


def test_kill_at_an_epoch_end_resumes_identically(tiny_npz, tmp_path, monkeypatch):
    pretrain(tcfg(f"npz:{tiny_npz}", epochs=3), tmp_path / "full", log=lambda *_: None)
    import thresher.train.loop as loop

    real = loop.Trainer.save

    def save_then_die(self):
        real(self)
        if self.state.step == 4:  # the end of epoch 1 (4 steps per epoch)
            raise Killed

    monkeypatch.setattr(loop.Trainer, "save", save_then_die)
    with pytest.raises(Killed):
        pretrain(tcfg(f"npz:{tiny_npz}", epochs=3), tmp_path / "cut", log=lambda *_: None)
    monkeypatch.undo()
    pretrain(tcfg(f"npz:{tiny_npz}", epochs=3), tmp_path / "cut", log=lambda *_: None)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (tmp_path / "full" / "log.jsonl").read_text() == (tmp_path / "cut" / "log.jsonl").read_text()


def test_a_line_cut_by_the_kill_does_not_break_resume(tiny_npz, tmp_path, monkeypatch):
    import thresher.train.loop as loop

    real = loop.Trainer.save

    def save_then_die(self):
        real(self)
        raise Killed

    monkeypatch.setattr(loop.Trainer, "save", save_then_die)
    with pytest.raises(Killed):
        pretrain(tcfg(f"npz:{tiny_npz}"), tmp_path / "r", log=lambda *_: None)
    with open(tmp_path / "r" / "log.jsonl", "a") as f:
        f.write('{"step": 9, "lo')  # half a line
    monkeypatch.undo()
    s = pretrain(tcfg(f"npz:{tiny_npz}"), tmp_path / "r", log=lambda *_: None)
    assert s["steps"] == 8


def test_invalid_model_never_claims_or_clears_the_folder(tiny_npz, tmp_path):
    out = tmp_path / "e"
    with pytest.raises(ThresherError, match="did you mean"):
        embed(ecfg(f"npz:{tiny_npz}", backbone="resnet81"), out, log=lambda *_: None)
    assert not (out / "config.yaml").exists()
    embed(ecfg(f"npz:{tiny_npz}"), out, log=lambda *_: None)
    before = np.load(out / "shard-00000.npy")
    with pytest.raises(ThresherError, match="did you mean"):
        embed(ecfg(f"npz:{tiny_npz}", backbone="resnet81"), out, force=True, log=lambda *_: None)
    np.testing.assert_array_equal(np.load(out / "shard-00000.npy"), before)  # --force did not wipe anything
    with pytest.raises(ThresherError, match="objective"):
        pretrain(tcfg(f"npz:{tiny_npz}", objective="supervisd"), tmp_path / "p", log=lambda *_: None)
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_folder_with_only_a_config_is_reclaimed(tiny_npz, tmp_path):
    out = tmp_path / "e"
    with RunFolder(out, "embed", ecfg(f"npz:{tiny_npz}", resolution=20)):
        pass  # claimed, nothing computed (e.g. killed at once)
    store = embed(ecfg(f"npz:{tiny_npz}"), out, log=lambda *_: None)
    assert store.meta["resolution"] == 12


def test_force_never_deletes_a_foreign_config_folder(tiny_npz, tmp_path):
    out = tmp_path / "project"
    (out / "src").mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump({"name": "my project"}))
    (out / "src" / "main.py").write_text("print('hi')")
    for force in (False, True):
        with pytest.raises(ThresherError, match="not written by thresher"):
            embed(ecfg(f"npz:{tiny_npz}"), out, force=force, log=lambda *_: None)
    assert (out / "src" / "main.py").read_text() == "print('hi')"


def test_regenerated_data_at_the_same_path_is_not_resumed(tmp_path):
    path = make_npz(tmp_path / "d" / "train.npz", seed=0)
    embed(ecfg(f"npz:{path}"), tmp_path / "e", log=lambda *_: None)
    os.utime(path, ns=(1, 1))  # as if the file had been written again
    with pytest.raises(ThresherError, match="inputs"):
        embed(ecfg(f"npz:{path}"), tmp_path / "e", log=lambda *_: None)


def test_stale_temporaries_of_a_killed_writer_are_removed(tiny_npz, tmp_path):
    out = tmp_path / "e"
    embed(ecfg(f"npz:{tiny_npz}"), out, log=lambda *_: None)
    stale = out / ".checkpoint.pt.tmp-999999999"  # no such process
    live = out / f".other.tmp-{os.getpid()}"
    stale.write_bytes(b"x" * 100)
    live.write_bytes(b"y")
    embed(ecfg(f"npz:{tiny_npz}"), out, log=lambda *_: None)
    assert not stale.exists() and live.exists()


def _folder_with_bad_image(root):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(9):
            Image.fromarray(np.full((12, 12, 3), 10 * i + (100 if c == "b" else 0), np.uint8)).save(
                root / c / f"{i}.png"
            )
    (root / "a" / "3.png").write_bytes(b"broken")


def test_unreadable_image_is_counted_once_over_epochs(tmp_path):
    _folder_with_bad_image(tmp_path / "imgs")
    msgs = []
    s = pretrain(tcfg(f"folder:{tmp_path / 'imgs'}", epochs=3, batch_size=4), tmp_path / "r", log=msgs.append)
    assert s["skipped"] == {"count": 1, "first": ["a/3.png"]}
    assert any("skipped 1 unreadable" in m for m in msgs)


def test_too_few_examples_is_a_clear_error(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ThresherError, match="at least 2 examples"):
        pretrain(tcfg(f"npz:{tmp_path / 'one.npy'}"), tmp_path / "r", log=lambda *_: None)


def test_batch_left_with_one_readable_image_is_skipped(tmp_path):
    root = tmp_path / "imgs" / "a"
    root.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((12, 12, 3), 60 * i, np.uint8)).save(root / f"{i}.png")
    for i in (1, 2, 3):  # one readable image in the only batch
        (root / f"{i}.png").write_bytes(b"")
    s = pretrain(tcfg(f"folder:{tmp_path / 'imgs'}", epochs=2, batch_size=4), tmp_path / "r", log=lambda *_: None)
    assert s["steps"] == 2 and s["cost"]["images"] == 0 and s["skipped"]["count"] == 3


def test_worker_processes_leave_the_global_rng_alone(tmp_path):
    from thresher.data import open_dataset
    from thresher.data.loader import iterate_batches

    _folder_with_bad_image(tmp_path / "imgs")
    ds = open_dataset(f"folder:{tmp_path / 'imgs'}")
    draws = []
    for workers in (0, 1):
        torch.manual_seed(5)
        list(iterate_batches(ds, [np.arange(6), np.arange(6, 12)], 12, num_workers=workers))
        draws.append(torch.rand(3))
    assert torch.equal(draws[0], draws[1])
