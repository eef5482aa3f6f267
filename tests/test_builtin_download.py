"""Obtaining the built-ins without ../shared/data (issue 15): the Tiny ImageNet recipe against a plain NumPy rendering,
resumable checksummed downloads against a local HTTP server, first use, ``data download`` and ``doctor``.

Nothing here reaches the network: the server runs on 127.0.0.1 and ``loopback_only`` fails any other connection.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thresher.data import open_dataset
from thresher.data import tinyimagenet as ti
from thresher.data.download import Remote, fetch
from thresher.errors import ThresherError

from conftest import run_cli
from http_fixture import RangeServer
from tiny_archive import make_tiny_archive, synthetic_classes


# --- the recipe, written out plainly ------------------------------------------------------------------------------
def numpy_recipe(archive: Path, k_train: int | None, k_val: int | None) -> dict:
    """The README's recipe, step by step, on the archive's JPEGs decoded by Pillow: {split: (images, labels, ids)}
    and the classes.txt text."""
    zf = zipfile.ZipFile(archive)
    root = "tiny-imagenet-200/"
    wnids = sorted(zf.read(root + "wnids.txt").decode().split())
    words = dict(line.split("\t", 1) for line in zf.read(root + "words.txt").decode().splitlines())
    names = zf.namelist()
    cands = {
        "train": [sorted(n for n in names if n.startswith(f"{root}train/{w}/images/")) for w in wnids],
        "val": [[] for _ in wnids],
    }
    for line in zf.read(root + "val/val_annotations.txt").decode().splitlines():
        f, w = line.split("\t")[:2]
        cands["val"][wnids.index(w)].append(f"{root}val/images/{f}")
    cands["val"] = [sorted(c) for c in cands["val"]]
    out = {}
    for split, k in (("train", k_train), ("val", k_val)):
        rng = np.random.default_rng(0)
        images, labels, ids = [], [], []
        for label, files in enumerate(cands[split]):
            chosen = range(len(files)) if k is None else sorted(rng.choice(len(files), size=k, replace=False))
            for i in chosen:
                rgb = np.asarray(Image.open(io.BytesIO(zf.read(files[i]))).convert("RGB"), dtype=np.float64)
                mean = rgb.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
                images.append(np.floor(mean + 0.5).astype(np.uint8))
                labels.append(label)
                ids.append(Path(files[i]).stem)
        out[split] = (np.stack(images), np.array(labels), ids)
    classes = "".join(f"{w}\t{words[w].strip()}\n" for w in wnids)
    return {"splits": out, "classes": classes}


def assert_matches(folder: Path, expected: dict) -> None:
    for split, (images, labels, ids) in expected["splits"].items():
        ds = open_dataset(f"npz:{folder}:{split}")
        np.testing.assert_array_equal(np.asarray(ds.images), images)
        np.testing.assert_array_equal(ds.labels, labels)
        assert list(ds.ids) == ids
    assert (folder / "classes.txt").read_text() == expected["classes"]


@pytest.fixture(scope="module")
def real_archive(tmp_path_factory, shared_data_dir) -> Path:
    """5 classes of the real pool (12 train + 5 val images each, some grayscale) as an official-layout zip."""
    pool = np.load(shared_data_dir / "tiny-imagenet-200-32px" / "train.npz")
    classes = (shared_data_dir / "tiny-imagenet-200-32px" / "classes.txt").read_text().splitlines()
    labels = pool["labels"]
    picked = [3, 50, 77, 120, 199]
    train, val = {}, {}
    for c in picked:
        idx = np.flatnonzero(labels == c)
        wnid = classes[c].split("\t")[0]
        train[wnid], val[wnid] = pool["images"][idx[:12]], pool["images"][idx[12:17]]
    return make_tiny_archive(tmp_path_factory.mktemp("archive") / "tiny-imagenet-200.zip", train, val, gray_every=7)


@pytest.mark.realdata
@pytest.mark.parametrize("k", [(7, 3), (None, None)], ids=["drawn", "full"])
def test_recipe_matches_numpy_rendering(real_archive, tmp_path, k):
    """Zip and unpacked folder both convert to exactly the plain rendering: pixels, labels, ids, classes."""
    expected = numpy_recipe(real_archive, *k)
    assert expected["splits"]["train"][0].shape == (5 * (k[0] or 12), 32, 32, 3)
    prov = ti.convert(real_archive, tmp_path / "from-zip", draw_per_class=ti.Draw(*k), progress=False, log=lambda m: 0)
    assert_matches(tmp_path / "from-zip", expected)
    assert prov["counts"] == {"train": 5 * (k[0] or 12), "val": 5 * (k[1] or 5)}
    assert prov["official_archive"] is False and len(prov["archive_md5"]) == 32
    with zipfile.ZipFile(real_archive) as zf:
        zf.extractall(tmp_path / "unpacked")
    ti.convert(tmp_path / "unpacked", tmp_path / "from-folder", draw_per_class=ti.Draw(*k), progress=False, log=print)
    assert_matches(tmp_path / "from-folder", expected)


@pytest.mark.realdata
def test_converted_pixels_are_the_pool_images(real_archive, tmp_path, shared_data_dir):
    """Upsampled 2x and box-downsampled back, a pool image comes back within JPEG error: the conversion is the
    inverse of the archive's construction (the grayscale ones aside)."""
    ti.convert(real_archive, tmp_path / "c", draw_per_class=ti.Draw(None, None), progress=False, log=print)
    pool = np.load(shared_data_dir / "tiny-imagenet-200-32px" / "train.npz")
    first = pool["images"][np.flatnonzero(pool["labels"] == 3)[0]]
    ds = open_dataset(f"npz:{tmp_path / 'c'}:train")
    i = list(ds.ids).index(f"{ds.classes[0]}_0")
    assert np.abs(ds.load(i).astype(int) - first.astype(int)).mean() < 4


def test_draw_is_sorted_without_replacement_and_class_by_class():
    cands = [[f"a{i:02d}" for i in range(10)], [f"b{i:02d}" for i in range(6)]]
    kept = ti.draw(cands, 4, seed=0)
    rng = np.random.default_rng(0)
    first, second = sorted(rng.choice(10, 4, replace=False)), sorted(rng.choice(6, 4, replace=False))
    assert kept == [(0, f"a{i:02d}") for i in first] + [(1, f"b{i:02d}") for i in second]
    assert ti.draw(cands, None) == [(0, n) for n in cands[0]] + [(1, n) for n in cands[1]]


def test_downsample_rounds_half_up():
    img = np.array([[[0], [1]], [[0], [1]]], dtype=np.uint8).repeat(3, axis=2)  # mean 0.5 -> 1
    assert ti.downsample(img)[0, 0, 0] == 1
    img = np.full((2, 2, 3), 255, dtype=np.uint8)
    assert ti.downsample(img)[0, 0, 0] == 255  # no overflow in the sum


@pytest.fixture
def synthetic_archive(tmp_path) -> Path:
    train, val = synthetic_classes(3, 6, 3)
    return make_tiny_archive(tmp_path / "src" / "tiny-imagenet-200.zip", train, val)


@pytest.fixture
def fresh_cache(no_shared_data) -> Path:
    return no_shared_data


def test_first_use_converts_an_archive_in_the_cache_offline(synthetic_archive, fresh_cache, capsys):
    """THRESHER_OFFLINE forbids the network, not a conversion: an archive put in the cache is converted on first use,
    and found (not converted again) next time."""
    (fresh_cache / "downloads").mkdir(parents=True)
    (fresh_cache / "downloads" / "tiny-imagenet-200.zip").write_bytes(synthetic_archive.read_bytes())
    ds = open_dataset("builtin:tiny-imagenet-32:train")
    assert len(ds) == 12 and ds.num_classes == 3 and ds.source == str(fresh_cache / "data" / ds_folder() / "train.npz")
    err = capsys.readouterr().err
    assert "ImageNet terms" in err and "non-commercial" in err and "not the official archive's" in err
    before = (fresh_cache / "data" / ds_folder() / "train.npz").stat().st_mtime_ns
    assert len(open_dataset("builtin:tiny-imagenet-32:val")) == 6
    assert (fresh_cache / "data" / ds_folder() / "train.npz").stat().st_mtime_ns == before
    assert "converting" not in capsys.readouterr().err


def ds_folder() -> str:
    from thresher.data.builtin import BUILTINS

    return BUILTINS["tiny-imagenet-32"].folder


def test_offline_without_archive_gives_the_command_and_the_place(fresh_cache):
    with pytest.raises(ThresherError) as exc:
        open_dataset("builtin:tiny-imagenet-32:train")
    msg = str(exc.value)
    assert "THRESHER_OFFLINE is set" in msg and "`thresher data download tiny-imagenet-32 --from FILE`" in msg
    assert str(fresh_cache / "downloads" / "tiny-imagenet-200.zip") in msg and ti.ARCHIVE.url in msg
    assert "\n" not in msg and len(msg) < 400  # the CLI prints errors on one line of at most 400 characters


# --- downloads against the local server ---------------------------------------------------------------------------
PAYLOAD = np.random.default_rng(3).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
REMOTE = Remote("http://unused.invalid/f.zip", "f.zip", hashlib.md5(PAYLOAD).hexdigest(), len(PAYLOAD))


def quiet(msg: str) -> None:
    pass


def test_download_whole_file(loopback_only, tmp_path):
    with RangeServer({"/f.zip": PAYLOAD}) as srv:
        out = fetch(REMOTE, tmp_path / "f.zip", url=srv.url("/f.zip"), progress=False, log=quiet)
    assert out.read_bytes() == PAYLOAD and not (tmp_path / "f.zip.part").exists()
    assert srv.requests == [{"path": "/f.zip", "range": None}]


def test_download_resumes_after_a_cut(loopback_only, tmp_path):
    """The connection drops twice mid-transfer; each retry asks for the rest with Range and the file is whole."""
    with RangeServer({"/f.zip": PAYLOAD}, cut_after=700_000, cuts=2) as srv:
        fetch(REMOTE, tmp_path / "f.zip", url=srv.url("/f.zip"), progress=False, log=quiet, backoff=0)
    assert (tmp_path / "f.zip").read_bytes() == PAYLOAD
    assert [r["range"] for r in srv.requests] == [None, "bytes=700000-", "bytes=1400000-"]


def test_download_resumes_a_part_left_by_an_earlier_command(loopback_only, tmp_path):
    (tmp_path / "f.zip.part").write_bytes(PAYLOAD[:1_234_567])
    logs = []
    with RangeServer({"/f.zip": PAYLOAD}) as srv:
        fetch(REMOTE, tmp_path / "f.zip", url=srv.url("/f.zip"), progress=False, log=logs.append)
    assert (tmp_path / "f.zip").read_bytes() == PAYLOAD
    assert srv.requests[0]["range"] == "bytes=1234567-" and "resuming at 1.2 MB" in logs[0]


def test_download_from_a_server_that_ignores_range_starts_over(loopback_only, tmp_path):
    (tmp_path / "f.zip.part").write_bytes(b"x" * 1000)  # not even a prefix: a 200 must replace it, not append
    with RangeServer({"/f.zip": PAYLOAD}, honour_range=False) as srv:
        fetch(REMOTE, tmp_path / "f.zip", url=srv.url("/f.zip"), progress=False, log=quiet)
    assert (tmp_path / "f.zip").read_bytes() == PAYLOAD


def test_download_gives_up_after_retries_and_keeps_the_part(loopback_only, tmp_path):
    with RangeServer({"/f.zip": PAYLOAD}, cut_after=100_000, cuts=10) as srv:
        with pytest.raises(ThresherError, match=r"stopped at 300,000 of 3,000,000 bytes .* run the same command again"):
            fetch(REMOTE, tmp_path / "f.zip", url=srv.url("/f.zip"), progress=False, log=quiet, retries=2, backoff=0)
        assert (tmp_path / "f.zip.part").stat().st_size == 300_000 and not (tmp_path / "f.zip").exists()
        srv.cuts = 0
        fetch(REMOTE, tmp_path / "f.zip", url=srv.url("/f.zip"), progress=False, log=quiet)  # the next command
    assert (tmp_path / "f.zip").read_bytes() == PAYLOAD and srv.requests[-1]["range"] == "bytes=300000-"


def test_download_with_a_wrong_checksum_is_deleted(loopback_only, tmp_path):
    wrong = replace(REMOTE, md5="0" * 32)
    with RangeServer({"/f.zip": PAYLOAD}) as srv:
        with pytest.raises(ThresherError, match=r"has MD5 [0-9a-f]{32}, expected 0{32}.*it was deleted"):
            fetch(wrong, tmp_path / "f.zip", url=srv.url("/f.zip"), progress=False, log=quiet)
    assert list(tmp_path.iterdir()) == [tmp_path / ".f.zip.lock"]


def test_download_of_another_file_or_a_missing_one(loopback_only, tmp_path):
    with RangeServer({"/f.zip": PAYLOAD[:1000]}) as srv:
        with pytest.raises(ThresherError, match="serves 1,000 bytes, expected 3,000,000"):
            fetch(REMOTE, tmp_path / "f.zip", url=srv.url("/f.zip"), progress=False, log=quiet)
        with pytest.raises(ThresherError, match="HTTP 404"):
            fetch(REMOTE, tmp_path / "f.zip", url=srv.url("/nope.zip"), progress=False, log=quiet)


# --- the command line ----------------------------------------------------------------------------------------------
cli = run_cli


def test_data_download_from_the_server_then_found(loopback_only, synthetic_archive, fresh_cache, monkeypatch, capsys):
    """`thresher data download` prints the terms, downloads, converts into the cache; a second call finds the copy,
    `--force` converts again from the kept archive without downloading it again."""
    data = synthetic_archive.read_bytes()
    monkeypatch.delenv("THRESHER_OFFLINE")
    with RangeServer({"/tiny-imagenet-200.zip": data}) as srv:
        remote = Remote(
            srv.url("/tiny-imagenet-200.zip"), "tiny-imagenet-200.zip", hashlib.md5(data).hexdigest(), len(data)
        )
        monkeypatch.setattr(ti, "ARCHIVE", remote)
        code, out, err = cli(capsys, "data", "download", "tiny-imagenet-32")
        assert code == 0, err
        assert "ImageNet terms" in out and "builtin:tiny-imagenet-32 is ready" in out and "train 12, val 6" in out
        assert len(srv.requests) == 1
        code, out, _ = cli(capsys, "data", "download", "tiny-imagenet-32")
        assert "already in" in out
        code, out, _ = cli(capsys, "data", "download", "tiny-imagenet-32", "--force")
        assert code == 0 and "is ready" in out and len(srv.requests) == 1
    prov = json.loads((fresh_cache / "data" / ds_folder() / "provenance.json").read_text())
    assert prov["archive_md5"] == remote.md5 and prov["per_class"] == {"train": 4, "val": 2}
    assert len(open_dataset("builtin:tiny-imagenet-32:train")) == 12


def test_data_download_from_file_into_a_chosen_root(synthetic_archive, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ti.VARIANTS, "tiny-imagenet-32-full", ti.Draw(None, None))
    code, out, err = cli(
        capsys, "data", "download", "tiny-imagenet-32-full", "--from", synthetic_archive, "--to", tmp_path / "root"
    )
    assert code == 0, err
    assert "train 18, val 9" in out and "not in the lookup order" in out and "--data-root" in out
    ds = open_dataset("builtin:tiny-imagenet-32-full:train", data_root=str(tmp_path / "root"))
    assert len(ds) == 18 and ds.ids[0].endswith("_0")


def test_doctor_reports_builtins_device_and_disk(fresh_cache, capsys):
    code, out, err = cli(capsys, "doctor")
    assert code == 0, err
    assert "torch" in out and "threads" in out and "GB free" in out
    assert "tiny-imagenet-32 " in out and "missing" in out and "THRESHER_OFFLINE is set" in out
    code, out, _ = cli(capsys, "doctor", "--json")
    report = json.loads(out)
    assert report["builtins"]["tiny-imagenet-32"]["present"] is False
    assert report["cache"]["path"] == str(fresh_cache) and report["device"]["threads"] >= 1
    assert any("THRESHER_OFFLINE" in w for w in report["warnings"])


@pytest.mark.realdata
def test_doctor_counts_the_shared_copy(shared_data_dir, capsys):
    report = json.loads(cli(capsys, "doctor", "--json")[1])
    train = report["builtins"]["tiny-imagenet-32"]["splits"]["train"]
    assert train["shape"] == [30000, 32, 32, 3] and train["path"].endswith("train.npz")
