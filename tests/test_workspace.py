"""The workspace (issue 16): artefacts computed once by their fingerprint, typed costs that add, ledgers."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.config import DataConfig, RuntimeConfig
from thresher.data import open_dataset
from thresher.train.config import TrainConfig
from thresher.workspace import Cost, Workspace

from conftest import make_npz


def test_costs_add_by_their_rules():
    a = Cost(images=10, flops=1e9, seconds=2.0, peak_memory_bytes=100, kind="trained")
    b = Cost(images=5, flops=2e9, seconds=1.0, peak_memory_bytes=300, kind="forward", reused=True)
    s = a + b
    assert (s.images, s.flops, s.seconds, s.peak_memory_bytes) == (15, 3e9, 3.0, 300)  # peak memory: the larger
    assert s.kind == "mixed" and not s.reused  # reused only when every part was
    assert (a + a).kind == "trained" and (b + b).reused
    assert Cost() + a == a and a + Cost() == a  # nothing is the identity
    assert Cost.total([a, b, Cost()]) == s
    with pytest.raises(ValueError, match="cost kind"):
        Cost(kind="guessed")
    with pytest.raises(ValueError, match="zero cost"):
        Cost(seconds=5)  # paid for something: say what kind


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws", runtime=RuntimeConfig(progress=False), log=lambda *_: None)


@pytest.fixture
def data(tmp_path):
    ds = open_dataset(f"npz:{make_npz(tmp_path / 'd' / 'train.npz', n=48)}")
    return ds, np.arange(len(ds))


def test_embeddings_are_computed_once_per_weights_data_and_resolution(ws, data):
    ds, idx = data
    with ws.ledger() as book:
        first = ws.embeddings(ds, idx, backbone="small-cnn", checkpoint=None, resolution=12)
        again = ws.embeddings(ds, idx, backbone="small-cnn", checkpoint=None, resolution=12)
    assert not first.reused and again.reused and again.key == first.key and again.cost.images == 48
    assert list(book.used) == [first.key] and not book.used[first.key].reused  # made here, counted once
    assert book.paid_seconds == first.paid_seconds > 0 and first.cost.seconds > 0 and again.paid_seconds == 0
    other_res = ws.embeddings(ds, idx, backbone="small-cnn", checkpoint=None, resolution=8)
    other_seed = ws.embeddings(ds, idx, backbone="small-cnn", checkpoint=None, resolution=12, seed=1)
    subset = ws.embeddings(ds, idx[:10], backbone="small-cnn", checkpoint=None, resolution=12)
    assert len({first.key, other_res.key, other_seed.key, subset.key}) == 4
    assert len(list(ws.root.glob("embeddings-*"))) == 4


def test_models_are_trained_once_and_their_cost_travels_with_them(ws, data, tmp_path):
    ds, idx = data
    cfg = TrainConfig(data=DataConfig(spec=ds.spec), backbone="small-cnn", resolution=12, epochs=1, batch_size=16,
                      runtime=RuntimeConfig(progress=False))  # fmt: skip
    with ws.ledger() as outer:
        model = ws.model("m", cfg, ds, idx)
        with ws.ledger() as inner:
            again = ws.model("m", cfg, ds, idx)
            emb = ws.embeddings(ds, idx, backbone="small-cnn", checkpoint=model.path, resolution=12)
            head = ws.head_outputs(model.path, emb)
    assert model.cost.kind == "trained" and model.cost.images == 48 and model.cost.flops > 0
    assert again.reused and again.cost.images == model.cost.images and again.cost.reused
    assert set(inner.used) == {again.key, emb.key, head.key}  # a nested ledger sees only its own block
    assert set(outer.used) == {model.key, emb.key, head.key} and not outer.used[model.key].reused
    assert inner.cost.kind == "mixed" and inner.cost.images == 48 + 48
    assert np.asarray(head.value).shape == (48, 4) and head.cost.flops == 2 * 48 * 4 * emb.value.shape[1]
    head_again = ws.head_outputs(model.path, emb)
    assert head_again.reused and head_again.cost.flops == head.cost.flops  # a reused artefact keeps its cost
    # a checkpoint from elsewhere: its recorded training cost (a thresher run) or an external zero
    given = ws.given_model(model.path)
    assert given.cost.kind == "trained" and given.cost.images == 48
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(model.path.read_bytes())
    assert ws.given_model(foreign).cost.kind == "external"


def test_decoding_is_an_artefact_with_its_cost(ws, tmp_path):
    """Files decoded once per size; the pass is counted (images, seconds) and found again, not repeated."""
    from PIL import Image

    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    for k in range(6):
        Image.fromarray(np.full((20, 20, 3), 40 * k, np.uint8)).save(folder / f"{k}.png")
    ds = open_dataset(f"folder:{tmp_path / 'imgs'}")
    with ws.ledger() as book:
        dec, rows, ok = ws.decoded(ds, np.arange(6), 8)
        ws.decoded(ds, np.arange(6), 8)
    (art,) = book.used.values()
    assert art.kind == "decoded" and not art.reused and art.cost.images == 6 and ok.all()
    assert np.asarray(dec.images).shape == (6, 8, 8, 3)
    with ws.ledger() as later:
        ws.decoded(ds, np.arange(6), 8)
    assert next(iter(later.used.values())).reused and later.paid_seconds == 0
