"""Embedding store: shape, ids, memory-mapped reads, resume after a kill equals an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thresher.config import build_config
from thresher.embed import EmbedConfig, EmbeddingStore, embed
from thresher.errors import ThresherError


def cfg(spec, **kw):
    values = {
        "data": {"spec": spec},
        "backbone": "small-cnn",
        "resolution": 16,
        "shard_size": 24,
        "batch_size": 10,
        "runtime": {"progress": False},
    }
    values.update(kw)
    return build_config(EmbedConfig, values=values)


def test_store_shape_ids_labels(tiny_npz, tmp_path):
    store = embed(cfg(f"npz:{tiny_npz}"), tmp_path / "e", log=lambda *_: None)
    assert store.shape[0] == 64 and store.shape[1] == store.meta["dim"]
    assert store.meta["shard_rows"] == [24, 24, 16]
    assert list(store.ids[:2]) == ["train-000000", "train-000001"]
    assert (store.labels == np.arange(64) % 4).all()
    arr = np.asarray(store)
    assert arr.shape == store.shape and np.isfinite(arr).all()
    # shard-crossing reads agree with the full array
    np.testing.assert_array_equal(store[20:30], arr[20:30])
    np.testing.assert_array_equal(store[np.array([63, 0, 25])], arr[[63, 0, 25]])
    np.testing.assert_array_equal(store[30], arr[30])
    assert sum(len(b) for _, b in store.iter_chunks(7)) == 64
    # the rows are the backbone's features of those images
    from thresher.data import open_dataset
    from thresher.data.transforms import build_transform
    from thresher.models import build_backbone

    ds = open_dataset(f"npz:{tiny_npz}")
    model = build_backbone("small-cnn", None, 0).eval()
    x, _ = ds.load_batch([5, 40], 16)
    with torch.inference_mode():
        ref = model.forward_features(build_transform("eval", 16)(x, None)).numpy()
    np.testing.assert_allclose(arr[[5, 40]], ref, rtol=1e-4, atol=1e-5)


def test_float16_storage(tiny_npz, tmp_path):
    store = embed(cfg(f"npz:{tiny_npz}", dtype="float16"), tmp_path / "e", log=lambda *_: None)
    assert store.dtype == np.float16 and np.asarray(store).dtype == np.float16


def test_resume_after_kill_gives_identical_array(tiny_npz, tmp_path, monkeypatch):
    full = np.asarray(embed(cfg(f"npz:{tiny_npz}"), tmp_path / "full", log=lambda *_: None))
    import thresher.embed as emb

    real = emb._write_shard
    calls = {"n": 0}

    def dying(root, s, *a, **k):
        if calls["n"] == 1:
            raise KeyboardInterrupt  # killed while writing the second shard
        calls["n"] += 1
        return real(root, s, *a, **k)

    monkeypatch.setattr(emb, "_write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        embed(cfg(f"npz:{tiny_npz}"), tmp_path / "killed", log=lambda *_: None)
    assert (tmp_path / "killed" / "shard-00000.npy").exists()
    assert not (tmp_path / "killed" / "meta.json").exists()
    with pytest.raises(ThresherError, match="incomplete|not an embedding store"):
        EmbeddingStore(tmp_path / "killed")
    monkeypatch.setattr(emb, "_write_shard", real)
    messages = []
    resumed = embed(cfg(f"npz:{tiny_npz}"), tmp_path / "killed", log=messages.append)
    assert any("resuming, 1 of 3" in m for m in messages)
    np.testing.assert_array_equal(np.asarray(resumed), full)
    again = []
    embed(cfg(f"npz:{tiny_npz}"), tmp_path / "killed", log=again.append)
    assert any("already complete" in m for m in again)


def test_other_config_refused(tiny_npz, tmp_path):
    embed(cfg(f"npz:{tiny_npz}"), tmp_path / "e", log=lambda *_: None)
    with pytest.raises(ThresherError, match="--force"):
        embed(cfg(f"npz:{tiny_npz}", resolution=24), tmp_path / "e", log=lambda *_: None)
    store = embed(cfg(f"npz:{tiny_npz}", resolution=24), tmp_path / "e", force=True, log=lambda *_: None)
    assert json.loads((tmp_path / "e" / "meta.json").read_text())["resolution"] == 24
    assert store.shape[0] == 64


def test_checkpoint_content_is_fingerprinted(tiny_npz, tmp_path):
    from thresher.models import create_backbone

    ck = tmp_path / "w.pt"
    torch.manual_seed(1)
    torch.save(create_backbone("small-cnn").state_dict(), ck)
    a = embed(cfg(f"npz:{tiny_npz}", checkpoint=str(ck)), tmp_path / "e", log=lambda *_: None)
    b = embed(cfg(f"npz:{tiny_npz}"), tmp_path / "e2", log=lambda *_: None)
    assert not np.allclose(np.asarray(a), np.asarray(b))  # the weights were used
    torch.manual_seed(2)
    torch.save(create_backbone("small-cnn").state_dict(), ck)  # same path, new content
    with pytest.raises(ThresherError, match="checkpoint_sha256"):
        embed(cfg(f"npz:{tiny_npz}", checkpoint=str(ck)), tmp_path / "e", log=lambda *_: None)


def test_unreadable_images_skipped_and_reported(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs" / "a"
    root.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    (root / "2.png").write_bytes(b"\x89PNG broken")
    (root / "4.png").write_bytes(b"")
    messages = []
    store = embed(cfg(f"folder:{tmp_path / 'imgs'}", shard_size=3), tmp_path / "e", log=messages.append)
    assert store.shape[0] == 3 and list(store.ids) == ["a/0.png", "a/1.png", "a/3.png"]
    assert store.meta["skipped"] == {"count": 2, "first": ["a/2.png", "a/4.png"]}
    assert any("skipped 2 unreadable" in m for m in messages)
    with pytest.raises(ThresherError, match="a/2.png"):
        embed(
            cfg(f"folder:{tmp_path / 'imgs'}", data={"spec": f"folder:{tmp_path / 'imgs'}", "strict": True}),
            tmp_path / "strict",
            log=lambda *_: None,
        )


def test_worker_processes_give_the_same_store(tmp_path):
    """Decoding in DataLoader workers (folder images) yields exactly the rows of in-process loading."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(9):
            Image.fromarray(rng.integers(0, 255, (18, 14, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    spec = f"folder:{tmp_path / 'imgs'}"
    a = embed(cfg(spec), tmp_path / "w0", log=lambda *_: None)
    b = embed(cfg(spec, runtime={"num_workers": 2, "progress": False}), tmp_path / "w2", log=lambda *_: None)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert list(a.ids) == list(b.ids) and list(a.labels) == [0] * 9 + [1] * 9


def test_store_indexing_is_numpy_like_for_any_shard_count(tiny_npz, tmp_path):
    one = embed(cfg(f"npz:{tiny_npz}", shard_size=100), tmp_path / "one", log=lambda *_: None)
    many = embed(cfg(f"npz:{tiny_npz}", shard_size=7), tmp_path / "many", log=lambda *_: None)
    assert len(many.meta["shards"]) == 10
    np.testing.assert_allclose(np.asarray(many), np.asarray(one), rtol=1e-4, atol=1e-5)  # batch sizes differ
    mask = np.arange(64) % 3 == 0
    keys = [
        5,
        -1,
        slice(3, 50),
        slice(None, None, -3),
        slice(60, 5, -7),
        slice(10, 10),
        np.array([63, 0, -2]),
        mask,
        (slice(2, 30), 0),
        (np.array([1, 40]), slice(0, 3)),
        (9, slice(1, 4)),
        np.array([], np.int64),
    ]
    for key in keys:
        for store in (one, many):
            ref = np.array(store)
            got = store[key]
            np.testing.assert_array_equal(got, ref[key], err_msg=repr(key))
            if got.size:
                got.flat[0] = 123.0  # always a private copy: the store is untouched
            np.testing.assert_array_equal(np.asarray(store), ref)
    with pytest.raises(IndexError):
        many[64]
    with pytest.raises(IndexError):
        many[np.array([0, 64])]
