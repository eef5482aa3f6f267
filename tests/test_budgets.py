"""Issue 18 item 1: a run's length in steps or images, schedules as fractions of it, weights kept at chosen steps
(``RUN@STEP``), and 001's "Base" variant (no step, batch-norm statistics recomputed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_loop import cfg, weights

from thresher.errors import ThresherError
from thresher.models import build_backbone
from thresher.models.checkpoint import read_checkpoint, resolve_checkpoint, training_cost
from thresher.pretrain.run import pretrain
from thresher.train.loop import plan

QUIET = {"log": lambda *_: None}


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_budget_of_whole_epochs_is_the_epoch_run(tiny_npz, tmp_path):
    """64 images in batches of 16: 4 steps an epoch; 12 steps or 192 images are exactly 3 epochs."""
    pretrain(cfg(f"npz:{tiny_npz}", epochs=3), tmp_path / "epochs", **QUIET)
    steps = pretrain(cfg(f"npz:{tiny_npz}", steps=12), tmp_path / "steps", **QUIET)
    pretrain(cfg(f"npz:{tiny_npz}", images=192), tmp_path / "images", **QUIET)
    assert same_weights(weights(tmp_path / "epochs"), weights(tmp_path / "steps"))
    assert same_weights(weights(tmp_path / "epochs"), weights(tmp_path / "images"))
    assert steps["steps"] == 12 and steps["epochs"] == 3.0 and steps["cost"]["images"] == 192


def test_a_budget_ends_mid_epoch_and_the_rate_follows_it(tiny_npz):
    c = cfg(f"npz:{tiny_npz}", steps=6, lr_schedule={"name": "step", "milestone_fractions": [0.5]})
    p = plan(c, 64)
    assert p.steps == [4, 2] and p.epoch_steps == [4, 4] and p.lr_epochs == 1.5 and p.milestones == [0.75]
    assert plan(cfg(f"npz:{tiny_npz}", images=100), 64).steps == [4, 2]  # 100 images: 6 whole batches of 16
    assert plan(cfg(f"npz:{tiny_npz}", steps=0), 64).total_steps == 0
    with pytest.raises(ThresherError, match="steps or images, not both"):
        cfg(f"npz:{tiny_npz}", steps=3, images=48)
    with pytest.raises(ThresherError, match="not both"):
        cfg(f"npz:{tiny_npz}", lr_schedule={"name": "step", "milestones": [1], "milestone_fractions": [0.5]})


def test_warmup_as_a_fraction_of_a_short_run(tiny_npz, tmp_path):
    """A 6-step run with the default one-epoch warm-up would spend 4 of its 6 steps warming up; 10% warms up over
    0.15 epochs, so the rate peaks at the first step."""
    s = pretrain(cfg(f"npz:{tiny_npz}", steps=6, lr_schedule={"name": "constant", "warmup_fraction": 0.1}),
                 tmp_path / "r", **QUIET)  # fmt: skip
    lrs = [r["lr"] for r in map(__import__("json").loads, (tmp_path / "r" / "log.jsonl").read_text().splitlines())
           if "lr" in r]  # fmt: skip
    assert s["steps"] == 6 and lrs == pytest.approx([0.05] * 6)


def test_weights_kept_at_chosen_steps_load_as_run_at_step(tiny_npz, tmp_path):
    run = tmp_path / "r"
    s = pretrain(cfg(f"npz:{tiny_npz}", steps=6, keep_at=[0, 3, 6]), run, **QUIET)
    assert s["kept_at"] == [0, 3, 6]
    at6 = read_checkpoint(resolve_checkpoint(f"{run}@6"))["model"]
    assert same_weights(at6, weights(run))  # the last kept step is the run's end
    at3 = resolve_checkpoint(f"{run}@3")
    assert not same_weights(read_checkpoint(at3)["model"], at6)
    # as an init anywhere a checkpoint is accepted, and with the cost of its first 3 steps (48 images)
    build_backbone("small-cnn", f"{run}@3", 0)
    assert training_cost(f"{run}@3")["images"] == 48
    with pytest.raises(ThresherError, match="kept no weights at step 4 \\(kept: 0, 3, 6\\)"):
        resolve_checkpoint(f"{run}@4")
    with pytest.raises(ThresherError, match="beyond the run's 6 steps"):
        pretrain(cfg(f"npz:{tiny_npz}", steps=6, keep_at=[7]), tmp_path / "x", **QUIET)
    # a resumed run keeps the same weights: kill it after step 3's weights are kept, then resume
    import thresher.train.loop as loop

    real = loop.Trainer.save

    class Killed(BaseException):
        pass

    def die_after_keeping(self, path=None):
        real(self, path)
        if path is not None and path.name == "step-3.pt":
            raise Killed

    loop.Trainer.save = die_after_keeping
    try:
        with pytest.raises(Killed):
            pretrain(cfg(f"npz:{tiny_npz}", steps=6, keep_at=[0, 3, 6]), tmp_path / "cut", **QUIET)
    finally:
        loop.Trainer.save = real
    pretrain(cfg(f"npz:{tiny_npz}", steps=6, keep_at=[0, 3, 6]), tmp_path / "cut", **QUIET)
    for step in (3, 6):
        assert same_weights(read_checkpoint(resolve_checkpoint(f"{tmp_path / 'cut'}@{step}"))["model"],
                            read_checkpoint(resolve_checkpoint(f"{run}@{step}"))["model"])  # fmt: skip


def test_no_step_with_batch_norm_recalibration_is_001s_base(tiny_npz, tmp_path):
    """``steps: 0, recalibrate_bn: true``: every weight is the init's; the batch-norm running statistics are the
    plain average of the training images' batch statistics."""
    pretrain(cfg(f"npz:{tiny_npz}", epochs=1), tmp_path / "base", **QUIET)
    init = str(tmp_path / "base" / "checkpoint.pt")
    s = pretrain(cfg(f"npz:{tiny_npz}", steps=0, recalibrate_bn=True, init=init), tmp_path / "bn", **QUIET)
    assert s["steps"] == 0 and s["recalibrated_bn_images"] == 64 and s["cost"]["flops"] > 0
    before, after = weights(tmp_path / "base"), weights(tmp_path / "bn")
    stats = ("running_mean", "running_var", "num_batches_tracked")
    for k in before:
        if k.startswith("backbone.") and not k.endswith(stats):
            assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["backbone.features.1.running_mean"], after["backbone.features.1.running_mean"])
    # the first batch norm's mean: the mean over all 64 images of the first convolution's output, per channel
    from thresher.data import open_dataset
    from thresher.data.transforms import build_transform

    ds = open_dataset(f"npz:{tiny_npz}")
    x, _ = ds.load_batch(np.arange(64), 12)
    model = build_backbone("small-cnn", init, 0)
    with torch.no_grad():
        conv = model.features[0](build_transform("eval", 12)(x))
    want = conv.mean(dim=(0, 2, 3))
    assert torch.allclose(after["backbone.features.1.running_mean"], want, atol=1e-5)


def test_cli_budget_flags(tiny_npz, tmp_path, capsys):
    from conftest import run_cli

    code, _, err = run_cli(capsys, "pretrain", f"npz:{tiny_npz}", "--backbone", "small-cnn", "--resolution", 12,
                           "--batch-size", 16, "--steps", 5, "--keep-at", "2,5", "--out", tmp_path / "r")  # fmt: skip
    assert code == 0, err
    assert resolve_checkpoint(f"{tmp_path / 'r'}@2").is_file()
    code, _, err = run_cli(capsys, "pretrain", f"npz:{tiny_npz}", "--backbone", "small-cnn", "--resolution", 12,
                           "--steps", 0, "--recalibrate-bn", "--init", f"{tmp_path / 'r'}@2",
                           "--out", tmp_path / "base")  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(capsys, "pretrain", f"npz:{tiny_npz}", "--keep-at", "2,x", "--out", tmp_path / "bad")
    assert code != 0 and "--keep-at takes whole numbers" in err


def test_drop_and_pick_spends_an_image_budget_exactly(tiny_npz, tmp_path):
    """Drop-and-pick (003) takes fewer steps per epoch once it drops examples: under an image budget it runs more
    epochs until the budget is spent, which is how compute-matched arms are matched (images processed)."""
    params = {"warmup": 1, "interval": 1, "keep": 0.5, "pick": [6]}  # sizes 64 64 32 16 8 4, then all again
    s = pretrain(cfg(f"npz:{tiny_npz}", images=256, schedule="drop-and-pick", schedule_params=params),
                 tmp_path / "dp", **QUIET)  # fmt: skip
    full = pretrain(cfg(f"npz:{tiny_npz}", images=256), tmp_path / "full", **QUIET)
    assert full["cost"]["images"] == 256 and full["epochs"] == 4
    assert 256 <= s["cost"]["images"] < 256 + 16 and s["epochs"] > 7  # within one batch; short epochs, more of them
    # a schedule that keeps too little to ever spend the budget says so instead of searching forever
    with pytest.raises(ThresherError, match="spends only"):
        plan(cfg(f"npz:{tiny_npz}", images=4096, schedule="drop-and-pick", schedule_params={**params, "pick": []}), 64)
