"""folder:, wds: and hf: dataset kinds on small fixtures made in tmp_path (PNG for exact pixel checks)."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thresher.data import open_dataset
from thresher.data.shards import expand_braces
from thresher.data.wds import split_member_name
from thresher.errors import ThresherError, UnreadableImage

GRAY = 77


def rgb(value: int, h: int = 6, w: int = 8) -> np.ndarray:
    """A distinctive HxWx3 image: channel c holds value + c."""
    arr = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):
        arr[:, :, c] = value + c
    return arr


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr).save(buf, "PNG")
    return buf.getvalue()


def gray_png() -> bytes:
    return png_bytes(np.full((5, 5), GRAY, dtype=np.uint8))


def truncated_png() -> bytes:
    return png_bytes(rgb(1, 32, 32))[:60]


def one_line_error(exc_info: pytest.ExceptionInfo) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def check_gray(ds, index: int) -> None:
    """A mode-L image loads with C=1 and batches as three equal channels."""
    img = ds.load(index)
    assert img.shape == (5, 5, 1) and img.dtype == np.uint8 and (img == GRAY).all()
    x, ok = ds.load_batch([index], 5)
    assert ok.all() and x.shape == (1, 3, 5, 5) and x.dtype.is_floating_point is False
    assert (x == GRAY).all()


def check_bad(ds, bad: list[int], good: int) -> None:
    """Unreadable images are False in the mask (dropped from the tensor) and raise under strict."""
    x, ok = ds.load_batch([good, *bad], 4)
    assert ok.tolist() == [True] + [False] * len(bad)
    assert x.shape == (1, 3, 4, 4)
    for i in bad:
        with pytest.raises(UnreadableImage):
            ds.load_batch([i], 4, strict=True)


# --- folder ----------------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for cls, values in (("dog", (30, 40)), ("cat", (10, 20))):
        (root / cls).mkdir(parents=True)
        for k, v in enumerate(values):
            (root / cls / f"{k:03d}.png").write_bytes(png_bytes(rgb(v, 6 + 4 * k, 8)))
    (root / "cat" / "sub").mkdir()
    (root / "cat" / "sub" / "gray.PNG").write_bytes(gray_png())
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()  # no images: not a class
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.png").write_bytes(gray_png())
    return root


def test_folder_imagefolder_layout(image_folder: Path) -> None:
    ds = open_dataset(f"folder:{image_folder}")
    assert len(ds) == 5
    assert ds.classes == ["cat", "dog"]
    assert list(ds.ids) == ["cat/000.png", "cat/001.png", "cat/sub/gray.PNG", "dog/000.png", "dog/001.png"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.labels.dtype == np.int64 and ds.num_classes == 2
    assert list(open_dataset(f"folder:{image_folder}").ids) == list(ds.ids)  # stable across opens
    assert np.array_equal(ds.load(3), rgb(30))
    assert np.array_equal(ds.load(1), rgb(20, 10, 8))
    check_gray(ds, 2)
    x, ok = ds.load_batch([0, 1, 3], 4)  # 6x8 and 10x8 images resized to 4x4
    assert x.shape == (3, 3, 4, 4) and ok.all()


def test_folder_flat_is_unlabeled(tmp_path: Path) -> None:
    for name, v in (("b.jpeg", 5), ("a.png", 9)):
        Image.fromarray(rgb(v)).save(tmp_path / name, "PNG" if name.endswith("png") else "JPEG")
    (tmp_path / "empty_sub").mkdir()
    ds = open_dataset(f"folder:{tmp_path}")
    assert list(ds.ids) == ["a.png", "b.jpeg"]
    assert ds.labels.tolist() == [-1, -1] and ds.classes is None and not ds.has_labels
    assert np.array_equal(ds.load(0), rgb(9))
    assert ds.load(1).shape == (6, 8, 3)


def test_folder_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "good.png").write_bytes(png_bytes(rgb(3)))
    (tmp_path / "corrupt.png").write_bytes(b"definitely not a png")
    (tmp_path / "trunc.png").write_bytes(truncated_png())
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "gone.png").write_bytes(png_bytes(rgb(3)))
    ds = open_dataset(f"folder:{tmp_path}")
    (tmp_path / "gone.png").unlink()  # deleted after listing
    idx = {name: i for i, name in enumerate(ds.ids)}
    check_bad(ds, [idx["corrupt.png"], idx["trunc.png"], idx["zero.png"], idx["gone.png"]], idx["good.png"])
    with pytest.raises(UnreadableImage, match="zero-byte"):
        ds.load(idx["zero.png"])


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ThresherError) as e:
        open_dataset(f"folder:{tmp_path / 'empty'}")
    msg = one_line_error(e)
    assert "no images found under" in msg and "png" in msg and "tiff" in msg
    with pytest.raises(ThresherError) as e:
        open_dataset(f"folder:{tmp_path / 'nope'}")
    assert "does not exist" in one_line_error(e)
    mixed = tmp_path / "mixed"
    (mixed / "cls").mkdir(parents=True)
    (mixed / "cls" / "a.png").write_bytes(gray_png())
    (mixed / "loose.png").write_bytes(gray_png())
    with pytest.raises(ThresherError) as e:
        open_dataset(f"folder:{mixed}")
    assert "loose.png" in one_line_error(e)
    with pytest.raises(ThresherError) as e:
        open_dataset(f"folder:{mixed}?labels=1")
    assert "unknown option 'labels'" in one_line_error(e)


# --- wds -------------------------------------------------------------------------------------------


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    d = tmp_path / "shards"
    d.mkdir()
    write_tar(
        d / "train-000000.tar",
        [
            ("s0/a.png", png_bytes(rgb(10))),
            ("s0/a.cls", b"1\n"),
            ("s0/b.jpg", png_bytes(rgb(20, 12, 9))),
            ("s0/b.json", b"{}"),
            ("s0/b.cls.txt", b"0"),
            ("s0/meta.json", b"{}"),  # a sample without an image is skipped
        ],
    )
    write_tar(
        d / "train-000001.tar",
        [
            ("./c.seg.png", png_bytes(rgb(99))),
            ("./c.png", gray_png()),
            ("./c.label", b"2"),
            ("d.png", b"garbage"),
            ("e.png", b""),
            ("f.png", truncated_png()),
            ("g.webp", png_bytes(rgb(50))),
        ],
    )
    (d / "classes.txt").write_text("zero\none\ntwo\n")
    return d


def test_wds_pattern_index_and_labels(shards: Path) -> None:
    ds = open_dataset(f"wds:{shards}/train-{{000000..000001}}.tar")
    assert list(ds.ids) == ["s0/a", "s0/b", "c", "d", "e", "f", "g"]
    assert ds.labels.tolist() == [1, 0, 2, -1, -1, -1, -1]
    assert ds.classes == ["zero", "one", "two"]
    assert np.array_equal(ds.load(0), rgb(10))
    assert np.array_equal(ds.load(1), rgb(20, 12, 9))
    assert np.array_equal(ds.load(6), rgb(50))
    check_gray(ds, 2)  # 'png' wins over 'seg.png' for sample c
    x, ok = ds.load_batch([0, 1], 6)
    assert x.shape == (2, 3, 6, 6) and ok.all()
    check_bad(ds, [3, 4, 5], 0)


def test_wds_folder_single_tar_and_brace_list(shards: Path) -> None:
    assert len(open_dataset(f"wds:{shards}")) == 7
    one = open_dataset(f"wds:{shards / 'train-000000.tar'}")
    assert list(one.ids) == ["s0/a", "s0/b"]
    listed = open_dataset(f"wds:{shards}/train-00000{{1,0}}.tar")
    assert list(listed.ids)[:2] == ["c", "d"]


def test_wds_reopens_after_fork_and_pickles(shards: Path) -> None:
    ds = open_dataset(f"wds:{shards}")
    first = ds.load(0)
    ds._pid = -1  # as if this were a forked worker: handles must be reopened, not reused
    assert np.array_equal(ds.load(0), first) and ds._pid == os.getpid()
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone.load(0), first) and list(clone.ids) == list(ds.ids)


def test_wds_no_classes_file_infers_num_classes(tmp_path: Path) -> None:
    write_tar(tmp_path / "x.tar", [("k1.png", gray_png()), ("k1.cls", b"4")])
    ds = open_dataset(f"wds:{tmp_path / 'x.tar'}")
    assert ds.classes is None and ds.num_classes == 5


def test_wds_errors(shards: Path, tmp_path: Path) -> None:
    write_tar(tmp_path / "dup-0.tar", [("k.png", gray_png())])
    write_tar(tmp_path / "dup-1.tar", [("k.png", gray_png())])
    with pytest.raises(ThresherError) as e:
        open_dataset(f"wds:{tmp_path}/dup-{{0..1}}.tar")
    msg = one_line_error(e)
    assert "'k'" in msg and "dup-0.tar" in msg and "dup-1.tar" in msg
    with pytest.raises(ThresherError) as e:
        open_dataset(f"wds:{tmp_path}/none-{{0..3}}.tar")
    assert "no shard files match" in one_line_error(e)
    with pytest.raises(ThresherError) as e:
        open_dataset(f"wds:{shards}/train-{{000000..000002}}.tar")
    assert "missing" in one_line_error(e)
    (tmp_path / "notatar.tar").write_bytes(b"hello" * 200)
    with pytest.raises(ThresherError) as e:
        open_dataset(f"wds:{tmp_path / 'notatar.tar'}")
    assert "uncompressed tar" in one_line_error(e)
    with pytest.raises(ThresherError) as e:
        open_dataset(f"wds:{shards}?shuffle=1")
    assert "unknown option 'shuffle'" in one_line_error(e)


def test_wds_never_extracts(tmp_path: Path) -> None:
    write_tar(tmp_path / "evil.tar", [("../../escape.png", gray_png())])
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    ds = open_dataset(f"wds:{tmp_path / 'evil.tar'}")
    assert list(ds.ids) == ["../../escape"]
    assert ds.load(0).shape == (5, 5, 1)
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before


def test_expand_braces() -> None:
    assert expand_braces("a-{000008..000011}.tar") == [f"a-{i:06d}.tar" for i in range(8, 12)]
    assert expand_braces("{1..3}") == ["1", "2", "3"]
    assert expand_braces("{3..1}") == ["3", "2", "1"]
    assert expand_braces("{0..6..3}") == ["0", "3", "6"]
    assert expand_braces("{a,b}{1,2}") == ["a1", "a2", "b1", "b2"]
    assert expand_braces("x{a,{b,c}}y") == ["xay", "xby", "xcy"]
    assert expand_braces("{a..c}") == ["a", "b", "c"]
    assert expand_braces("{x,}z") == ["xz", "z"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    assert expand_braces("{single}.tar") == ["{single}.tar"]  # not a brace expression: literal, like bash
    assert expand_braces("{a{1,2}") == ["{a1", "{a2"]
    with pytest.raises(ThresherError):
        expand_braces("{0..99999999}")


def test_split_member_name() -> None:
    assert split_member_name("dir/sub/abc.seg.PNG") == ("dir/sub/abc", "seg.png")
    assert split_member_name("./abc.jpg") == ("abc", "jpg")
    assert split_member_name("dir/noext") is None
    assert split_member_name("dir/._abc.jpg") is None


# --- hf --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("hf")
    images = [
        {"bytes": png_bytes(rgb(10)), "path": None},
        {"bytes": gray_png(), "path": None},
        {"bytes": png_bytes(rgb(30, 12, 10)), "path": None},
        {"bytes": b"garbage", "path": None},
        {"bytes": b"", "path": None},
        {"bytes": truncated_png(), "path": None},
    ]
    features = datasets.Features(
        {
            "picture": datasets.Image(),
            "name": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["ant", "bee"]),
        }
    )
    columns = {"picture": images, "name": [f"n{i}" for i in range(6)], "label": [1, 0, 1, 0, 0, 1]}
    ds = datasets.Dataset.from_dict(columns, features=features)
    ds.save_to_disk(str(root / "single"))
    splits = datasets.DatasetDict({"train": ds.select([0, 1, 2]), "test": ds.select([2])})
    splits.save_to_disk(str(root / "dd"))
    # A plain struct column (no Image feature, so save_to_disk does not embed the file): read via the path.
    (root / "pic.png").write_bytes(png_bytes(rgb(60)))
    struct = datasets.Features({"img": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}})
    datasets.Dataset.from_dict({"img": [{"bytes": None, "path": str(root / "pic.png")}]}, features=struct).save_to_disk(
        str(root / "paths")
    )
    return root


def test_hf_dataset(hf_root: Path) -> None:
    ds = open_dataset(f"hf:{hf_root / 'single'}")  # the only Image column is found without ?image=
    assert len(ds) == 6
    assert list(ds.ids) == [f"row-{i:06d}" for i in range(6)]
    assert ds.classes == ["ant", "bee"] and ds.labels.tolist() == [1, 0, 1, 0, 0, 1]
    assert np.array_equal(ds.load(0), rgb(10))
    check_gray(ds, 1)
    x, ok = ds.load_batch([0, 2], 5)
    assert x.shape == (2, 3, 5, 5) and ok.all()
    check_bad(ds, [3, 4, 5], 0)
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone.load(2), rgb(30, 12, 10))


def test_hf_options(hf_root: Path) -> None:
    ds = open_dataset(f"hf:{hf_root / 'single'}?image=picture&label=&id=name")
    assert list(ds.ids) == [f"n{i}" for i in range(6)]
    assert ds.labels.tolist() == [-1] * 6 and ds.classes is None
    paths = open_dataset(f"hf:{hf_root / 'paths'}?image=img")
    assert np.array_equal(paths.load(0), rgb(60)) and not paths.has_labels
    with pytest.raises(ThresherError) as e:
        open_dataset(f"hf:{hf_root / 'single'}?lable=x")
    assert "did you mean 'label'" in one_line_error(e)
    with pytest.raises(ThresherError) as e:
        open_dataset(f"hf:{hf_root / 'single'}?image=pictures")
    assert "did you mean 'picture'" in one_line_error(e)


def test_hf_dataset_dict(hf_root: Path) -> None:
    train = open_dataset(f"hf:{hf_root / 'dd'}:train")
    test = open_dataset(f"hf:{hf_root / 'dd'}:test")
    assert len(train) == 3 and len(test) == 1
    assert np.array_equal(test.load(0), rgb(30, 12, 10)) and test.labels.tolist() == [1]
    with pytest.raises(ThresherError) as e:
        open_dataset(f"hf:{hf_root / 'dd'}")
    msg = one_line_error(e)
    assert "train" in msg and "test" in msg
    with pytest.raises(ThresherError) as e:
        open_dataset(f"hf:{hf_root / 'dd'}:tran")
    assert "did you mean 'train'" in one_line_error(e)


def test_hf_errors(hf_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ThresherError) as e:
        open_dataset(f"hf:{tmp_path}")
    assert "save_to_disk" in one_line_error(e)
    with pytest.raises(ThresherError) as e:
        open_dataset(f"hf:{tmp_path / 'missing'}")
    assert "does not exist" in one_line_error(e)
    with pytest.raises(ThresherError) as e:
        open_dataset(f"hf:{hf_root / 'single'}:train")
    assert "not a DatasetDict" in one_line_error(e)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
    with pytest.raises(ThresherError) as e:
        open_dataset(f"hf:{broken}")
    assert "missing" in one_line_error(e)


# --- captions (issue 21) -------------------------------------------------------------------------------


def test_folder_captions_file(image_folder: Path) -> None:
    (image_folder / "captions.tsv").write_text("dog/000.png\ta brown dog\n\ncat/sub/gray.PNG\tA grey cat \n")
    ds = open_dataset(f"folder:{image_folder}")
    by_id = dict(zip(ds.ids, ds.captions, strict=True))
    assert by_id["dog/000.png"] == "a brown dog" and by_id["cat/sub/gray.PNG"] == "A grey cat"
    assert by_id["cat/000.png"] == ""  # not listed
    assert open_dataset(f"folder:{image_folder / 'dog'}").captions is None
    (image_folder / "captions.tsv").write_text("dog/999.png\tnobody\n")
    with pytest.raises(ThresherError, match=r"captions.tsv line 1: 'dog/999.png' is not an image of this folder"):
        open_dataset(f"folder:{image_folder}")
    (image_folder / "captions.tsv").write_text("dog/000.png a dog\n")
    with pytest.raises(ThresherError, match="line 1: expected 'relative/path<TAB>caption', found no tab"):
        open_dataset(f"folder:{image_folder}")


def test_wds_captions_from_txt_and_json_members(tmp_path: Path) -> None:
    write_tar(tmp_path / "s.tar", [
        ("a.png", png_bytes(rgb(10))), ("a.txt", b"a red square\n"),
        ("b.png", png_bytes(rgb(20))), ("b.json", b'{"caption": "a darker square", "width": 8}'),
        ("c.png", png_bytes(rgb(30))),
    ])  # fmt: skip
    ds = open_dataset(f"wds:{tmp_path / 's.tar'}")
    assert list(ds.captions) == ["a red square", "a darker square", ""]
    assert ds.batch_targets(np.array([1]), 8) == {"captions": ["a darker square"]}
    write_tar(tmp_path / "plain.tar", [("a.png", png_bytes(rgb(10)))])
    assert open_dataset(f"wds:{tmp_path / 'plain.tar'}").captions is None
    write_tar(tmp_path / "bad.tar", [("a.png", png_bytes(rgb(10))), ("a.json", b"{not json")])
    with pytest.raises(ThresherError, match="sample 'a' has a json member that is not JSON"):
        _ = open_dataset(f"wds:{tmp_path / 'bad.tar'}").captions


def test_hf_caption_column(hf_root: Path) -> None:
    ds = open_dataset(f"hf:{hf_root / 'single'}?caption=name")
    assert list(ds.captions[:2]) == ["n0", "n1"] and open_dataset(f"hf:{hf_root / 'single'}").captions is None
    with pytest.raises(ThresherError, match="caption column 'label' .* not text"):
        open_dataset(f"hf:{hf_root / 'single'}?caption=label")
