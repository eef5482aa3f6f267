"""Pools of several sources (a data lake, issue 18) and IDX files: one pool, prefixed ids and classes, exclusion by
pixels, each source's share in selections and study tables."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from thresher.config import DataConfig, build_config
from thresher.data import open_dataset
from thresher.data.loader import open_data
from thresher.data.manifest import Manifest
from thresher.data.sources import source_shares
from thresher.errors import ThresherError
from thresher.train.config import TrainConfig

from conftest import SHARED, make_npz

FMNIST_IDX = Path("/usr/share/datasets/fashion-mnist")


def pool_config(sources: list) -> DataConfig:
    """A pool as any run's config reads it (here a training run's ``data``), with its one-line errors."""
    return build_config(TrainConfig, values={"data": sources}).data


def write_idx(path: Path, array: np.ndarray, *, zipped: bool = True) -> Path:
    """An IDX file of unsigned bytes (the MNIST format): magic 0 0 8 ndim, big-endian dims, then the data."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = head + np.ascontiguousarray(array, np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if zipped else open)(path, "wb").write(data)
    return path


def test_idx_files_read_as_a_dataset(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 5, 6), dtype=np.uint8), np.arange(7) % 3
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:2], zipped=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:2], zipped=False)
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    ds = open_dataset(f"idx:{tmp_path}?classes={tmp_path / 'names.txt'}")
    assert len(ds) == 7 and ds.classes == ["a", "b", "c"] and ds.ids[0] == "train-000000"
    np.testing.assert_array_equal(ds.load(3)[..., 0], images[3])
    np.testing.assert_array_equal(ds.labels, labels)
    assert len(open_dataset(f"idx:{tmp_path}:test")) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + bytes(12))
    write_idx(tmp_path / "bad" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(ThresherError, match="not an IDX file of unsigned bytes"):
        open_dataset(f"idx:{tmp_path / 'bad'}")
    write_idx(tmp_path / "cut" / "train-images-idx3-ubyte", images, zipped=False)
    raw = (tmp_path / "cut" / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "cut" / "train-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(ThresherError, match="truncated"):
        open_dataset(f"idx:{tmp_path / 'cut'}")
    with pytest.raises(ThresherError, match="apt-get install dataset-fashion-mnist"):
        open_dataset(f"idx:{tmp_path / 'bad'}:test")


@pytest.fixture
def two_sources(tmp_path):
    a = make_npz(tmp_path / "a" / "train.npz", n=40, classes=4, seed=1)
    b = make_npz(tmp_path / "b" / "train.npz", n=30, classes=3, seed=2, channels=1)
    taken = make_npz(tmp_path / "b" / "taken.npz", n=30, classes=3, seed=2, channels=1)  # the same images as b
    with np.load(taken) as z:  # keep only its first 10: those leave source b
        np.savez(taken, images=z["images"][:10], labels=z["labels"][:10])
    return [{"name": "web", "spec": f"npz:{a}"}, {"name": "shop", "spec": f"npz:{b}", "exclude": f"npz:{taken}"}]


def test_a_list_of_sources_is_one_pool_with_prefixed_ids_and_classes(two_sources):
    cfg = pool_config(two_sources)
    assert cfg.spec.startswith("sources:[")
    ds, idx = open_data(cfg)
    assert len(ds) == len(idx) == 40 + 20  # 10 of shop's images are the excluded dataset's, pixel for pixel
    assert ds.ids[0] == "web:train-000000" and ds.ids[40] == "shop:train-000010"
    assert ds.classes == [f"web/class{k}" for k in range(4)] + [f"shop/class{k}" for k in range(3)]
    assert ds.labels[:40].max() == 3 and set(ds.labels[40:].tolist()) == {4, 5, 6}  # shop's labels offset by 4
    assert ds.source_names == ["web", "shop"] and ds.descriptions[4] == "class0"
    x, ok = ds.load_batch([0, 59], 16)
    assert ok.all() and x.shape == (2, 3, 16, 16)  # grayscale shop images come out RGB like the rest
    assert source_shares(ds.ids) == {"shop": round(20 / 60, 4), "web": round(40 / 60, 4)}
    assert source_shares(ds.ids[:3], np.array([1, 1, 2])) == {"web": 1.0}
    assert open_dataset(ds.spec).ids.tolist() == ds.ids.tolist()  # the spec alone reopens the same pool
    with_subset = [{**two_sources[0], "subset": 5}, two_sources[1]]
    assert len(open_data(pool_config(with_subset))[1]) == 25


def test_bad_sources_are_one_line_errors(two_sources):
    with pytest.raises(ThresherError, match=r"distinct names"):
        pool_config([two_sources[0], two_sources[0]])
    with pytest.raises(ThresherError, match=r"source 2 of the pool: spec: Field required"):
        pool_config([two_sources[0], {"name": "x"}])
    with pytest.raises(ThresherError, match=r"source 1 of the pool: subsett: Extra inputs"):
        pool_config([{**two_sources[0], "subsett": 3}])
    with pytest.raises(ThresherError, match=r"source 1 of the pool: name: String should match"):
        pool_config([{**two_sources[0], "name": "a b"}])
    with pytest.raises(ThresherError, match=r"expects a JSON list"):
        open_dataset("sources:[{not json")


def test_a_study_on_several_sources_shows_each_sources_share(two_sources, tmp_path):
    from thresher.report import markdown_table
    from thresher.study import StudyConfig, run_study

    tr = make_npz(tmp_path / "t" / "train.npz", n=24, classes=2, seed=5)
    te = make_npz(tmp_path / "t" / "test.npz", n=16, classes=2, seed=6)
    cfg = build_config(StudyConfig, values={
        "source": two_sources,
        "targets": [{"name": "t", "train": {"spec": f"npz:{tr}"}, "test": {"spec": f"npz:{te}"}}],
        "methods": ["knn"], "budgets": [0.5], "resolutions": [12],
        "pretrain": {"epochs": 1, "batch_size": 16}, "score": {"models": {"resolution": 12, "target_epochs": 1}},
        "evaluation": {"protocol": "linear", "seeds": 1}, "runtime": {"progress": False},
    })  # fmt: skip
    res = run_study(cfg, tmp_path / "S", log=lambda *a: None)
    rows = {r["arm"]: r for r in res["rows"]}
    assert rows["whole pool"]["source_shares"] == {"shop": round(20 / 60, 4), "web": round(40 / 60, 4)}
    for arm in ("random", "knn"):
        shares = rows[arm]["source_shares"]
        assert set(shares) <= {"web", "shop"} and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
        assert Manifest.read(rows[arm]["select_folder"]).meta["source_shares"] == shares  # the manifest says so
    assert "### share of each source" in markdown_table(res)
    assert rows["no pre-training"]["source_shares"] is None


@pytest.mark.realdata
@pytest.mark.skipif(not FMNIST_IDX.is_dir(), reason="needs Debian's dataset-fashion-mnist (apt-get install it)")
def test_the_lake_holds_the_fashion_mnist_images_the_target_does_not():
    """tiny-imagenet-32 + the 60,000 Fashion-MNIST training images minus the 10,000 of the fashion-mnist target."""
    lake = pool_config([
        {"name": "tiny", "spec": "builtin:tiny-imagenet-32:train"},
        {"name": "fmnist", "spec": f"idx:{FMNIST_IDX}?classes={SHARED / 'fashion-mnist' / 'classes.txt'}",
         "exclude": "builtin:fashion-mnist:train"},
    ])  # fmt: skip
    ds, idx = open_data(lake)
    assert len(idx) == 30_000 + 50_000
    assert source_shares(ds.ids) == {"fmnist": 0.625, "tiny": 0.375}
    assert ds.classes[200] == "fmnist/T-shirt/top" and ds.descriptions[11] == "goose"
