"""Decoding once: the cache equals direct reads, resumes after a kill without redoing blocks, keeps ids and labels."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from thresher.data.decoded import DecodedDataset, decode_once
from thresher.data.folder import FolderDataset
from thresher.data.spec import open_dataset
from thresher.embed import RowView


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(2):
        d = tmp_path / "imgs" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 255, (10 + c, 9, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (tmp_path / "imgs" / "class1" / "7.png").write_bytes(b"not a png")
    return open_dataset(f"folder:{tmp_path / 'imgs'}")


def test_cache_matches_direct_reads_and_keeps_ids(folder, tmp_path):
    bad = list(folder.ids).index("class1/7.png")
    idx = np.array([29, 3, 0, bad, 22, 5])
    ds, rows, ok = decode_once(folder, idx, 8, tmp_path / "c", batch=4, log=lambda *_: None)
    assert isinstance(ds, DecodedDataset) and list(rows) == list(range(6))
    assert list(ds.ids) == list(folder.ids[idx]) and list(ds.labels) == list(folder.labels[idx])
    assert ds.classes == folder.classes
    direct, direct_ok = folder.load_batch(idx, 8)
    assert (ok == direct_ok).all() and list(ok) == [True, True, True, False, True, True]
    cached, cached_ok = ds.load_batch(rows[ok], 8)
    assert cached_ok.all() and np.array_equal(cached.numpy(), direct.numpy())


def test_array_datasets_are_not_copied(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((5, 4, 4, 3), np.uint8), labels=np.arange(5))
    ds = open_dataset(f"npz:{tmp_path / 'a.npz'}")
    out, rows, ok = decode_once(ds, np.array([4, 1]), 4, tmp_path / "c")
    assert out is ds and list(rows) == [4, 1] and ok.all() and not (tmp_path / "c").exists()


def test_killed_pass_resumes_without_redecoding(folder, tmp_path, monkeypatch):
    idx = np.arange(len(folder))
    whole, _, ok_whole = decode_once(folder, idx, 8, tmp_path / "whole", batch=1, log=lambda *_: None)
    loads = Counter()
    real = FolderDataset.load

    def dying_load(self, i):
        loads[i] += 1
        if sum(loads.values()) == 20:
            raise KeyboardInterrupt  # killed in the middle of the pass
        return real(self, i)

    monkeypatch.setattr(FolderDataset, "load", dying_load)
    with pytest.raises(KeyboardInterrupt):
        decode_once(folder, idx, 8, tmp_path / "c", batch=1, log=lambda *_: None)
    monkeypatch.setattr(FolderDataset, "load", lambda self, i: loads.update([i]) or real(self, i))
    again, _, ok = decode_once(folder, idx, 8, tmp_path / "c", batch=1, log=lambda *_: None)
    assert np.array_equal(np.asarray(again.images), np.asarray(whole.images)) and (ok == ok_whole).all()
    # the pass flushes every 16 batches: images 0-15 were kept, only 16-19 are decoded a second time
    assert [loads[i] for i in range(30)] == [1] * 16 + [2] * 4 + [1] * 10
    loads.clear()
    decode_once(folder, idx, 8, tmp_path / "c", batch=1, log=lambda *_: None)
    assert not loads  # complete: nothing decoded


def test_row_view_reads_rows_lazily_in_order():
    base = np.arange(20, dtype=np.float32).reshape(10, 2)
    v = RowView(base, np.array([7, 2, 9]))
    assert v.shape == (3, 2) and len(v) == 3
    assert np.array_equal(v[0:2], base[[7, 2]]) and np.array_equal(np.asarray(v), base[[7, 2, 9]])
    assert np.array_equal(v[1], base[2]) and np.array_equal(v[:, 1], base[[7, 2, 9], 1])
    with pytest.raises(IndexError):
        RowView(base, np.array([10]))
