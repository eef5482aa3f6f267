"""Issue 8: ``--engine ray`` embeds through a Ray Data pipeline (local 2-CPU Ray) into the local engine's store.

Tolerance: the same weights on the same pixels, batched differently across actors, agree to float32 rounding
(|difference| <= 1e-5 + 1e-4 * |value|); ids, labels, order and skipped images are identical.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_data_sources import png_bytes
from test_parquet_data import write_img2dataset_shards

from thresher.cli import main
from thresher.config import build_config
from thresher.embed import EmbedConfig, EmbeddingStore, embed

from conftest import make_npz

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra (pip install 'thresher[ray]')")
ATOL, RTOL = 1e-5, 1e-4


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()


def _embed(spec: str, out, engine: str):
    cfg = build_config(EmbedConfig, values={
        "data": {"spec": spec}, "backbone": "small-cnn", "resolution": 12, "batch_size": 16,
        "shard_size": 48, "runtime": {"progress": False, "engine": engine, "threads": 1},
    })  # fmt: skip
    return embed(cfg, out, log=lambda *_: None)


def _same(a: EmbeddingStore, b: EmbeddingStore) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(np.asarray(b[:]), np.asarray(a[:]), atol=ATOL, rtol=RTOL)
    assert list(a.ids) == list(b.ids) and np.array_equal(a.labels, b.labels)


def test_ray_engine_matches_local(tmp_path):
    data = make_npz(tmp_path / "d" / "train.npz", n=150, size=12)
    local = _embed(f"npz:{data}", tmp_path / "local", "local")
    remote = _embed(f"npz:{data}", tmp_path / "ray", "ray")
    _same(local, remote)
    meta = json.loads((tmp_path / "ray" / "meta.json").read_text())
    assert meta["shard_rows"] == [48, 48, 48, 6] and meta["cost"]["images"] == 150


def test_ray_engine_resumes_a_local_run(tmp_path):
    """A store half written by the local engine is finished by Ray (the engine is not part of the fingerprint)."""
    data = make_npz(tmp_path / "d" / "train.npz", n=150, size=12)
    local = _embed(f"npz:{data}", tmp_path / "local", "local")
    _embed(f"npz:{data}", tmp_path / "mixed", "local")
    for s in (1, 3):  # as if killed before these shards were committed
        (tmp_path / "mixed" / ".parts" / f"{s:05d}.done").unlink()
    meta = json.loads((tmp_path / "mixed" / "meta.json").read_text())
    (tmp_path / "mixed" / "meta.json").write_text(json.dumps({**meta, "complete": False}))
    _same(local, _embed(f"npz:{data}", tmp_path / "mixed", "ray"))


def test_ray_engine_skips_unreadable_images_like_local(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for k in range(40):
        folder = root / f"c{k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        if k in (3, 17):
            (folder / f"{k:03d}.png").write_bytes(b"not a png")
        else:
            Image.fromarray(np.full((12, 12, 3), 6 * k, np.uint8)).save(folder / f"{k:03d}.png")
    local = _embed(f"folder:{root}", tmp_path / "local", "local")
    remote = _embed(f"folder:{root}", tmp_path / "ray", "ray")
    _same(local, remote)
    assert len(remote) == 38
    skipped = [json.loads((tmp_path / e / "meta.json").read_text())["skipped"] for e in ("local", "ray")]
    assert skipped[0] == skipped[1] and skipped[0]["count"] == 2


def _score_with_both_engines(args: list[str], tmp_path, capsys) -> dict:
    """``thresher score ARGS`` with the local and the Ray engine; their scores tables."""
    tables = {}
    for engine in ("local", "ray"):
        try:
            main([*args, "--engine", engine, "--out", str(tmp_path / engine)])
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr().err
        tables[engine] = pq.read_table(tmp_path / engine / "scores.parquet")
    return tables


def test_score_cli_with_ray_engine_matches_local(tmp_path, capsys):
    pool = make_npz(tmp_path / "pool" / "train.npz", n=120, size=12, classes=4)
    target = make_npz(tmp_path / "target" / "train.npz", n=40, size=12, classes=2, seed=1)
    args = ["score", "--source", f"npz:{pool}", "--target", f"npz:{target}", "-m", "knn", "-m", "cluster-min",
            "--set", "models.resolution=12", "--set", "models.source_epochs=1", "--set", "models.target_epochs=1",
            "--set", "models.batch_size=16", "--set", "runtime.threads=1"]  # fmt: skip
    tables = _score_with_both_engines(args, tmp_path, capsys)
    for name in ("knn", "cluster-min"):
        np.testing.assert_allclose(
            tables["ray"].column(name).to_numpy(), tables["local"].column(name).to_numpy(), atol=1e-4, rtol=1e-4
        )
    assert tables["ray"].column("id").to_pylist() == tables["local"].column("id").to_pylist()


@pytest.mark.realdata
def test_score_with_ray_matches_local_on_real_data(tmp_path, capsys):
    """knn and cluster-min scores of 3,000 real pool images against 500 cifar10 images, embedded by each engine with
    the same weights: equal within the stated tolerance, and the same top 10%."""
    import torch

    from thresher.models import create_backbone

    torch.manual_seed(0)
    torch.save(create_backbone("small-cnn").state_dict(), tmp_path / "w.pt")
    args = ["score", "--source", "builtin:tiny-imagenet-32:train", "--source-subset", "3000", "--target",
            "builtin:cifar10:train", "--target-subset", "500", "-m", "knn", "-m", "cluster-min", "--features",
            str(tmp_path / "w.pt"), "--features-backbone", "small-cnn", "--set", "runtime.threads=1"]  # fmt: skip
    tables = _score_with_both_engines(args, tmp_path, capsys)
    for name in ("knn", "cluster-min"):
        a, b = tables["local"].column(name).to_numpy(), tables["ray"].column(name).to_numpy()
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)
        k = len(a) // 10
        assert len(np.intersect1d(np.argsort(-a)[:k], np.argsort(-b)[:k])) >= 0.99 * k


@pytest.fixture
def parquet_pool(tmp_path):
    """23 random 8 x 10 images in 3 img2dataset Parquet files (row groups of 4); row 7 is not an image."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (8, 10, 3), dtype=np.uint8) for _ in range(23)]
    images = [png_bytes(a) for a in arrays]
    images[7] = b"not an image"
    write_img2dataset_shards(tmp_path / "shards", images, per_file=10, row_group=4)
    return tmp_path / "shards", arrays


def test_embed_cli_reads_parquet_with_both_engines(parquet_pool, tmp_path, capsys):
    """The same store from the local engine and from Ray, and the same as the readable images given as npz."""
    folder, arrays = parquet_pool
    readable = [i for i in range(23) if i != 7]
    square = np.stack([arrays[i][:, 1:9] for i in readable])  # to_square at 8 px: the centre crop
    np.savez(tmp_path / "same.npz", images=square, labels=np.full(len(square), -1))
    common = [
        "--backbone", "small-cnn", "--resolution", "8", "--batch-size", "8",
        "--set", "runtime.progress=false", "--set", "runtime.threads=1",
    ]  # fmt: skip
    stores = {}
    for name, spec, extra in (
        ("local", f"parquet:{folder}", []),
        ("ray", f"parquet:{folder}", ["--engine", "ray"]),
        ("npz", f"npz:{tmp_path / 'same.npz'}", []),
    ):
        try:
            main(["embed", spec, *common, *extra, "--out", str(tmp_path / name)])
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr().err
        stores[name] = EmbeddingStore(tmp_path / name)
    _same(stores["local"], stores["ray"])
    np.testing.assert_allclose(np.asarray(stores["npz"][:]), np.asarray(stores["local"][:]), atol=ATOL, rtol=RTOL)
    assert stores["ray"].indices.tolist() == readable  # the unreadable row is skipped by both engines
    assert json.loads((tmp_path / "ray" / "meta.json").read_text())["skipped"]["count"] == 1


def test_decode_once_pass_on_ray_equals_local(parquet_pool, tmp_path):
    """Scoring's decode-once pass with engine ray: the same pixels and the same unreadable rows (batches of 5 rows
    from Ray blocks of 20)."""
    from thresher.config import RuntimeConfig
    from thresher.data import open_dataset
    from thresher.data.decoded import decode_once

    folder, _ = parquet_pool
    ds = open_dataset(f"parquet:{folder}")
    idx = np.array([22, *range(0, 20), 21])  # not in row order
    got = {}
    for engine in ("local", "ray"):
        runtime = RuntimeConfig(engine=engine, threads=1)
        got[engine] = decode_once(ds, idx, 8, tmp_path / engine, batch=5, log=lambda *_: None, runtime=runtime)
    (dl, rows_l, ok_l), (dr, rows_r, ok_r) = got["local"], got["ray"]
    assert np.array_equal(ok_l, ok_r) and ok_r.tolist() == [i != 7 for i in idx]
    assert np.array_equal(np.asarray(dl.images), np.asarray(dr.images)) and np.array_equal(rows_l, rows_r)
    assert list(dr.ids) == list(ds.ids[idx])


def test_rebatch_cuts_any_chunking_back_into_the_batches():
    """Ray may return the decoder's rows in chunks of any size (it splits large blocks): the pass still yields the
    requested batches, and rows out of order are an error, not silently misplaced pixels."""
    from thresher.errors import ThresherError
    from thresher.ray_engine import _rebatch

    batches = [np.array([9, 3, 5]), np.array([0, 1]), np.array([7, 2, 8, 4]), np.array([6])]
    rows = np.concatenate(batches)
    ok = rows % 3 != 0
    pixels = rows[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)

    def chunks(sizes, order=None):
        pos = np.arange(len(rows)) if order is None else np.asarray(order)
        out, start = [], 0
        for n in sizes:
            p = pos[start : start + n]
            out.append({"row": p, "index": rows[p], "ok": ok[p], "pixels": pixels[p]})
            start += n
        return out

    for sizes in ([1, 7, 2], [10], [3, 2, 4, 1], [1] * 10, [4, 0, 6]):
        got = list(_rebatch(iter(chunks(sizes)), batches))
        assert [b.tolist() for b, _, _ in got] == [b.tolist() for b in batches]
        for (_, x, k), want in zip(got, batches, strict=True):
            assert k.tolist() == (want % 3 != 0).tolist()
            assert x.shape == (int(k.sum()), 3, 2, 2) and x[:, 0, 0, 0].tolist() == want[want % 3 != 0].tolist()
    with pytest.raises(ThresherError, match="out of order"):
        list(_rebatch(iter(chunks([5, 5], order=[0, 1, 2, 4, 3, 5, 6, 7, 8, 9])), batches))
    with pytest.raises(ThresherError, match="incomplete"):
        list(_rebatch(iter(chunks([4])), batches))
