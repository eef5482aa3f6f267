"""parquet: datasets (issue 8): image shards in Parquet, read a row group at a time, as img2dataset and Hugging Face
write them (the Ray engine reads them in tests/test_ray_engine.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_data_sources import check_bad, check_gray, gray_png, one_line_error, png_bytes, rgb, truncated_png

from thresher.data import open_dataset
from thresher.data import parquet as parquet_mod
from thresher.errors import ThresherError, UnreadableImage


def write_img2dataset_shards(folder: Path, images: list[bytes], per_file: int, row_group: int) -> list[Path]:
    """img2dataset's parquet output: a ``jpg`` binary column (any format), ``key`` ids, no labels."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for f, start in enumerate(range(0, len(images), per_file)):
        part = images[start : start + per_file]
        table = pa.table(
            {
                "key": [f"{start + i:09d}" for i in range(len(part))],
                "jpg": pa.array(part, pa.binary()),
                "caption": [f"image {start + i}" for i in range(len(part))],
            }
        )
        files.append(folder / f"{f:05d}.parquet")
        pq.write_table(table, files[-1], row_group_size=row_group)
    return files


@pytest.fixture
def pool(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(23)]
    write_img2dataset_shards(tmp_path / "shards", [png_bytes(a) for a in arrays], per_file=10, row_group=4)
    return tmp_path / "shards", arrays


def test_img2dataset_shards_in_row_order(pool) -> None:
    folder, arrays = pool
    ds = open_dataset(f"parquet:{folder}")  # a folder: its *.parquet, sorted
    assert len(ds) == 23 and len(ds.source_files()) == 3
    assert list(ds.ids[:3]) == ["000000000", "000000001", "000000002"]  # the key column
    assert not ds.has_labels and ds.classes is None
    for i in (0, 3, 4, 9, 10, 19, 20, 22):  # row-group and file boundaries
        assert np.array_equal(ds.load(i), arrays[i]), i
    x, ok = ds.load_batch(list(range(23)), 8)
    assert ok.all() and x.shape == (23, 3, 8, 8)
    same = open_dataset(f"parquet:{folder}/{{00000,00001,00002}}.parquet")  # braces; and a glob
    assert list(same.ids) == list(ds.ids) == list(open_dataset(f"parquet:{folder}/*.parquet").ids)


def test_reads_each_row_group_once_in_order_and_pickles_by_path(pool, monkeypatch) -> None:
    folder, arrays = pool
    ds = open_dataset(f"parquet:{folder}")
    reads = []
    real = pq.ParquetFile.read_row_group

    def counted(self, i, *args, **kwargs):
        reads.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    ds.load_batch(list(range(23)), 8)
    assert len(reads) == 3 + 3 + 1  # 4-row groups: 3 per 10-row file, then the 3-row file's one
    monkeypatch.setattr(parquet_mod, "CACHE_BYTES", 1)  # no room: the cache keeps only the last row group read
    assert len(ds.ids) == len(ds.labels) == 23  # computed here, but not shipped: no ids, labels or pixels pickled
    small = pickle.loads(pickle.dumps(ds))
    assert small._cache == {} and small._ids is None and len(pickle.dumps(ds)) < 2000
    reads.clear()
    small.load(0), small.load(5)  # two row groups
    assert len(reads) == 2 and len(small._cache) == 1
    assert np.array_equal(small.load(21), arrays[21])
    monkeypatch.setattr(parquet_mod, "MAX_OPEN_FILES", 1)  # one open file at a time, still every row right
    fresh = pickle.loads(pickle.dumps(ds))
    for i in (0, 12, 22, 3):
        assert np.array_equal(fresh.load(i), arrays[i]) and len(fresh._files) == 1


def test_hugging_face_parquet_with_classes_and_unreadable_rows(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    images = [png_bytes(rgb(10)), gray_png(), png_bytes(rgb(30, 12, 10)), b"garbage", b"", truncated_png()]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["ant", "bee"])})
    hf = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in images], "label": [1, 0, 1, 0, 0, 1]}, features=features
    )
    hf.to_parquet(str(tmp_path / "train.parquet"))
    ds = open_dataset(f"parquet:{tmp_path / 'train.parquet'}")
    assert ds.classes == ["ant", "bee"] and ds.labels.tolist() == [1, 0, 1, 0, 0, 1]  # from the schema's metadata
    assert list(ds.ids) == [f"train.parquet:{i}" for i in range(6)]
    assert np.array_equal(ds.load(0), rgb(10))
    check_gray(ds, 1)
    check_bad(ds, [3, 4, 5], 0)


def test_paths_options_and_classes_file(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(rgb(60)))
    table = pa.table({"file": ["a.png", "missing.png"], "y": pa.array([2, None], pa.int64()), "name": ["a", "b"]})
    pq.write_table(table, tmp_path / "t.parquet")
    (tmp_path / "classes.txt").write_text("cat\ndog\nemu\n")
    ds = open_dataset(f"parquet:{tmp_path / 't.parquet'}?image=file&label=y&id=name")
    assert np.array_equal(ds.load(0), rgb(60))  # a path relative to the file's folder
    assert ds.labels.tolist() == [2, -1] and ds.classes == ["cat", "dog", "emu"] and list(ds.ids) == ["a", "b"]
    check_bad(ds, [1], 0)


def test_parquet_errors(pool, tmp_path: Path) -> None:
    folder, _ = pool
    cases = {
        f"parquet:{tmp_path / 'nothing'}/*.parquet": "no shard files match",
        f"parquet:{tmp_path}": "no .parquet shards in folder",
        f"parquet:{folder}?image=jpeg": "no column 'jpeg' for option image; did you mean 'jpg'",
        f"parquet:{folder}?imgae=jpg": "did you mean 'image'",
        f"parquet:{folder}?id=caption&label=": None,  # accepted
    }
    for spec, fragment in cases.items():
        if fragment is None:
            assert len(open_dataset(spec)) == 23
            continue
        with pytest.raises(ThresherError) as e:
            open_dataset(spec)
        assert fragment in one_line_error(e), spec
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ThresherError) as e:
        open_dataset(f"parquet:{tmp_path / 'junk.parquet'}")
    assert "cannot read" in one_line_error(e) and "as Parquet" in str(e.value)
    pq.write_table(pa.table({"image": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(ThresherError) as e:
        open_dataset(f"parquet:{tmp_path / 'ints.parquet'}")  # at open, not at the first read of a worker
    assert "holds int64, not images" in one_line_error(e)
    pq.write_table(pa.table({"png": [b"x"], "jpg": [b"y"]}), tmp_path / "two.parquet")
    with pytest.raises(ThresherError) as e:
        open_dataset(f"parquet:{tmp_path / 'two.parquet'}")
    assert "pass ?image=COLUMN" in one_line_error(e)
    odd = tmp_path / "odd"
    odd.mkdir()
    pq.write_table(pa.table({"jpg": [png_bytes(rgb(1))]}), odd / "a.parquet")
    pq.write_table(pa.table({"png": [png_bytes(rgb(1))]}), odd / "b.parquet")
    with pytest.raises(ThresherError) as e:
        open_dataset(f"parquet:{odd}")
    assert "has no image column 'jpg'" in one_line_error(e)
    pq.write_table(pa.table({"jpg": [png_bytes(rgb(1))] * 2, "key": ["k", "k"]}), odd / "b.parquet")
    with pytest.raises(ThresherError) as e:
        _ = open_dataset(f"parquet:{odd / 'b.parquet'}").ids
    assert "repeats 'k'" in one_line_error(e)


def test_unreadable_row_group_fails_fast_by_id(pool, monkeypatch) -> None:
    folder, arrays = pool
    ds = open_dataset(f"parquet:{folder}")
    reads = []

    def broken(self, i, *args, **kwargs):
        reads.append(i)
        raise OSError("checksum mismatch")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", broken)
    for i in (4, 5, 6):  # the second row group of the first file: read once, each row named by its id
        with pytest.raises(UnreadableImage, match=f"'00000000{i}'.*checksum mismatch"):
            ds.load(i)
    assert reads == [1]
    x, ok = ds.load_batch([4, 5], 8)
    assert not ok.any() and len(x) == 0


def test_default_ids_stay_unique_across_folders(tmp_path: Path) -> None:
    """Hugging Face (config/split/0000.parquet) and Spark (part-00000) reuse file names in every folder."""
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        pq.write_table(pa.table({"image": [png_bytes(rgb(1)), png_bytes(rgb(2))]}), tmp_path / split / "0000.parquet")
    ds = open_dataset(f"parquet:{tmp_path}/{{train,test}}/0000.parquet")
    assert list(ds.ids) == [f"{split}/0000.parquet:{row}" for split in ("train", "test") for row in (0, 1)]


def test_captions_come_from_the_caption_column(pool, tmp_path: Path) -> None:
    """Issue 21: img2dataset's ``caption`` column is each row's text (batches carry it); ``?caption=`` turns it off,
    another column is named with ``?caption=COLUMN``, and a column without text is a one-line error."""
    folder, _ = pool
    ds = open_dataset(f"parquet:{folder}")
    assert ds.caption_column == "caption" and list(ds.captions[:2]) == ["image 0", "image 1"]
    assert ds.batch_targets(np.array([21, 3]), 8) == {"captions": ["image 21", "image 3"]}
    assert open_dataset(f"parquet:{folder}?caption=").captions is None
    assert list(open_dataset(f"parquet:{folder}?caption=key").captions[:1]) == ["000000000"]
    with pytest.raises(ThresherError, match="no column 'captoin' for option caption"):
        open_dataset(f"parquet:{folder}?caption=captoin")
    with pytest.raises(ThresherError, match="caption column 'jpg' .* holds binary, not text"):
        _ = open_dataset(f"parquet:{folder}?caption=jpg").captions
