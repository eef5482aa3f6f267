"""npz / npy datasets, built-in lookup order, resizing and grayscale handling, spec parsing."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from thresher.data import open_dataset
from thresher.data.base import to_square
from thresher.data.builtin import BUILTINS, DOWNLOADERS, open_builtin_dataset
from thresher.errors import ThresherError

from conftest import make_npz


def test_npz_compressed_is_cached_once_and_memory_mapped(tiny_npz, tmp_path, monkeypatch):
    ds = open_dataset(f"npz:{tiny_npz}")
    assert len(ds) == 64 and ds.classes == ["class0", "class1", "class2", "class3"]
    assert isinstance(ds.images, np.memmap)
    raw = np.load(tiny_npz)
    np.testing.assert_array_equal(ds.load(7), raw["images"][7])
    np.testing.assert_array_equal(ds.labels, raw["labels"])
    from thresher.paths import cache_dir

    before = sorted((cache_dir() / "npz").glob("*.npy"))
    open_dataset(f"npz:{tiny_npz}")  # second open: no new decompression
    assert sorted((cache_dir() / "npz").glob("*.npy")) == before


def test_npz_stored_member_is_mapped_in_place(tmp_path):
    path = make_npz(tmp_path / "d" / "train.npz", compressed=False)
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("images.npy").compress_type == zipfile.ZIP_STORED
    ds = open_dataset(f"npz:{path}")
    assert isinstance(ds.images, np.memmap) and str(ds.images.filename) == str(path.resolve())
    np.testing.assert_array_equal(ds.load(3), np.load(path)["images"][3])


def test_npz_folder_split_and_npy(tmp_path):
    make_npz(tmp_path / "d" / "val.npz", n=8)
    assert len(open_dataset(f"npz:{tmp_path / 'd'}:val")) == 8
    (tmp_path / "n").mkdir()
    np.save(tmp_path / "n" / "images.npy", np.zeros((5, 6, 6, 3), np.uint8))
    np.save(tmp_path / "n" / "labels.npy", np.arange(5))
    ds = open_dataset(f"npz:{tmp_path / 'n'}")
    assert len(ds) == 5 and list(ds.labels) == [0, 1, 2, 3, 4] and isinstance(ds.images, np.memmap)
    with pytest.raises(ThresherError, match="name a split"):
        open_dataset(f"npz:{tmp_path / 'd'}")


def test_memory_mapped_datasets_pickle_by_file(tmp_path):
    """To Ray actors and spawned workers a mapped dataset travels as (file, offset), never as a copy of its pixels;
    in-memory arrays still pickle whole."""
    import pickle

    stored = make_npz(tmp_path / "s" / "train.npz", n=40, size=16, compressed=False)
    compressed = make_npz(tmp_path / "c" / "train.npz", n=40, size=16)
    gray = make_npz(tmp_path / "g" / "train.npz", n=40, size=16, channels=1)
    np.save(tmp_path / "plain.npy", np.load(stored)["images"])
    for spec in (f"npz:{stored}", f"npz:{compressed}", f"npz:{gray}", f"npz:{tmp_path / 'plain.npy'}"):
        ds = open_dataset(spec)
        blob = pickle.dumps(ds)
        assert len(blob) < ds.images.nbytes // 4, spec
        back = pickle.loads(blob)
        assert isinstance(back.images, np.memmap) and back.images.shape == ds.images.shape
        np.testing.assert_array_equal(np.asarray(back.images), np.asarray(ds.images))
        assert list(back.ids) == list(ds.ids) and np.array_equal(back.labels, ds.labels)
    from thresher.data.npz import ArrayDataset

    held = ArrayDataset(np.zeros((40, 16, 16, 3), np.uint8))
    assert len(pickle.dumps(held)) > held.images.nbytes


@pytest.mark.parametrize(
    "images,labels,match",
    [
        (np.zeros((4, 5, 5, 2), np.uint8), np.zeros(4, np.int64), "C = 1 or 3"),
        (np.zeros((4, 5, 5, 3), np.float32), np.zeros(4, np.int64), "uint8"),
        (np.zeros((4, 5, 5, 3), np.uint8), np.zeros(3, np.int64), "labels have shape"),
        (np.zeros((4, 5, 5, 3), np.uint8), np.array([0, 1, -5, 0]), "negative label"),
    ],
)
def test_npz_bad_arrays_are_clear_errors(tmp_path, images, labels, match):
    np.savez(tmp_path / "bad.npz", images=images, labels=labels)
    with pytest.raises(ThresherError, match=match):
        open_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_missing_and_not_a_zip(tmp_path):
    with pytest.raises(ThresherError, match="does not exist"):
        open_dataset(f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ThresherError, match="not|cannot"):
        open_dataset(f"npz:{tmp_path / 'x.npz'}")
    np.savez(tmp_path / "noimg.npz", pixels=np.zeros(3))
    with pytest.raises(ThresherError, match="no array 'images'.*pixels"):
        open_dataset(f"npz:{tmp_path / 'noimg.npz'}")


def test_grayscale_becomes_rgb_and_resolution_applies(tmp_path):
    path = make_npz(tmp_path / "g" / "train.npz", n=6, size=28, channels=1)
    ds = open_dataset(f"npz:{path}")
    x, ok = ds.load_batch([0, 3], 32)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8 and ok.all()
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    x16, _ = ds.load_batch([0], 16)
    assert x16.shape == (1, 3, 16, 16)
    same, _ = ds.load_batch([4], 28)
    assert torch.equal(same[0, 0], torch.from_numpy(np.load(path)["images"][4][:, :, 0]))


def test_to_square_center_crops_non_square():
    img = torch.zeros(3, 20, 40, dtype=torch.uint8)
    img[:, :, 10:30] = 200  # the centre half
    out = to_square(img, 10)
    assert out.shape == (3, 10, 10) and (out > 150).all()


def test_spec_errors():
    with pytest.raises(ThresherError, match="SCHEME:PATH"):
        open_dataset("cifar10")
    with pytest.raises(ThresherError, match="unknown dataset kind 'npy'; did you mean 'npz'"):
        open_dataset("npy:x")
    with pytest.raises(ThresherError, match="unknown built-in dataset 'cifar'; did you mean 'cifar10'"):
        open_dataset("builtin:cifar")
    with pytest.raises(ThresherError, match="no split 'valid'"):
        open_dataset("builtin:cifar10:valid", data_root="/nonexistent")
    with pytest.raises(ThresherError, match="unknown option 'labl'"):
        open_dataset("npz:x.npz?labl=1")


def test_builtin_lookup_order(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit"
    env = tmp_path / "env"
    make_npz(explicit / "cifar10" / "test.npz", n=10)
    make_npz(env / "cifar10" / "test.npz", n=12)
    monkeypatch.setenv("THRESHER_DATA", str(env))
    assert len(open_builtin_dataset("cifar10", "test", data_root=str(explicit))) == 10
    assert len(open_builtin_dataset("cifar10", "test")) == 12
    assert len(open_dataset("builtin:cifar10:test", data_root=str(explicit))) == 10


def test_builtin_offline_failure_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("THRESHER_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr("thresher.data.builtin.data_roots", lambda explicit=None: [tmp_path / "empty"])
    with pytest.raises(ThresherError) as exc:  # THRESHER_OFFLINE: torchvision is asked for no download
        open_builtin_dataset("cifar10", "train")
    msg = str(exc.value)
    assert "THRESHER_OFFLINE is set: online, run `thresher data download cifar10`; offline, put train.npz" in msg
    assert str(tmp_path / "empty" / "cifar10") in msg and "\n" not in msg

    monkeypatch.delenv("THRESHER_OFFLINE")  # the download is attempted (and fails, as offline)

    def offline(**_):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setitem(DOWNLOADERS._items, "cifar10", offline)
    with pytest.raises(ThresherError) as exc:
        open_builtin_dataset("cifar10", "train")
    msg = str(exc.value)
    assert "download failed" in msg and "name resolution" in msg and str(tmp_path / "empty" / "cifar10") in msg
    assert "train.npz" in msg and "\n" not in msg
    assert not (tmp_path / "cache" / "data" / "cifar10").exists()  # nothing half-written where the lookup reads


def test_debian_fashion_mnist_idx(tmp_path, monkeypatch):
    import gzip

    deb = tmp_path / "deb"
    deb.mkdir()
    imgs = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    with gzip.open(deb / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (3).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + imgs.tobytes())
    with gzip.open(deb / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([9, 0, 4]))
    monkeypatch.setattr("thresher.data.builtin.data_roots", lambda explicit=None: [tmp_path / "none"])
    from dataclasses import replace

    monkeypatch.setitem(BUILTINS, "fashion-mnist", replace(BUILTINS["fashion-mnist"], debian=str(deb)))
    ds = open_builtin_dataset("fashion-mnist", "test")
    assert len(ds) == 3 and list(ds.labels) == [9, 0, 4] and ds.classes[9] == "Ankle boot"
    assert ds.ids[0] == "debian-test-000000"  # another copy of the data, another id namespace
    np.testing.assert_array_equal(ds.load(1)[:, :, 0], imgs[1])


@pytest.mark.realdata
def test_real_builtins(shared_data_dir):
    pool = open_dataset("builtin:tiny-imagenet-32:train")
    assert len(pool) == 30000 and pool.num_classes == 200 and (np.bincount(pool.labels) == 150).all()
    assert len(open_dataset("builtin:tiny-imagenet-32:val")) == 5000
    c10 = open_dataset("builtin:cifar10:test")
    assert len(c10) == 3000 and c10.num_classes == 10
    fm = open_dataset("builtin:fashion-mnist:train")
    assert len(fm) == 10000 and fm.images.shape[1:] == (28, 28, 1)
    x, ok = fm.load_batch(np.arange(0, 10000, 997), 32)
    assert x.shape == (11, 3, 32, 32) and ok.all()
    # the npz kind on the same file gives the same ids and pixels
    same = open_dataset(f"npz:{shared_data_dir / 'cifar10'}:test")
    assert list(same.ids[:3]) == list(c10.ids[:3])
    np.testing.assert_array_equal(same.load(100), c10.load(100))


@pytest.mark.realdata
def test_builtin_order_shared_then_debian_then_download(shared_data_dir, tmp_path, monkeypatch):
    """With no --data-root and no THRESHER_DATA: ../shared/data, else the Debian IDX files, else a download."""
    import gzip
    from dataclasses import replace

    monkeypatch.delenv("THRESHER_DATA", raising=False)
    ds = open_builtin_dataset("fashion-mnist", "test")
    assert ds.source == str((shared_data_dir / "fashion-mnist" / "test.npz").resolve())

    deb = tmp_path / "deb"
    deb.mkdir()
    with gzip.open(deb / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(2 * 784))
    with gzip.open(deb / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([1, 2]))
    monkeypatch.setitem(BUILTINS, "fashion-mnist", replace(BUILTINS["fashion-mnist"], debian=str(deb)))
    assert open_builtin_dataset("fashion-mnist", "test").source == str(
        shared_data_dir.resolve() / "fashion-mnist" / "test.npz"
    )
    monkeypatch.setattr("thresher.data.builtin.data_roots", lambda explicit=None: [tmp_path / "none"])
    assert len(open_builtin_dataset("fashion-mnist", "test")) == 2  # the Debian copy

    monkeypatch.delenv("THRESHER_OFFLINE")
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "cache"))
    called = []
    monkeypatch.setitem(BUILTINS, "fashion-mnist", replace(BUILTINS["fashion-mnist"], debian=str(tmp_path / "x")))

    def fake_download(b, dest, **kw):
        called.append(b.name)
        dest.mkdir(parents=True)
        for split in b.splits:
            (dest / f"{split}.npz").write_bytes((shared_data_dir / "cifar10" / "test.npz").read_bytes())

    monkeypatch.setitem(DOWNLOADERS._items, "fashion-mnist", fake_download)
    assert len(open_builtin_dataset("fashion-mnist", "test")) == 3000
    assert called == ["fashion-mnist"]  # the download is the last resort
