"""The one training loop: learns, resumes to identical weights, counts cost, stops cleanly on NaN."""

from __future__ import annotations

import json

import pytest
import torch

from thresher.config import build_config
from thresher.errors import ThresherError
from thresher.pretrain.run import pretrain
from thresher.train.config import TrainConfig


def cfg(spec, **kw):
    values = {
        "data": {"spec": spec},
        "backbone": "small-cnn",
        "resolution": 12,
        "epochs": 3,
        "batch_size": 16,
        "optim": {"lr": 0.05},
        "checkpoint_every": 2,
        "log_every": 1,
        "runtime": {"progress": False},
    }
    values.update(kw)
    return build_config(TrainConfig, values=values)


def weights(path):
    return torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def test_learns_and_counts_cost(tiny_npz, tmp_path):
    s = pretrain(cfg(f"npz:{tiny_npz}", epochs=6), tmp_path / "r", log=lambda *_: None)
    assert s["steps"] == 6 * 4
    assert s["epoch_loss"][-1] < s["epoch_loss"][0] * 0.8
    assert s["cost"]["images"] == 6 * 64 and s["cost"]["flops_per_image"] > 0 and s["cost"]["seconds"] > 0
    assert (tmp_path / "r" / "summary.json").is_file() and (tmp_path / "r" / "config.yaml").is_file()
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck["state"]["done"] and ck["format"] == "thresher-checkpoint"


class Killed(BaseException):
    pass


def test_resume_mid_epoch_gives_identical_weights_and_log(tiny_npz, tmp_path, monkeypatch):
    pretrain(cfg(f"npz:{tiny_npz}"), tmp_path / "full", log=lambda *_: None)
    import thresher.train.loop as loop

    real = loop.Trainer.save
    state = {"saves": 0}

    def save_then_die(self):
        real(self)
        state["saves"] += 1
        if state["saves"] == 3:  # step 6 of 12: mid-epoch 2
            raise Killed

    monkeypatch.setattr(loop.Trainer, "save", save_then_die)
    with pytest.raises(Killed):
        pretrain(cfg(f"npz:{tiny_npz}"), tmp_path / "cut", log=lambda *_: None)
    # lines written after the last checkpoint must not survive the resume
    with open(tmp_path / "cut" / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 7, "loss": 123.0}) + "\n")
    monkeypatch.setattr(loop.Trainer, "save", real)
    messages = []
    pretrain(cfg(f"npz:{tiny_npz}"), tmp_path / "cut", log=messages.append)
    assert any("resuming at step 6 of 12" in m for m in messages), messages
    a, b = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "full" / "log.jsonl").read_text().count("\n") == (
        tmp_path / "cut" / "log.jsonl"
    ).read_text().count("\n")
    full_losses = [json.loads(x)["loss"] for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    cut_losses = [json.loads(x)["loss"] for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert full_losses == cut_losses
    done = []
    pretrain(cfg(f"npz:{tiny_npz}"), tmp_path / "cut", log=done.append)
    assert any("already complete" in m for m in done)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_npz, tmp_path):
    with pytest.raises(ThresherError, match=r"(loss became (nan|inf)|weights became non-finite).*last good checkpoint"):
        pretrain(cfg(f"npz:{tiny_npz}", optim={"lr": 1e12}, checkpoint_every=1), tmp_path / "r", log=lambda *_: None)
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_unlabeled_data_refused_for_supervised(tmp_path):
    import numpy as np

    np.save(tmp_path / "imgs.npy", np.zeros((8, 8, 8, 3), np.uint8))
    with pytest.raises(ThresherError, match="needs labels"):
        pretrain(cfg(f"npz:{tmp_path / 'imgs.npy'}"), tmp_path / "r", log=lambda *_: None)


def test_init_from_checkpoint_is_used(tiny_npz, tmp_path):
    pretrain(cfg(f"npz:{tiny_npz}", epochs=1), tmp_path / "a", log=lambda *_: None)
    s = pretrain(
        cfg(f"npz:{tiny_npz}", epochs=1, init=str(tmp_path / "a" / "checkpoint.pt")),
        tmp_path / "b",
        log=lambda *_: None,
    )
    s0 = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["epoch_loss"][0] < s0["epoch_loss"][0]  # starting from trained weights helps at once
