"""Each pre-training objective on real images (a tiny-imagenet-32 subset) lowers its loss; drop-and-pick saves work."""

from __future__ import annotations

import pytest

from thresher.config import build_config
from thresher.pretrain.run import pretrain
from thresher.train.config import TrainConfig

pytestmark = pytest.mark.realdata


def cfg(**kw):
    values = {
        "data": {"spec": "builtin:tiny-imagenet-32:train", "subset": 2048},
        "backbone": "small-cnn",
        "resolution": 32,
        "epochs": 4,
        "batch_size": 128,
        "optim": {"lr": 0.1},
        "log_every": 4,
        "runtime": {"progress": False},
    }
    values.update(kw)
    return build_config(TrainConfig, values=values)


@pytest.mark.parametrize(
    "objective,params",
    [("supervised", {}), ("moco", {"queue_size": 4096}), ("simclr", {}), ("byol", {"hidden": 512, "dim": 128})],
)
def test_each_objective_lowers_its_loss_on_real_images(tmp_path, objective, params):
    s = pretrain(cfg(objective=objective, objective_params=params), tmp_path / objective, log=print)
    losses = s["epoch_loss"]
    print(objective, "loss per epoch", losses)
    assert losses[-1] < losses[0], losses
    assert s["cost"]["flops"] > 0 and s["cost"]["images"] == 4 * 2048


def test_drop_and_pick_on_real_images_processes_less(tmp_path):
    params = {"warmup": 1, "interval": 1, "keep": 0.7, "pick": [3]}
    s = pretrain(cfg(schedule="drop-and-pick", schedule_params=params), tmp_path / "dap", log=print)
    assert s["schedule"]["examples_per_epoch"] == [2048, 2048, 1434, 2048]
    assert s["cost"]["computation"] < 0.95 and s["epoch_loss"][-1] < s["epoch_loss"][0]


def test_pretrained_backbone_beats_random_init_under_the_linear_protocol(tmp_path, pool_backbone):
    """Issue 5's realdata check: brief supervised pre-training on the pool (the session's shared backbone) vs random
    weights, cifar10 linear probe."""
    from thresher.evaluate.config import EvalConfig
    from thresher.evaluate.run import evaluate

    common = {
        "train": {"spec": "builtin:cifar10:train"},
        "test": {"spec": "builtin:cifar10:test"},
        "seeds": 1,
        "runtime": {"progress": False},
    }
    ev = {}
    for name, model in (
        ("pretrained", {"checkpoint": str(pool_backbone)}),
        ("random", {"backbone": "small-cnn", "random_init": True}),
    ):
        doc = evaluate(build_config(EvalConfig, values={**common, **model}), tmp_path / name, log=print)
        ev[name] = doc["summary"]["top1"]["mean"]
    print("cifar10 linear-probe top-1:", ev)
    assert ev["pretrained"] > ev["random"] + 0.02, ev
