"""HPT (001): --init from a base checkpoint, bn-only training (every other weight frozen), manifests as input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from thresher.config import build_config
from thresher.data.manifest import Manifest
from thresher.errors import ThresherError
from thresher.models import build_backbone
from thresher.pretrain.run import pretrain
from thresher.train.config import TrainConfig
from thresher.train.objective import build_objective
from thresher.train.trainable import trainable_parameters

from conftest import make_npz


def cfg(spec, **kw):
    values = {
        "data": {"spec": spec},
        "backbone": "small-cnn",
        "resolution": 12,
        "epochs": 2,
        "batch_size": 16,
        "optim": {"lr": 0.05},
        "runtime": {"progress": False},
    }
    values.update(kw)
    return build_config(TrainConfig, values=values)


def model(path):
    return torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def is_bn_affine(objective: nn.Module, name: str) -> bool:
    module_name, _, leaf = name.rpartition(".")
    return isinstance(objective.get_submodule(module_name), nn.modules.batchnorm._BatchNorm) and leaf in (
        "weight",
        "bias",
    )


def test_trainable_parameters_bn_selects_batch_norm_affine_and_heads():
    obj = build_objective("moco", build_backbone("small-cnn", None, 0), {"queue_size": 8}, num_examples=8)
    params = {id(p) for p in trainable_parameters(obj, "bn")}
    for name, p in obj.named_parameters():
        inside = name.startswith("backbone.")
        expected = is_bn_affine(obj, name) if inside else name.startswith("head.")
        assert (id(p) in params) == expected, name
        assert p.requires_grad == expected, name


@pytest.mark.parametrize("objective", ["supervised", "simclr"])
def test_bn_only_run_leaves_every_other_backbone_weight_unchanged(tiny_npz, tmp_path, objective):
    pretrain(cfg(f"npz:{tiny_npz}", epochs=1), tmp_path / "base", log=lambda *_: None)
    base = model(tmp_path / "base")
    init = str(tmp_path / "base" / "checkpoint.pt")
    pretrain(cfg(f"npz:{tiny_npz}", init=init, train="bn", objective=objective), tmp_path / "bn", log=lambda *_: None)
    after = model(tmp_path / "bn")
    obj = build_objective(objective, build_backbone("small-cnn", None, 0), num_classes=4, num_examples=64)
    moved = frozen = 0
    for name, _ in obj.backbone.named_parameters():
        key = f"backbone.{name}"
        if is_bn_affine(obj, key):
            moved += not torch.equal(after[key], base[key])
        else:
            assert torch.equal(after[key], base[key]), key
            frozen += 1
    assert moved > 0 and frozen > 0


def test_unknown_parameter_set_is_a_clear_error(tiny_npz):
    with pytest.raises(ThresherError, match="trainable-parameter set.*bn"):
        cfg(f"npz:{tiny_npz}", train="batchnorm")


def test_manifest_counts_repeat_examples_and_foreign_ids_are_refused(tiny_npz, tmp_path):
    from thresher.data.spec import open_dataset

    ids = open_dataset(f"npz:{tiny_npz}").ids
    Manifest(
        ids=ids[:10], weights=np.full(10, 0.1), counts=np.array([3] * 10), meta={"source": f"npz:{tiny_npz}"}
    ).write(tmp_path / "m")
    s = pretrain(cfg(f"npz:{tiny_npz}", manifest=str(tmp_path / "m")), tmp_path / "r", log=lambda *_: None)
    assert s["examples"] == 30
    Manifest(ids=np.array(["nope"], object), weights=np.ones(1), counts=np.ones(1, np.int64)).write(tmp_path / "bad")
    with pytest.raises(ThresherError, match="not in the dataset"):
        pretrain(cfg(f"npz:{tiny_npz}", manifest=str(tmp_path / "bad")), tmp_path / "r2", log=lambda *_: None)


def first_stage_images(chain: Path) -> int:
    return json.loads((chain / "01-source" / "summary.json").read_text())["cost"]["images"]


def test_chain_runs_stages_from_the_previous_checkpoint_and_resumes(tiny_npz, tmp_path, capsys):
    import yaml

    from thresher.cli import main

    spec = f"npz:{tiny_npz}"
    chain = {
        "defaults": {"backbone": "small-cnn", "resolution": 12, "batch_size": 16, "epochs": 1, "optim": {"lr": 0.05}},
        "stages": [
            {"name": "source", "data": {"spec": spec}},
            {"name": "target", "data": {"spec": spec}, "objective": "simclr", "train": "bn"},
        ],
    }
    (tmp_path / "chain.yaml").write_text(yaml.safe_dump(chain))
    args = ["pretrain", "--chain", str(tmp_path / "chain.yaml"), "--out", str(tmp_path / "c")]

    def run(argv):
        try:
            main(argv)
        except SystemExit as exc:
            return exc.code or 0
        return 0

    assert run(args) == 0
    first, second = model(tmp_path / "c" / "01-source"), model(tmp_path / "c" / "02-target")
    stage2 = yaml.safe_load((tmp_path / "c" / "02-target" / "config.yaml").read_text())
    assert stage2["config"]["init"] == str(tmp_path / "c" / "01-source" / "checkpoint.pt")
    assert torch.equal(first["backbone.features.0.weight"], second["backbone.features.0.weight"])  # bn-only
    assert (tmp_path / "c" / "chain.json").is_file()
    # the chain folder stands for its last stage's checkpoint, and the evaluation reports the whole chain's cost
    test = f"npz:{make_npz(tmp_path / 'test' / 'test.npz', n=32, seed=3)}"
    ev = ["evaluate", "--checkpoint", str(tmp_path / "c"), "--train", spec, "--test", test, "--protocol", "linear",
          "--resolution", "12", "--seeds", "1", "--out", str(tmp_path / "ev")]  # fmt: skip
    assert run(ev) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    total = json.loads((tmp_path / "c" / "chain.json").read_text())["cost"]
    assert metrics["cost"]["pretraining"]["images"] == total["images"] > first_stage_images(tmp_path / "c")
    capsys.readouterr()
    assert run(args) == 0  # re-running resumes: both stages already complete
    assert capsys.readouterr().out.count("already complete") == 2
    chain["stages"][1]["epoch"] = 2
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(chain))
    assert run(["pretrain", "--chain", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "c2")]) == 2
    err = capsys.readouterr().err
    assert "stage 'target'" in err and "epochs" in err and len(err.strip().splitlines()) == 1
