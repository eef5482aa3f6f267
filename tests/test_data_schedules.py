"""Data schedules (003 Algorithm 1): drop-and-pick keeps exactly the highest-loss fraction, plans its cost, resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thresher.config import build_config
from thresher.errors import ThresherError
from thresher.pretrain.run import pretrain
from thresher.pretrain.schedules import DropAndPick
from thresher.train.config import TrainConfig
from thresher.train.data_schedule import build_schedule


def reference_dap(n, epochs, W, interval, p, alpha, R, losses_of):
    """Algorithm 1 of 003 transcribed line by line (plus: a pick restarts T_previous, see DropAndPick)."""
    t_start = t_prev = W
    xs = list(range(n))
    history = []
    for tau in range(1, epochs + 1):
        history.append(sorted(xs))
        losses = losses_of(tau)
        if tau > W and tau - t_prev == interval and (alpha is None or tau - t_start < alpha):
            t_prev = tau
            ranked = sorted(xs, key=lambda i: (-losses[i], i))
            xs = ranked[: int(np.ceil(p * len(xs) - 1e-9))]
        if tau in R:
            t_start = t_prev = tau
            xs = list(range(n))
    return history


def run_schedule(s, n, epochs, losses_of):
    seen = []
    for e in range(epochs):
        active = s.active(e)
        seen.append(active.tolist())
        s.record(active, losses_of(e + 1)[active])
        s.end_epoch(e)
    return seen


@pytest.mark.parametrize(
    "W,interval,p,alpha,R,epochs",
    [(2, 1, 0.8, None, [6], 10), (3, 2, 0.9, 4, [8, 12], 16), (0, 1, 0.5, 2, [3], 7), (10, 2, 0.9, 10, [30, 60], 70)],
)
def test_drop_and_pick_matches_algorithm_1(W, interval, p, alpha, R, epochs):
    n = 50
    rng = np.random.default_rng(0)
    table = {tau: rng.normal(size=n) for tau in range(1, epochs + 1)}
    s = DropAndPick(n, epochs, warmup=W, interval=interval, keep=p, active=alpha, pick=R)
    got = run_schedule(s, n, epochs, table.__getitem__)
    assert got == reference_dap(n, epochs, W, interval, p, alpha, R, table.__getitem__)
    assert [len(g) for g in got] == s.planned_sizes()


def test_keeps_exactly_the_highest_loss_fraction_and_computation_formula():
    n, epochs = 100, 10
    s = DropAndPick(n, epochs, warmup=2, interval=1, keep=0.8, pick=[6])
    loss_is_position = lambda tau: np.arange(n, dtype=float)  # noqa: E731
    seen = run_schedule(s, n, epochs, loss_is_position)
    assert seen[3] == list(range(20, 100))  # the first drop (after epoch 3 > W): the 80 highest losses
    assert seen[4] == list(range(36, 100))  # 0.8 of 80 = 64
    sizes = [100, 100, 100, 80, 64, 52, 100, 80, 64, 52]  # all picked back after epoch 6; ceil(0.8 * size)
    assert [len(x) for x in seen] == sizes == s.planned_sizes()
    assert s.computation() == pytest.approx(sum(sizes) / (n * epochs))


def test_never_measured_examples_are_kept_and_ties_are_deterministic():
    s = DropAndPick(10, 4, warmup=0, interval=1, keep=0.5, pick=[])
    s.record(np.arange(5), np.zeros(5))  # examples 5..9 were never measured (e.g. a dropped partial batch)
    s.end_epoch(0)
    assert s.active(1).tolist() == [5, 6, 7, 8, 9]


def test_defaults_scale_003s_cifar_setting_to_the_run():
    s = DropAndPick(1000, 30)  # cosine: pick at the middle
    assert (s.pick, s.warmup, s.interval, s.keep, s.active_epochs) == ([15], 4, 1, 0.9, None)
    s = DropAndPick(1000, 300, decay_epochs=[150, 225])  # 003's CIFAR: W=40, I=10, R={150}
    assert (s.pick, s.warmup, s.interval) == ([150], 40, 10)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    table = {tau: rng.normal(size=40) for tau in range(1, 13)}
    a = DropAndPick(40, 12, warmup=1, interval=2, keep=0.7, pick=[7])
    run_schedule(a, 40, 5, table.__getitem__)
    b = DropAndPick(40, 12, warmup=1, interval=2, keep=0.7, pick=[7])
    b.load_state_dict({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in a.state_dict().items()})
    for e in range(5, 12):
        assert a.active(e).tolist() == b.active(e).tolist()
        for s in (a, b):
            s.record(s.active(e), table[e + 1][s.active(e)])
            s.end_epoch(e)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ThresherError, match="keep must be in"):
        build_schedule("drop-and-pick", {"keep": 1.5}, num_examples=10, epochs=3)
    with pytest.raises(ThresherError, match="no parameter kep.*accepts: .*keep"):
        build_schedule("drop-and-pick", {"kep": 0.5}, num_examples=10, epochs=3)
    with pytest.raises(ThresherError, match="schedule_params.*no parameter kep|no parameter kep"):
        build_config(
            TrainConfig, values={"data": {"spec": "x"}, "schedule": "drop-and-pick", "schedule_params": {"kep": 1}}
        )
    with pytest.raises(ThresherError, match="drop-and-pik"):
        build_config(TrainConfig, values={"data": {"spec": "x"}, "schedule": "drop-and-pik"})


# --- in the loop ---------------------------------------------------------------------------------------------------
def cfg(spec, **kw):
    values = {
        "data": {"spec": spec},
        "backbone": "small-cnn",
        "resolution": 12,
        "epochs": 6,
        "batch_size": 8,
        "optim": {"lr": 0.05},
        "schedule": "drop-and-pick",
        "schedule_params": {"warmup": 1, "interval": 1, "keep": 0.75, "pick": [4]},
        "checkpoint_every": 3,
        "log_every": 1,
        "runtime": {"progress": False},
    }
    values.update(kw)
    return build_config(TrainConfig, values=values)


def test_loop_follows_the_schedule_and_reports_computation(tiny_npz, tmp_path):
    s = pretrain(cfg(f"npz:{tiny_npz}"), tmp_path / "r", log=lambda *_: None)
    sizes = [64, 64, 48, 36, 64, 48]  # warm-up 1: drops after epochs 2, 3; pick after 4; drop after 5
    assert s["schedule"]["examples_per_epoch"] == sizes
    log = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [r["examples"] for r in log if r.get("epoch_end")] == sizes
    assert s["steps"] == sum(n // 8 for n in sizes)
    assert s["cost"]["images"] == 8 * s["steps"]
    assert s["cost"]["computation"] == pytest.approx(8 * s["steps"] / (6 * 64))
    assert s["cost"]["peak_memory_bytes"] > 0


class Killed(BaseException):
    pass


@pytest.mark.parametrize("objective", ["supervised", "moco"])
def test_killed_drop_and_pick_run_resumes_to_identical_weights(tiny_npz, tmp_path, monkeypatch, objective):
    kw = {"objective": objective, "objective_params": {"queue_size": 32} if objective == "moco" else {}}
    pretrain(cfg(f"npz:{tiny_npz}", **kw), tmp_path / "full", log=lambda *_: None)
    import thresher.train.loop as loop

    real = loop.Trainer.save
    saves = {"n": 0}

    def save_then_die(self):
        real(self)
        saves["n"] += 1
        if saves["n"] == 5:  # in epoch 3, after the first drop
            raise Killed

    monkeypatch.setattr(loop.Trainer, "save", save_then_die)
    with pytest.raises(Killed):
        pretrain(cfg(f"npz:{tiny_npz}", **kw), tmp_path / "cut", log=lambda *_: None)
    monkeypatch.setattr(loop.Trainer, "save", real)
    pretrain(cfg(f"npz:{tiny_npz}", **kw), tmp_path / "cut", log=lambda *_: None)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", map_location="cpu", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["data_schedule"]["active"], b["data_schedule"]["active"])


def test_random_drop_spends_the_same_computation_without_mining():
    """003 Table 2f's control: drop-and-pick's sizes, but a seeded random draw instead of the hardest examples."""
    settings = {"warmup": 1, "interval": 1, "keep": 0.8, "pick": [4]}
    dap = build_schedule("drop-and-pick", settings, num_examples=100, epochs=6, seed=0)
    rnd = build_schedule("random-drop", settings, num_examples=100, epochs=6, seed=0)
    assert rnd.planned_sizes() == dap.planned_sizes()
    loss = np.arange(100, dtype=float)
    got_dap, got_rnd = run_schedule(dap, 100, 6, lambda tau: loss), run_schedule(rnd, 100, 6, lambda tau: loss)
    assert [len(x) for x in got_rnd] == [len(x) for x in got_dap]
    assert got_dap[2] == list(range(20, 100)) and got_rnd[2] != got_dap[2]  # not the top-loss 80
    assert set(got_rnd[3]) <= set(got_rnd[2])  # drawn from the current set
    again = run_schedule(build_schedule("random-drop", settings, num_examples=100, epochs=6, seed=0), 100, 6,
                         lambda tau: loss)  # fmt: skip
    other = run_schedule(build_schedule("random-drop", settings, num_examples=100, epochs=6, seed=1), 100, 6,
                         lambda tau: loss)  # fmt: skip
    assert again == got_rnd and other != got_rnd
