"""Backbones (registry, shapes, torchvision/timm key compatibility) and checkpoint loading (formats, safety, errors)."""

from __future__ import annotations

import sys

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from thresher.errors import ThresherError
from thresher.models import BACKBONES, LoadReport, backbone_names, create_backbone, load_backbone_weights

FIXED_NAMES = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet18-small",
    "resnet34-small",
    "resnet50-small",
    "resnet20",
    "resnet32",
    "small-cnn",
    "small-cnn-half",
]


def seeded(name: str, seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_backbone(name, **kwargs)


def clone_sd(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    sd = model.state_dict()
    assert set(sd) == set(expected)
    for k, v in sd.items():
        assert torch.equal(v, expected[k]), k


def assert_differs(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    sd = model.state_dict()
    assert any(not torch.equal(sd[k], expected[k]) for k in sd if k.endswith("weight"))


# ----------------------------------------------------------------------------------------------------------
# backbones


def test_names_cover_every_backbone():
    names = backbone_names()
    assert set(FIXED_NAMES) <= set(names)
    assert "timm:<name>" in names
    assert set(BACKBONES) == set(FIXED_NAMES)


@pytest.mark.parametrize("name", FIXED_NAMES)
def test_backbone_builds_and_pools(name):
    model = seeded(name, 0).eval()
    assert isinstance(model.feature_dim, int)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model(x)
    assert feats.shape == (2, model.feature_dim)
    assert torch.equal(feats, out)
    assert torch.isfinite(feats).all()


def test_backbone_trains_one_step_in_train_mode():
    model = seeded("small-cnn", 0).train()
    loss = model(torch.randn(4, 3, 32, 32)).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet18-small", "resnet20", "small-cnn"])
def test_construction_is_deterministic(name):
    a, b, c = seeded(name, 3), seeded(name, 3), seeded(name, 4)
    assert_same_weights(b, clone_sd(a))
    assert_differs(c, clone_sd(a))


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_torchvision_keys_and_shapes_match_exactly(depth):
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    expected = {k: tuple(v.shape) for k, v in tv.items() if not k.startswith("fc.")}
    ours = create_backbone(f"resnet{depth}")
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert ours.feature_dim == tv["fc.weight"].shape[1]
    small = create_backbone(f"resnet{depth}-small").state_dict()
    assert set(small) == set(expected)  # same names; only conv1's kernel differs
    assert small["conv1.weight"].shape == (64, 3, 3, 3)


def test_small_stem_keeps_resolution_and_imagenet_stem_is_unchanged():
    small, big = create_backbone("resnet18-small"), create_backbone("resnet18")
    assert small.conv1.stride == (1, 1) and isinstance(small.maxpool, nn.Identity)
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)


def test_cifar_resnets_match_the_paper():
    r20, r32 = create_backbone("resnet20"), create_backbone("resnet32")
    n20 = sum(p.numel() for p in r20.parameters())
    n32 = sum(p.numel() for p in r32.parameters())
    assert 0.26e6 < n20 < 0.28e6 and 0.45e6 < n32 < 0.47e6  # He et al.: 0.27M and 0.46M
    assert r20.feature_dim == r32.feature_dim == 64
    convs = [m for m in r20.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and all(c.kernel_size == (3, 3) for c in convs)  # option A: no 1x1 projections


def test_small_cnn_is_a_small_real_cnn():
    model = create_backbone("small-cnn")
    kinds = {type(m) for m in model.modules()}
    assert {nn.Conv2d, nn.BatchNorm2d, nn.ReLU} <= kinds
    assert 128 <= model.feature_dim <= 256
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in create_backbone("resnet32").parameters())


def test_in_chans_option():
    for name in ["resnet18", "resnet18-small", "resnet20", "small-cnn"]:
        model = create_backbone(name, in_chans=1).eval()
        with torch.no_grad():
            assert model(torch.randn(2, 1, 32, 32)).shape == (2, model.feature_dim)


def test_unknown_backbone_suggests_nearest_name():
    with pytest.raises(ThresherError, match="did you mean 'resnet18'"):
        create_backbone("resnet-18")
    with pytest.raises(ThresherError, match="did you mean 'small-cnn'"):
        create_backbone("smallcnn")


def test_unknown_option_is_a_thresher_error():
    with pytest.raises(ThresherError, match="does not accept option"):
        create_backbone("resnet20", width=2)


def test_timm_backbone():
    timm = pytest.importorskip("timm")
    model = seeded("timm:resnet18", 0).eval()
    assert isinstance(model, timm.models.ResNet)
    assert model.feature_dim == 512
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        assert model.forward_features(x).shape == (2, 512)
        assert torch.equal(model(x), model.forward_features(x))
    reference = timm.create_model("resnet18", pretrained=False).state_dict()
    assert set(model.state_dict()) == {k for k in reference if not k.startswith("fc.")}


def test_timm_feature_dim_is_the_pooled_output_size():
    pytest.importorskip("timm")
    model = create_backbone("timm:mobilenetv3_small_050").eval()  # num_features != pre-logits width here
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, model.feature_dim)


def test_timm_unknown_model_and_missing_package(monkeypatch):
    pytest.importorskip("timm")
    with pytest.raises(ThresherError, match="unknown timm model 'resnet81'.*timm:resnet18"):
        create_backbone("timm:resnet81")
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(ThresherError, match=r"pip install 'thresher\[timm\]'"):
        create_backbone("timm:resnet18")


# ----------------------------------------------------------------------------------------------------------
# checkpoint formats: save from a seeded model, load into a differently seeded one, compare every tensor


def test_torchvision_state_dict_with_classifier(tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    model = seeded("resnet18", 2)
    report = load_backbone_weights(model, path)
    assert isinstance(report, LoadReport)
    assert_same_weights(model, {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    assert report.source_format == "state_dict" and report.prefix == ""
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.loaded == len(model.state_dict())


def test_timm_state_dict_into_timm_backbone(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False)  # with its 1000-class fc
    path = tmp_path / "timm.pth"
    torch.save(source.state_dict(), path)
    model = seeded("timm:resnet18", 2)
    report = load_backbone_weights(model, path)
    assert_same_weights(model, {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")})
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]


def test_moco_checkpoint_uses_the_query_encoder(tmp_path):
    query, key = seeded("resnet20", 1), seeded("resnet20", 5)
    state = {}
    for k, v in key.state_dict().items():  # key encoder first: the choice must not depend on order
        state[f"module.encoder_k.{k}"] = v
    for k, v in query.state_dict().items():
        state[f"module.encoder_q.{k}"] = v
    for enc in ("encoder_q", "encoder_k"):
        state[f"module.{enc}.fc.0.weight"] = torch.randn(64, 64)
        state[f"module.{enc}.fc.0.bias"] = torch.randn(64)
        state[f"module.{enc}.fc.2.weight"] = torch.randn(128, 64)
    state["module.queue"] = torch.randn(128, 4096)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    ckpt = {
        "epoch": 200,
        "arch": "resnet20",
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": []},
    }
    path = tmp_path / "checkpoint_0199.pth.tar"
    torch.save(ckpt, path)
    model = seeded("resnet20", 2)
    report = load_backbone_weights(model, path)
    assert_same_weights(model, clone_sd(query))
    assert report.source_format == "moco"
    assert report.container == "state_dict" and report.prefix == "module.encoder_q."
    assert "module.queue" in report.ignored and "module.encoder_q.fc.2.weight" in report.ignored
    assert any(k.startswith("module.encoder_k.") for k in report.ignored)


def test_thresher_checkpoint(tmp_path):
    source = seeded("small-cnn", 1)
    train_module = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    train_module["head.weight"] = torch.randn(10, source.feature_dim)
    train_module["head.bias"] = torch.randn(10)
    ckpt = {
        "model": train_module,
        "optimizer": {"state": {0: {"momentum_buffer": torch.randn(3)}}, "param_groups": [{"lr": 0.1}]},
        "step": 1234,
        "config": {"backbone": "small-cnn", "lr": 0.1, "epochs": 3},
    }
    path = tmp_path / "last.pt"
    torch.save(ckpt, path)
    model = seeded("small-cnn", 2)
    report = load_backbone_weights(model, path)
    assert_same_weights(model, clone_sd(source))
    assert report.source_format == "thresher" and report.prefix == "backbone."
    assert sorted(report.ignored) == ["head.bias", "head.weight"]


def test_safetensors(tmp_path):
    source = seeded("resnet20", 1)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = seeded("resnet20", 2)
    report = load_backbone_weights(model, path)
    assert_same_weights(model, clone_sd(source))
    assert report.source_format == "safetensors"


@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict"])
def test_dataparallel_prefix_and_plain_wrappers(tmp_path, wrap):
    source = seeded("small-cnn", 1)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "dp.pt"
    torch.save(state if wrap == "bare" else {wrap: state, "epoch": 3}, path)
    model = seeded("small-cnn", 2)
    report = load_backbone_weights(model, path)
    assert_same_weights(model, clone_sd(source))
    assert report.prefix == "module."
    assert report.container == ("" if wrap == "bare" else wrap)


def test_missing_num_batches_tracked_is_fine(tmp_path):
    source = seeded("resnet20", 1)
    path = tmp_path / "old.pt"
    torch.save({k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}, path)
    model = seeded("resnet20", 2)
    load_backbone_weights(model, path)
    for k, v in source.state_dict().items():
        if "num_batches_tracked" not in k:
            assert torch.equal(model.state_dict()[k], v)


# ----------------------------------------------------------------------------------------------------------
# errors


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    model = create_backbone("resnet18-small")
    before = clone_sd(model)
    with pytest.raises(ThresherError) as err:
        load_backbone_weights(model, path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "conv1.weight" in msg and "(64, 3, 7, 7)" in msg and "(64, 3, 3, 3)" in msg
    assert_same_weights(model, before)  # nothing half-loaded
    report = load_backbone_weights(model, path, strict=False)  # the rest of the weights still load
    assert report.mismatched == ["conv1.weight"] and report.missing == ["conv1.weight"]
    assert torch.equal(model.state_dict()["conv1.weight"], before["conv1.weight"])


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    source = seeded("resnet20", 1).state_dict()
    source["extra.weight"] = torch.zeros(3)
    path = tmp_path / "r20.pt"
    torch.save(source, path)
    with pytest.raises(ThresherError) as err:
        load_backbone_weights(create_backbone("resnet32"), path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing key" in msg and "layer1.3.conv1.weight" in msg
    assert "1 unexpected key [extra.weight]" in msg
    report = load_backbone_weights(create_backbone("resnet32"), path, strict=False)
    assert report.loaded > 0 and "layer1.3.conv1.weight" in report.missing and "extra.weight" in report.ignored


def test_no_overlap_at_all(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ThresherError, match="no weights for this backbone"):
        load_backbone_weights(create_backbone("small-cnn"), path)


UNPICKLED: list[str] = []


def _record_unpickle() -> object:
    UNPICKLED.append("ran")
    return object()


class Payload:
    """An object whose unpickling would run code (it calls _record_unpickle)."""

    def __reduce__(self):
        return (_record_unpickle, ())


def test_pickle_with_custom_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": create_backbone("small-cnn").state_dict(), "args": Payload()}, path)
    with pytest.raises(ThresherError) as err:
        load_backbone_weights(create_backbone("small-cnn"), path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "not a plain tensor checkpoint" in msg and "safety" in msg and "re-save" in msg
    assert "_record_unpickle" in msg
    assert UNPICKLED == []


def test_missing_file_and_non_checkpoints(tmp_path):
    model = create_backbone("small-cnn")
    with pytest.raises(ThresherError, match="checkpoint not found"):
        load_backbone_weights(model, tmp_path / "nope.pt")
    with pytest.raises(ThresherError, match="is a directory"):
        load_backbone_weights(model, tmp_path)
    for name, content in [
        ("notes.pt", b"hello world\n"),
        ("empty.pt", b""),
        ("img.pth", b"\x89PNG\r\n\x1a\n0000"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ThresherError, match="not a PyTorch or safetensors checkpoint"):
            load_backbone_weights(model, tmp_path / name)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(ThresherError, match="cannot read safetensors"):
        load_backbone_weights(model, tmp_path / "bad.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ThresherError, match="holds no tensors"):
        load_backbone_weights(model, tmp_path / "list.pt")
