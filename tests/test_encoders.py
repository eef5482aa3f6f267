"""Public pre-trained encoders by name (issue 17, item 3): weights read from the libraries' caches only, the
preprocessing their metadata names, heads and class maps, one-line errors; never a download (THRESHER_OFFLINE)."""

from __future__ import annotations

import datetime
import os
import socket
import urllib.request

import numpy as np
import pytest
import torch

from thresher.config import RuntimeConfig
from thresher.data import open_dataset
from thresher.embed import EmbedConfig, embed_dataset, forward_flops_per_image
from thresher.errors import ThresherError
from thresher.models import build_backbone, create_backbone
from thresher.models.checkpoint import write_checkpoint
from thresher.models.encoders import EncoderSpec, load_encoder, parse_encoder
from thresher.workspace import Workspace

from conftest import make_npz

TIMM_TEST_MODEL = "test_resnet.r160_in1k"  # a tiny timm model whose pretrained weights live on the hub


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Offline, and any attempt to reach the network fails the test loudly."""
    monkeypatch.setenv("THRESHER_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to download: {args[:1]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache (``$TORCH_HOME/hub``) for this test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # as if torch.hub.set_dir was never called
    return tmp_path / "torch" / "hub"


def plant_resnet18(hub) -> torch.nn.Module:
    """A seeded resnet18's state dict where torchvision expects IMAGENET1K_V1's file; returns the model."""
    import torchvision
    from torchvision.models import ResNet18_Weights

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    path = hub / "checkpoints" / os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def test_parse_accepts_the_three_forms_and_says_what_to_write(tmp_path):
    assert parse_encoder("torchvision:resnet50:IMAGENET1K_V2") == EncoderSpec(
        "torchvision", "resnet50", "IMAGENET1K_V2"
    )
    assert parse_encoder("torchvision:resnet50:DEFAULT").weights == "IMAGENET1K_V2"  # the alias, resolved
    assert parse_encoder("torchvision:resnet18").weights == "IMAGENET1K_V1"
    assert parse_encoder(f"timm:{TIMM_TEST_MODEL}") == EncoderSpec("timm", TIMM_TEST_MODEL, "r160_in1k")
    assert parse_encoder(str(tmp_path)) == EncoderSpec("file", str(tmp_path))
    cases = {
        "torchvision:resnet5O": "unknown torchvision model 'resnet5O'; did you mean torchvision:resnet50",
        "torchvision:resnet50:IMAGENET1K_V9": "write torchvision:resnet50:W, W one of IMAGENET1K_V1, IMAGENET1K_V2",
        "timm:resnet18.nope_in1k": "timm has no pretrained weights named 'resnet18.nope_in1k'; did you mean timm:",
        "tfhub:resnet": "unknown encoder kind 'tfhub'",
        str(tmp_path / "missing.pt"): "does not exist; write torchvision:NAME:WEIGHTS",
    }
    for text, expected in cases.items():
        with pytest.raises(ThresherError) as exc:
            parse_encoder(text)
        assert expected in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_torchvision_weights_come_from_torch_hub_cache_only(hub, monkeypatch):
    with pytest.raises(ThresherError) as exc:  # nothing there, offline: where the file goes, and from where
        load_encoder("torchvision:resnet18:IMAGENET1K_V1")
    expected = hub / "checkpoints" / "resnet18-f37072fd.pth"
    msg = str(exc.value)
    assert f"download https://download.pytorch.org/models/resnet18-f37072fd.pth to {expected}" in msg
    assert "\n" not in msg
    with monkeypatch.context() as online:  # online, torch hub is asked (and here fails: no network in tests)
        online.delenv("THRESHER_OFFLINE")
        with pytest.raises(ThresherError, match=f"cannot download .*resnet18-f37072fd.pth to {expected}"):
            load_encoder("torchvision:resnet18:IMAGENET1K_V1")
    expected.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fc.weight": torch.zeros(1), "when": datetime.date(2020, 1, 1)}, expected)  # not plain tensors
    with pytest.raises(ThresherError, match="will not unpickle it for safety.*delete .*resnet18-f37072fd.pth"):
        load_encoder("torchvision:resnet18:IMAGENET1K_V1")  # refused before torchvision reads it
    expected.unlink()
    planted = plant_resnet18(hub)
    enc = load_encoder("torchvision:resnet18:IMAGENET1K_V1")
    assert (enc.resolution, enc.resize, enc.interpolation) == (224, 256, "bilinear")  # the weights' metadata
    assert enc.mean == pytest.approx((0.485, 0.456, 0.406)) and enc.std == pytest.approx((0.229, 0.224, 0.225))
    assert enc.path == expected and enc.identity["encoder"] == "torchvision:resnet18:IMAGENET1K_V1"
    assert len(enc.identity["sha256"]) == 64 and not enc.module.training and enc.module.feature_dim == 512
    x = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8)
    batch = enc.preprocess(x)
    assert batch.shape == (2, 3, 224, 224)
    with torch.inference_mode():
        feats = enc.module.forward_features(batch)
        trunk = torch.nn.Sequential(*list(planted.children())[:-1])  # everything up to the pooled features
        np.testing.assert_allclose(feats, trunk(batch).flatten(1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(enc.head(feats), planted(batch), rtol=1e-5, atol=1e-5)  # the classifier kept
    assert enc.class_ids[:2] == ["n01440764", "n01443537"] and len(enc.class_ids) == 1000


def test_preprocess_matches_torchvision_eval_pipeline(hub):
    plant_resnet18(hub)
    enc = load_encoder("torchvision:resnet18:IMAGENET1K_V1")
    x = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    ref = torch.stack([_weights_transform()(img) for img in x])  # torchvision's own per-image pipeline
    np.testing.assert_allclose(enc.preprocess(x), ref, atol=2e-2)  # float vs uint8 resize: rounding only
    gray = enc.preprocess(x[:, :1])  # one channel: repeated to three
    assert gray.shape == ref.shape and torch.allclose(gray[:, 0] * 0.229 + 0.485, gray[:, 1] * 0.224 + 0.456)
    assert torch.allclose(enc.preprocess(x.float() / 255), enc.preprocess(x))  # float input is taken in [0, 1]


def _weights_transform():
    from torchvision.models import ResNet18_Weights

    return ResNet18_Weights.IMAGENET1K_V1.transforms()


def test_class_map_by_wnid(hub):
    plant_resnet18(hub)
    enc = load_encoder("torchvision:resnet18:IMAGENET1K_V1")
    cols = enc.class_map(["n01443537", "n01440764\ttench, Tinca tinca", "n01484850"])
    assert cols.tolist() == [1, 0, 2]
    assert enc.class_map(["n01443537", "class7"]) is None  # one class the head does not know: no map at all


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache for this test (timm reads pretrained weights through it)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def plant_timm(cache) -> torch.nn.Module:
    """A seeded timm test model's weights in the hub cache layout (refs/main -> snapshots/<commit>/)."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(TIMM_TEST_MODEL, pretrained=False).eval()
    repo = cache / f"models--timm--{TIMM_TEST_MODEL}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, repo / "snapshots" / commit / "model.safetensors"
    )
    return model


def test_timm_weights_come_from_the_hugging_face_cache_only(hf_cache):
    pytest.importorskip("timm")
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    with pytest.raises(ThresherError) as exc:
        load_encoder(f"timm:{TIMM_TEST_MODEL}")
    msg = str(exc.value)
    assert f"not in the Hugging Face cache ({hf_cache}/models--timm--{TIMM_TEST_MODEL})" in msg and "\n" not in msg
    assert constants.HF_HUB_OFFLINE == before  # hub offline only for the call
    planted = plant_timm(hf_cache)
    enc = load_encoder(f"timm:{TIMM_TEST_MODEL}")
    assert (enc.resolution, enc.resize, enc.interpolation) == (160, 168, "bilinear")  # 160 / crop_pct 0.95
    assert enc.mean == (0.5, 0.5, 0.5) and enc.std == (0.5, 0.5, 0.5)
    assert enc.path.name == "model.safetensors" and enc.identity["encoder"] == f"timm:{TIMM_TEST_MODEL}"
    batch = enc.preprocess(torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8))
    with torch.inference_mode():
        feats = enc.module.forward_features(batch)
        ref = planted.forward_head(planted.forward_features(batch), pre_logits=True)
        np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(enc.head(feats), planted(batch), rtol=1e-5, atol=1e-5)
    assert feats.shape[1] == enc.module.feature_dim and enc.class_map(["n01440764"]).tolist() == [0]


def tiny_checkpoint(path, classes=("n01443537\tgoldfish", "n01440764\ttench"), head: bool = True):
    """A thresher checkpoint of a seeded small-cnn (a supervised head when ``head``), trained at 12 px."""
    torch.manual_seed(1)
    backbone = create_backbone("small-cnn")
    weights = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    if head:
        weights |= {"head.weight": torch.randn(len(classes), backbone.feature_dim), "head.bias": torch.zeros(2)}
    write_checkpoint(path, backbone="small-cnn", model=weights, classes=list(classes), config={"resolution": 12})
    return path


def test_a_thresher_checkpoint_is_an_encoder(tmp_path):
    from thresher.data.transforms import build_transform

    ckpt = tiny_checkpoint(tmp_path / "run" / "checkpoint.pt")
    enc = load_encoder(str(tmp_path / "run"))  # a run folder stands for its checkpoint
    assert (enc.resolution, enc.resize) == (12, 12) and enc.path == ckpt
    assert enc.identity["encoder"] == "thresher:small-cnn"
    assert enc.class_map(["n01440764", "n01443537"]).tolist() == [1, 0]
    x = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    ref_model = build_backbone("small-cnn", str(ckpt), 0).eval()
    with torch.inference_mode():
        feats = enc.module.forward_features(enc.preprocess(x))
        np.testing.assert_allclose(feats, ref_model.forward_features(build_transform("eval", 12)(x, None)), atol=1e-6)
    ssl = load_encoder(str(tiny_checkpoint(tmp_path / "ssl.pt", head=False)))
    assert ssl.head is None and ssl.class_ids is None and ssl.class_map(["n01440764"]) is None
    foreign = tmp_path / "foreign.pt"
    torch.save(create_backbone("small-cnn").state_dict(), foreign)
    with pytest.raises(ThresherError, match="not a thresher checkpoint"):
        load_encoder(str(foreign))


def test_embedding_with_an_encoder_records_it_and_counts_flops_at_its_resolution(hub, tmp_path):
    plant_resnet18(hub)
    ds = open_dataset(f"npz:{make_npz(tmp_path / 'd' / 'train.npz', n=4, size=16)}")
    cfg = EmbedConfig(data={"spec": ds.spec}, encoder="torchvision:resnet18:IMAGENET1K_V1", batch_size=4,
                      runtime=RuntimeConfig(progress=False))  # fmt: skip
    store = embed_dataset(ds, np.arange(4), cfg, tmp_path / "e", log=lambda *_: None)
    assert store.shape == (4, 512)
    meta = store.meta
    assert meta["encoder"]["spec"] == cfg.encoder and meta["encoder"]["sha256"] and meta["resolution"] == 224
    assert meta["backbone"] == "torchvision:resnet18:IMAGENET1K_V1"
    enc = load_encoder(cfg.encoder)
    per_image = forward_flops_per_image(enc.module, 224)
    assert per_image > 3e9 and meta["cost"]["flops"] == pytest.approx(4 * per_image)  # resnet18 at 224 px, not 32
    x, _ = ds.load_batch([0, 3], enc.resize)
    with torch.inference_mode():
        ref = enc.module.forward_features(enc.preprocess(x)).numpy()
    np.testing.assert_allclose(store[[0, 3]], ref, rtol=1e-4, atol=1e-4)
    ray = cfg.model_copy(update={"runtime": RuntimeConfig(progress=False, engine="ray")})
    with pytest.raises(ThresherError, match="local engine only"):
        embed_dataset(ds, np.arange(4), ray, tmp_path / "r", log=lambda *_: None)


def test_workspace_embeds_once_per_encoder_and_counts_it_as_external(tmp_path):
    ws = Workspace(tmp_path / "ws", runtime=RuntimeConfig(progress=False), log=lambda *_: None)
    ds = open_dataset(f"npz:{make_npz(tmp_path / 'd' / 'train.npz', n=10)}")
    idx = np.arange(len(ds))
    spec = str(tiny_checkpoint(tmp_path / "elsewhere" / "enc.pt"))
    with ws.ledger() as book:
        first = ws.embeddings(ds, idx, encoder=spec)
        again = ws.embeddings(ds, idx, encoder=spec)
    assert not first.reused and again.reused and again.key == first.key
    assert first.cost.kind == again.cost.kind == "forward" and again.cost.images == 10 and first.cost.flops > 0
    assert first.value.meta["encoder"]["sha256"] == ws.digest(spec)
    model = ws.encoder(spec)
    assert (
        model.kind == "model"
        and model.cost.kind == "external"
        and model.cost.reused
        and model.path == tmp_path / "elsewhere" / "enc.pt"
    )
    assert set(book.used) == {model.key, first.key}  # the encoder's (external) cost is in the ledger
    assert ws.encoder(spec).value is model.value  # loaded once per workspace
    copy = tmp_path / "copy.pt"  # the same weights elsewhere: the same store (named by content)
    copy.write_bytes((tmp_path / "elsewhere" / "enc.pt").read_bytes())
    assert ws.embeddings(ds, idx, encoder=str(copy)).reused
    plain = ws.embeddings(ds, idx, backbone="small-cnn", checkpoint=spec, resolution=12)
    assert plain.key != first.key
    np.testing.assert_allclose(np.asarray(plain.value), np.asarray(first.value), atol=1e-5)  # same model, same input


def test_score_with_a_public_encoder_pays_only_forward_passes(hub, tmp_path, capsys):
    """``thresher score --encoder torchvision:...``: embeddings by the encoder at its own preprocessing, importance
    through its head restricted to the pool's classes (wnids), nothing trained, the pre-training an external cost."""
    import json

    import pyarrow.parquet as pq

    from thresher.config import build_config
    from thresher.scoring.pipeline import ScoreConfig, score

    plant_resnet18(hub)
    src = make_npz(tmp_path / "pool" / "train.npz", n=24, size=16, classes=3, seed=0)
    wnids = ["n01443537", "n01440764", "n01484850"]  # goldfish, tench, great white shark: ImageNet-1k classes
    (src.parent / "classes.txt").write_text("".join(f"{w}\tsome words\n" for w in wnids))
    tgt = make_npz(tmp_path / "tgt" / "train.npz", n=8, size=16, classes=2, seed=1)
    cfg = build_config(ScoreConfig, values={
        "source": {"spec": f"npz:{src}"}, "target": {"spec": f"npz:{tgt}"},
        "methods": ["knn", "importance", "cluster-min"], "encoder": "torchvision:resnet18:IMAGENET1K_V1",
        "params": {"cluster-min": {"k": 2}}, "runtime": {"progress": False},
    })  # fmt: skip
    score(cfg, tmp_path / "s", log=lambda *_: None)
    report = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert not [p for p in (tmp_path / "s" / "cache").iterdir() if p.name.startswith("model-")]  # nothing trained
    for m in ("knn", "importance", "cluster-min"):
        rep = report["reports"][m]
        assert rep["features_from"] == "encoder torchvision:resnet18:IMAGENET1K_V1"
        kinds = {a["cost"]["kind"] for a in rep["artefacts"]}
        assert kinds == {"external", "forward"}, (m, kinds)
    assert report["reports"]["importance"]["classifier"] == "target.logits"  # the encoder's own head, 3 columns
    assert np.isfinite(pq.read_table(tmp_path / "s" / "scores.parquet").column("knn").to_numpy()).all()
    # the dry run counts the encoder's forward passes at its own resolution (224 px: about 3.6 GFLOPs an image)
    from conftest import run_cli

    code, printed, _ = run_cli(
        capsys,
        "score",
        "--source",
        f"npz:{src}",
        "--target",
        f"npz:{tgt}",
        "-m",
        "knn",
        "--encoder",
        "torchvision:resnet18:IMAGENET1K_V1",
        "--out",
        tmp_path / "d",
        "--dry-run",
    )
    flops = float(printed.split("knn")[1].split("TFLOPs")[0]) * 1e12
    assert code == 0 and flops == pytest.approx(32 * 3.64e9, rel=0.05), printed
    with pytest.raises(ThresherError, match="not both"):
        build_config(ScoreConfig, values={"source": {"spec": f"npz:{src}"}, "target": {"spec": f"npz:{tgt}"},
                                          "methods": ["knn"], "encoder": "torchvision:resnet18:IMAGENET1K_V1",
                                          "features": str(tmp_path)})  # fmt: skip


def test_embed_cli_takes_an_encoder(hub, tmp_path, capsys):
    from thresher.embed import EmbeddingStore

    from conftest import run_cli

    plant_resnet18(hub)
    data = make_npz(tmp_path / "d" / "train.npz", n=6, size=16)
    code, _, err = run_cli(capsys, "embed", f"npz:{data}", "--encoder", "torchvision:resnet18:IMAGENET1K_V1",
                           "--out", tmp_path / "e")  # fmt: skip
    store = EmbeddingStore(tmp_path / "e")
    assert code == 0, err
    assert store.shape == (6, 512) and store.meta["encoder"]["spec"] == "torchvision:resnet18:IMAGENET1K_V1"


def test_evaluate_starts_from_a_public_encoder_as_from_its_weights_file(hub, tmp_path, capsys):
    """Issue 20: ``evaluate --encoder`` loads the encoder's cached weights into the thresher backbone of its
    architecture: the same result as that file given as a checkpoint of ``resnet18``; names without a backbone, or
    two models at once, are one-line errors."""
    from thresher.config import build_config
    from thresher.evaluate.config import EvalConfig
    from thresher.evaluate.run import evaluate
    from thresher.models.encoders import encoder_weights

    from conftest import run_cli

    plant_resnet18(hub)
    train, test = make_npz(tmp_path / "tr" / "d.npz", n=24, size=16), make_npz(tmp_path / "te" / "d.npz", n=16,
                                                                              size=16, seed=1)  # fmt: skip
    path, backbone = encoder_weights("torchvision:resnet18:IMAGENET1K_V1")
    assert backbone == "resnet18" and path.parent == hub / "checkpoints"
    common = {"train": {"spec": f"npz:{train}"}, "test": {"spec": f"npz:{test}"}, "seeds": 1, "resolution": 16,
              "runtime": {"progress": False}}  # fmt: skip
    doc = evaluate(build_config(EvalConfig, values={**common, "encoder": "torchvision:resnet18:IMAGENET1K_V1"}),
                   tmp_path / "enc", log=lambda *_: None)  # fmt: skip
    ref = evaluate(build_config(EvalConfig, values={**common, "checkpoint": str(path), "backbone": "resnet18"}),
                   tmp_path / "ref", log=lambda *_: None)  # fmt: skip
    assert doc["model"]["backbone"] == "resnet18" and doc["model"]["encoder"] == "torchvision:resnet18:IMAGENET1K_V1"
    assert doc["summary"]["top1"] == ref["summary"]["top1"]
    with pytest.raises(ThresherError, match="torchvision:vit_b_16:IMAGENET1K_V1 has no thresher backbone to load it"):
        encoder_weights("torchvision:vit_b_16")
    with pytest.raises(ThresherError, match="give one of --checkpoint, --encoder or --backbone NAME --random-init"):
        build_config(EvalConfig, values={**common, "encoder": "torchvision:resnet18", "checkpoint": str(path)})
    code, _, err = run_cli(capsys, "evaluate", "--encoder", "torchvision:resnet5O", "--train", f"npz:{train}",
                           "--test", f"npz:{test}", "--out", tmp_path / "cli")  # fmt: skip
    assert code != 0 and "unknown torchvision model 'resnet5O'; did you mean torchvision:resnet50" in err
