"""The catalogue of bad inputs (issue 9, docs/errors.md): each drives the real CLI and expects one clear line.

Every case asserts exit code 2, exactly one stderr line starting ``thresher: error:``, no traceback, a fragment
saying what to fix, and, where a run folder with earlier results is involved, that those results are byte-identical
afterwards. ``test_docs_table_lists_every_test`` keeps docs/errors.md and this module in step.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from conftest import REPO, make_npz, run_cli
from http_fixture import RangeServer
from tiny_archive import make_tiny_archive, synthetic_classes

E = ("--backbone", "small-cnn", "--resolution", "12")  # the tiny model every run here uses
P = (*E, "--epochs", "1", "--batch-size", "16")  # a 4-step pre-training on a 64-image npz
T = ("--backbone", "small-cnn", "--resolution", "8", "--batch-size", "8")  # 2 steps an epoch on ``small_npz``
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads files whatever their permissions


# --- helpers ------------------------------------------------------------------------------------------------------
run = run_cli  # thresher ARGS in-process: (exit code, stdout, stderr)


def fails(capsys, *args, match: str) -> str:
    """Run the CLI and check the error contract; returns the error line."""
    code, out, err = run(capsys, *args)
    assert "Traceback" not in out + err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {err!r}"
    line = lines[0]
    assert line.startswith("thresher: error: "), line
    assert code == 2, (code, line)
    assert match in line, f"{match!r} not in {line!r}"
    return line


@contextlib.contextmanager
def untouched(folder: Path) -> Iterator[None]:
    """Assert that every file below ``folder`` is byte-identical after the block (earlier results never damaged)."""
    before = snapshot(folder)
    yield
    assert snapshot(folder) == before


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def png(value: int, size: int = 10) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def bad_images(folder: Path) -> list[str]:
    """A corrupt, a truncated and a zero-byte image in ``folder`` (class sub-folder ``a``); returns their ids."""
    (folder / "a").mkdir(parents=True, exist_ok=True)
    (folder / "a" / "corrupt.png").write_bytes(b"this is not a png at all")
    (folder / "a" / "truncated.png").write_bytes(png(90)[:40])
    (folder / "a" / "empty.png").write_bytes(b"")
    return ["a/corrupt.png", "a/empty.png", "a/truncated.png"]


def unreadable(path: Path, monkeypatch) -> None:
    """``chmod 000`` on ``path``. Root reads such files anyway, so for root opening it is also made to fail with
    EACCES, as it does for any other user."""
    path.chmod(0)
    if not ROOT:
        return
    real = io.open

    def denied(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.fspath(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", denied)
    monkeypatch.setattr(builtins, "open", denied)


def arrays(path: Path, **members) -> str:
    """An npz holding ``members`` (bad on purpose), as a spec."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **members)
    return f"npz:{path}"


def images(n: int = 8) -> np.ndarray:
    return np.zeros((n, 12, 12, 3), np.uint8)


def yaml_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def small_npz(tmp_path) -> Path:
    """16 images: runs that really train take 2 steps an epoch (batch size 8)."""
    return make_npz(tmp_path / "small" / "train.npz", n=16)


@pytest.fixture
def embedded(tiny_npz, tmp_path, capsys) -> Path:
    """A finished embed run folder (the earlier results later commands must not touch)."""
    out = tmp_path / "emb"
    code, _, err = run(capsys, "embed", f"npz:{tiny_npz}", *E, "--out", out)
    assert code == 0, err
    return out


@pytest.fixture
def scores_dir(tiny_npz, tmp_path) -> Path:
    """A score folder over the 64-image pool: a good column, one with a NaN, one with an inf."""
    labels = np.arange(64) % 4
    good = labels + np.linspace(0, 0.5, 64)
    folder = tmp_path / "scores"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "id": [f"train-{i:06d}" for i in range(64)],
                "label": labels,
                "index": np.arange(64),
                "max_target_cosine": np.full(64, 0.5),
                "near_duplicate": np.zeros(64, bool),
                "unreadable": np.zeros(64, bool),
                "good": good,
                "nan": np.where(np.arange(64) == 5, np.nan, good),
                "inf": np.where(np.arange(64) == 7, np.inf, good),
            }
        ),
        folder / "scores.parquet",
    )
    (folder / "scores.json").write_text(json.dumps({"source": f"npz:{tiny_npz}", "classes": ["c0", "c1", "c2", "c3"]}))
    return folder


@pytest.fixture
def selection(scores_dir, tmp_path, capsys) -> Path:
    out = tmp_path / "sel"
    code, _, err = run(capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "16", "--out", out)
    assert code == 0, err
    return out


# --- dataset specs --------------------------------------------------------------------------------------------
def test_missing_dataset_file(tmp_path, capsys):
    fails(capsys, "data", "info", f"npz:{tmp_path / 'missing.npz'}", match="does not exist")


def test_dataset_spec_without_scheme(capsys):
    fails(capsys, "data", "info", "train.npz", match="needs the form SCHEME:PATH")


def test_unknown_dataset_kind(capsys):
    fails(capsys, "data", "info", "foo:bar", match="unknown dataset kind 'foo'")


def test_unknown_builtin_name(capsys):
    fails(capsys, "data", "info", "builtin:cifar100", match="did you mean 'cifar10'")


def test_unknown_builtin_split(capsys):
    fails(capsys, "data", "info", "builtin:cifar10:trian", match="has no split 'trian' (splits: train, test)")


def test_unknown_dataset_spec_option(tiny_npz, capsys):
    fails(capsys, "data", "info", f"npz:{tiny_npz}?imag=x", match="unknown option 'imag'")


# --- arrays: shapes, dtypes, labels ---------------------------------------------------------------------------
def test_npz_images_wrong_shape(tmp_path, capsys):
    spec = arrays(tmp_path / "d.npz", images=np.zeros((8, 12), np.uint8), labels=np.zeros(8, int))
    fails(capsys, "data", "info", spec, match="images must be N x H x W x C with C = 1 or 3, got shape (8, 12)")


def test_npz_images_wrong_channels(tmp_path, capsys):
    spec = arrays(tmp_path / "d.npz", images=np.zeros((8, 12, 12, 2), np.uint8))
    fails(capsys, "embed", spec, *E, "--out", tmp_path / "e", match="got shape (8, 12, 12, 2)")
    assert not (tmp_path / "e").exists()


def test_npz_images_wrong_dtype(tmp_path, capsys):
    spec = arrays(tmp_path / "d.npz", images=images().astype(np.float32), labels=np.zeros(8, int))
    fails(capsys, "pretrain", spec, *P, "--out", tmp_path / "p", match="images must be uint8, got float32")


def test_npz_labels_wrong_length(tmp_path, capsys):
    spec = arrays(tmp_path / "d.npz", images=images(), labels=np.zeros(5, int))
    fails(capsys, "data", "info", spec, match="labels have shape (5,), expected (8,)")


def test_npz_labels_wrong_dtype(tmp_path, capsys):
    spec = arrays(tmp_path / "d.npz", images=images(), labels=np.zeros(8, np.float32))
    fails(capsys, "data", "info", spec, match="labels must be integers, got float32")


def test_negative_labels(tmp_path, capsys):
    spec = arrays(tmp_path / "d.npz", images=images(), labels=-np.arange(8))
    fails(capsys, "pretrain", spec, *P, "--out", tmp_path / "p", match="negative label -7 (use -1 for unlabeled)")


def test_labels_out_of_range(tmp_path, capsys):
    spec = arrays(tmp_path / "d" / "train.npz", images=images(), labels=np.array([0, 1, 2, 3, 7, 0, 1, 2]))
    (tmp_path / "d" / "classes.txt").write_text("a\nb\nc\nd\n")
    line = fails(capsys, "embed", spec, *E, "--out", tmp_path / "e", match="label 7 out of range for 4 classes")
    assert "labels must be 0..3" in line


def test_npz_without_images_array(tmp_path, capsys):
    spec = arrays(tmp_path / "d.npz", pixels=images())
    fails(capsys, "data", "info", spec, match="has no array 'images' (it has: pixels)")


def test_npz_object_array(tmp_path, capsys):
    ragged = np.array([np.zeros((12, 12, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)], dtype=object)
    spec = arrays(tmp_path / "d.npz", images=ragged)
    fails(capsys, "data", "info", spec, match="object arrays are not accepted")


def test_zero_byte_npz(tmp_path, capsys):
    (tmp_path / "d.npz").write_bytes(b"")
    fails(capsys, "data", "info", f"npz:{tmp_path / 'd.npz'}", match="as an .npz archive")


def test_truncated_npz(tiny_npz, tmp_path, capsys):
    data = tiny_npz.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    fails(capsys, "embed", f"npz:{tmp_path / 'cut.npz'}", *E, "--out", tmp_path / "e", match="as an .npz archive")


def test_corrupt_npz_member(tiny_npz, tmp_path, capsys):
    data = bytearray(tiny_npz.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 200):  # flip bytes inside the compressed images member
        data[i] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    fails(capsys, "data", "info", f"npz:{tmp_path / 'bad.npz'}", match="cannot decompress images.npy")


def test_corrupt_tar_shard(tmp_path, capsys):
    (tmp_path / "shard-000000.tar").write_bytes(b"not a tar archive")
    fails(
        capsys, "embed", f"wds:{tmp_path / 'shard-000000.tar'}", *E, "--out", tmp_path / "e",
        match="as an uncompressed tar",
    )  # fmt: skip


def test_corrupt_parquet_shard(tmp_path, capsys):
    (tmp_path / "part-0.parquet").write_bytes(b"not a parquet file")
    fails(
        capsys, "embed", f"parquet:{tmp_path}", *E, "--out", tmp_path / "e",
        match="as Parquet",
    )  # fmt: skip


def test_parquet_image_column_ambiguous(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"png": [b"x"], "jpg": [b"y"]}), tmp_path / "two.parquet")
    fails(
        capsys, "embed", f"parquet:{tmp_path / 'two.parquet'}", *E, "--out", tmp_path / "e",
        match="cannot tell which column holds the images; pass ?image=COLUMN",
    )  # fmt: skip


def test_subset_larger_than_dataset(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--subset", "1000", "--out", tmp_path / "e",
        match="subset of 1000 requested but the dataset has only 64 examples",
    )  # fmt: skip


def test_unreadable_npz_file(tiny_npz, capsys, monkeypatch):
    unreadable(tiny_npz, monkeypatch)
    fails(capsys, "data", "info", f"npz:{tiny_npz}", match="Permission denied")


# --- image folders: corrupt, truncated, zero-byte files ---------------------------------------------------------
def test_folder_bad_images_are_skipped_with_warning(tmp_path, capsys):
    """By design a few unreadable images are skipped with a count and their ids (not an error): exit code 0."""
    root = tmp_path / "imgs"
    bad = bad_images(root)
    for k in range(6):
        (root / "a" / f"ok{k}.png").write_bytes(png(30 * k))
    code, out, err = run(capsys, "embed", f"folder:{root}", *E, "--out", tmp_path / "e")
    assert code == 0, err
    assert f"skipped 3 unreadable image(s) (first: {', '.join(bad)})" in out and "--strict" in out
    assert "wrote 6 x" in out


def test_folder_every_image_unreadable(tmp_path, capsys):
    root = tmp_path / "imgs"
    bad_images(root)
    line = fails(capsys, "embed", f"folder:{root}", *E, "--out", tmp_path / "e", match="no image of folder:")
    assert "all 3 are unreadable" in line and "fix or remove the broken files" in line
    assert not (tmp_path / "e" / "meta.json").exists()  # no empty store that would fail later, unclearly


def test_pretrain_every_image_unreadable(tmp_path, capsys):
    root = tmp_path / "imgs"
    bad_images(root)
    line = fails(capsys, "pretrain", f"folder:{root}", *P, "--out", tmp_path / "p", match="could be trained on")
    assert "3 of 3 are unreadable" in line
    assert not (tmp_path / "p" / "checkpoint.pt").exists() and not (tmp_path / "p" / "summary.json").exists()


def test_score_target_every_image_unreadable(tiny_npz, tmp_path, capsys):
    root = tmp_path / "imgs"
    bad_images(root)
    args = ("score", "--source", f"npz:{tiny_npz}", "--target", f"folder:{root}", "-m", "random")
    fails(capsys, *args, "--out", tmp_path / "s", match="no image of the target folder:")


def test_strict_stops_at_first_unreadable_image(tmp_path, capsys):
    root = tmp_path / "imgs"
    bad_images(root)
    (root / "a" / "ok.png").write_bytes(png(40))
    line = fails(
        capsys, "embed", f"folder:{root}", *E, "--strict", "--out", tmp_path / "e", match="unreadable image 'a/"
    )
    assert "(stopped: --strict)" in line and "BytesIO" not in line


def test_data_info_strict_lists_unreadable_images(tmp_path, capsys):
    root = tmp_path / "imgs"
    bad_images(root)
    fails(capsys, "data", "info", f"folder:{root}", "--strict", match="3 unreadable image(s) in folder:")


def test_missing_dataset_folder(tmp_path, capsys):
    fails(capsys, "data", "info", f"folder:{tmp_path / 'nope'}", match="does not exist")


def test_dataset_folder_is_a_file(tiny_npz, capsys):
    fails(capsys, "data", "info", f"folder:{tiny_npz}", match="needs a folder")


def test_folder_without_images(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("no images here")
    fails(capsys, "data", "info", f"folder:{tmp_path / 'imgs'}", match="no images found under")


def test_unreadable_image_file(tmp_path, capsys, monkeypatch):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(png(10))
    unreadable(root / "a" / "x.png", monkeypatch)
    line = fails(capsys, "embed", f"folder:{root}", *E, "--strict", "--out", tmp_path / "e", match="Permission denied")
    assert "unreadable image 'a/x.png': cannot read file" in line


# --- configs ------------------------------------------------------------------------------------------------
def test_config_typo_in_set(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--set", "resoluton=32", "--out", tmp_path / "e",
        match="unknown config key 'resoluton'; did you mean 'resolution'?",
    )  # fmt: skip
    assert not (tmp_path / "e").exists()


def test_config_wrong_type_in_set(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *E, "--set", "epochs=abc", "--out", tmp_path / "p",
        match="config key 'epochs': Input should be a valid integer",
    )  # fmt: skip


def test_config_value_out_of_range(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *E, "--set", "epochs=0", "--out", tmp_path / "p",
        match="config key 'epochs': Input should be greater than or equal to 1",
    )  # fmt: skip


def test_set_without_value(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--set", "resolution", "--out", tmp_path / "e",
        match="must look like key.sub=value",
    )  # fmt: skip


def test_set_into_a_value(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--set", "resolution.x=3", "--out", tmp_path / "e",
        match="'resolution' is a value, not a section",
    )  # fmt: skip


def test_yaml_unknown_key(tiny_npz, tmp_path, capsys):
    cfg = yaml_file(tmp_path / "c.yaml", "epochz: 3\n")
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *E, "--config", cfg, "--out", tmp_path / "p",
        match="unknown config key 'epochz'; did you mean 'epochs'?",
    )  # fmt: skip


def test_yaml_not_a_mapping(tiny_npz, tmp_path, capsys):
    cfg = yaml_file(tmp_path / "c.yaml", "- epochs\n- 3\n")
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *E, "--config", cfg, "--out", tmp_path / "p",
        match="must hold a mapping of keys to values",
    )  # fmt: skip


def test_yaml_invalid(tiny_npz, tmp_path, capsys):
    cfg = yaml_file(tmp_path / "c.yaml", "epochs: [1, 2\n")
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *E, "--config", cfg, "--out", tmp_path / "p",
        match="is not valid YAML",
    )  # fmt: skip


def test_yaml_section_given_a_value(tiny_npz, tmp_path, capsys):
    cfg = yaml_file(tmp_path / "c.yaml", "optim: 0.1\n")
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *E, "--config", cfg, "--out", tmp_path / "p",
        match="config key 'optim': Input should be a valid dictionary",
    )  # fmt: skip


def test_config_file_missing(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", "--config", tmp_path / "nope.yaml", "--out", tmp_path / "e",
        match="nope.yaml does not exist",
    )  # fmt: skip


def test_config_file_is_a_folder(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", "--config", tmp_path, "--out", tmp_path / "e",
        match="is a folder; give a YAML file",
    )  # fmt: skip


def test_config_file_not_text(tiny_npz, tmp_path, capsys):
    cfg = tmp_path / "weights.yaml"
    cfg.write_bytes(b"\x80\x03\xff\xfe binary")
    fails(
        capsys, "embed", f"npz:{tiny_npz}", "--config", cfg, "--out", tmp_path / "e",
        match="cannot read config file",
    )  # fmt: skip


def test_unreadable_config_file(tiny_npz, tmp_path, capsys, monkeypatch):
    cfg = yaml_file(tmp_path / "c.yaml", "epochs: 1\n")
    unreadable(cfg, monkeypatch)
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", "--config", cfg, "--out", tmp_path / "p",
        match="cannot read config file",
    )  # fmt: skip


def test_study_missing_required_key(tmp_path, capsys):
    cfg = yaml_file(tmp_path / "study.yaml", "source: {spec: 'npz:x.npz'}\nmethods: [knn]\nbudgets: [0.1]\n")
    fails(capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run", match="config key 'targets' is required")


def test_study_unknown_method(tiny_npz, tmp_path, capsys):
    cfg = yaml_file(
        tmp_path / "study.yaml",
        f"source: {{spec: 'npz:{tiny_npz}'}}\n"
        f"targets: [{{name: t, train: {{spec: 'npz:{tiny_npz}'}}, test: {{spec: 'npz:{tiny_npz}'}}}}]\n"
        "methods: [knnn]\nbudgets: [0.1]\n",
    )
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run", match="unknown scorer 'knnn'; did you mean 'knn'"
    )


def _study(tiny_npz, tmp_path, extra: str, target: str = "", source: str | None = None) -> Path:
    """A small study file on the tiny npz, with ``extra`` YAML lines, ``target`` keys and another ``source``."""
    return yaml_file(
        tmp_path / "study.yaml",
        f"source: {source or f'{{spec: npz:{tiny_npz}}}'}\n"
        f"targets: [{{name: t, train: {{spec: 'npz:{tiny_npz}'}}, test: {{spec: 'npz:{tiny_npz}'}}{target}}}]\n"
        "methods: [knn]\nbudgets: [0.5]\n" + extra,
    )


def test_study_typo_in_score_section(tiny_npz, tmp_path, capsys):
    cfg = _study(tiny_npz, tmp_path, "score: {modls: {target_epochs: 2}}\n")
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run",
        match="unknown config key 'score.modls'; did you mean 'score.models'?",
    )  # fmt: skip


def test_study_typo_in_evaluation_section(tiny_npz, tmp_path, capsys):
    cfg = _study(tiny_npz, tmp_path, "evaluation: {protocl: linear}\n")
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run",
        match="unknown config key 'evaluation.protocl'; did you mean 'evaluation.protocol'?",
    )  # fmt: skip


def test_study_typo_in_pretrain_section(tiny_npz, tmp_path, capsys):
    cfg = _study(tiny_npz, tmp_path, "pretrain: {epochs: 1, extra: {optim: {momentun: 0.8}}}\n")
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run",
        match="unknown config key 'pretrain.extra.optim.momentun'; did you mean 'pretrain.extra.optim.momentum'?",
    )  # fmt: skip


def test_study_bad_value_in_a_section(tiny_npz, tmp_path, capsys):
    cfg = _study(tiny_npz, tmp_path, "evaluation: {finetune: {epochs: 0}}\n")
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run",
        match="config key 'evaluation.finetune.epochs': Input should be greater than or equal to 1",
    )  # fmt: skip


def test_study_compute_with_schedule_per_arm(tiny_npz, tmp_path, capsys):
    cfg = _study(tiny_npz, tmp_path, "compute: [0.5]\npretrain: {schedule_per_arm: same-steps}\n")
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run",
        match="compute sets every arm's length; drop pretrain.schedule_per_arm",
    )  # fmt: skip


def test_study_negative_compute_level(tiny_npz, tmp_path, capsys):
    cfg = _study(tiny_npz, tmp_path, "compute: [0.5, -0.25]\n")
    fails(capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run", match="compute levels are positive fractions")


def test_study_reference_with_classes_and_manifest(tiny_npz, tmp_path, capsys):
    cfg = _study(tiny_npz, tmp_path, "", target=", references: [{name: mine, classes: [0], manifest: sel/}]")
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run",
        match="reference 'mine': give classes (or ancestor) or a manifest, one of the two",
    )  # fmt: skip


def test_pool_of_sources_with_one_name_twice(tiny_npz, tmp_path, capsys):
    cfg = _study(
        tiny_npz, tmp_path, "", source=f"[{{name: a, spec: 'npz:{tiny_npz}'}}, {{name: a, spec: 'npz:{tiny_npz}'}}]"
    )
    fails(capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run", match="the pool's sources need distinct names")


def test_idx_folder_without_idx_files(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    fails(capsys, "data", "info", f"idx:{tmp_path / 'empty'}", match="apt-get install dataset-fashion-mnist")


def test_study_bad_scorer_parameter(tiny_npz, tmp_path, capsys):
    """Found by --dry-run (every stage's config is built before anything runs), named by its stage."""
    cfg = _study(tiny_npz, tmp_path, "score: {params: {knn: {kk: 3}}}\n")
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st", "--dry-run",
        match="study stage score t: bad parameters for knn:",
    )  # fmt: skip
    assert not (tmp_path / "st").exists()


def test_study_bad_objective_parameter(tiny_npz, tmp_path, capsys):
    cfg = _study(tiny_npz, tmp_path, "objectives: [simclr]\npretrain: {extra: {objective_params: {temprature: 0.2}}}\n")
    fails(
        capsys, "study", cfg, "--out", tmp_path / "st",
        match="objective simclr has no parameter temprature; it accepts:",
    )  # fmt: skip
    assert not (tmp_path / "st" / "stages").exists()  # refused before the first stage, not after the pool's


# --- the command line itself ------------------------------------------------------------------------------------
def test_bad_option_value(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", "--resolution", "abc", "--out", tmp_path / "e",
        match="Invalid value for '--resolution'",
    )  # fmt: skip


def test_missing_required_option(tiny_npz, capsys):
    line = fails(capsys, "embed", f"npz:{tiny_npz}", match="Missing option '--out'")
    assert "(see 'thresher embed --help')" in line


def test_unknown_command(capsys):
    fails(capsys, "embedd", match="No such command 'embedd'")


def test_unknown_option(tiny_npz, tmp_path, capsys):
    fails(capsys, "embed", f"npz:{tiny_npz}", "--out", tmp_path / "e", "--bogus", match="No such option: --bogus")


# --- registry names -----------------------------------------------------------------------------------------------
def test_unknown_backbone(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", "--backbone", "resnet81", "--out", tmp_path / "e",
        match="unknown backbone 'resnet81'; did you mean 'resnet18'?",
    )  # fmt: skip
    assert not (tmp_path / "e").exists()


def test_unknown_objective(tiny_npz, tmp_path, capsys):
    line = fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *P, "--objective", "supervisd", "--out", tmp_path / "p",
        match="unknown objective 'supervisd'; did you mean 'supervised'?",
    )  # fmt: skip
    assert "config key ''" not in line


def test_unknown_data_schedule(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *P, "--schedule", "drop-pick", "--out", tmp_path / "p",
        match="unknown data schedule 'drop-pick'; did you mean 'drop-and-pick'?",
    )  # fmt: skip


def test_unknown_scorer(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "score", "--source", f"npz:{tiny_npz}", "--target", f"npz:{tiny_npz}", "-m", "domain-clasifier",
        "--out", tmp_path / "s", match="unknown scorer 'domain-clasifier'; did you mean 'domain-classifier'?",
    )  # fmt: skip


def test_unknown_scorer_parameter(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "score", "--source", f"npz:{tiny_npz}", "--target", f"npz:{tiny_npz}", "-m", "random",
        "--set", "params.random.sed=1", "--out", tmp_path / "s", match="bad parameters for random",
    )  # fmt: skip


def test_clip_score_without_an_image_text_model(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "score", "--source", f"npz:{tiny_npz}", "--target", f"npz:{tiny_npz}", "-m", "clip-score",
        "--out", tmp_path / "s", match="clip-score ranks the pool with an image-text model: give --encoder RUN",
    )  # fmt: skip
    assert not (tmp_path / "s").exists()  # refused before any work


def test_zeroshot_with_a_model_that_is_not_image_text(small_npz, tmp_path, capsys):
    code, _, err = run(capsys, "pretrain", f"npz:{small_npz}", "--backbone", "small-cnn", "--resolution", "12",
                       "--epochs", "1", "--batch-size", "8", "--out", tmp_path / "sup")  # fmt: skip
    assert code == 0, err
    test = make_npz(tmp_path / "t" / "test.npz", n=8, seed=1)
    fails(
        capsys, "evaluate", "--checkpoint", tmp_path / "sup", "--train", f"npz:{small_npz}", "--test", f"npz:{test}",
        "--protocol", "zeroshot", "--resolution", "12", "--out", tmp_path / "v",
        match="trained with objective 'supervised'; an image-text model is needed (thresher pretrain --objective clip)",
    )  # fmt: skip


def test_unknown_protocol(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "evaluate", "--backbone", "small-cnn", "--random-init", "--train", f"npz:{tiny_npz}",
        "--test", f"npz:{tiny_npz}", "--protocol", "linaer", "--out", tmp_path / "v",
        match="unknown evaluation protocol 'linaer'; did you mean 'linear'?",
    )  # fmt: skip


def test_unknown_selection_mode(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "8", "--mode", "topp",
            "--out", tmp_path / "sel", match="unknown selection mode 'topp'; did you mean 'top'?",
        )  # fmt: skip


def test_unknown_selection_parameter(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "8", "--mode", "weighted",
            "--set", "params.transfrom=rank", "--out", tmp_path / "sel",
            match="mode 'weighted' has no parameter 'transfrom'; did you mean 'transform'?",
        )  # fmt: skip


def test_unknown_class_name(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "--mode", "classes", "--classes", "zebra",
            "--out", tmp_path / "sel", match="unknown class 'zebra' (known: c0, c1, c2, c3)",
        )  # fmt: skip


def test_unknown_device(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--device", "gpu", "--out", tmp_path / "e",
        match="unknown device 'gpu'; use auto, cpu, cuda or cuda:N",
    )  # fmt: skip


# --- checkpoints --------------------------------------------------------------------------------------------
def test_checkpoint_of_another_backbone(tiny_npz, tmp_path, capsys):
    from thresher.models import create_backbone

    torch.save(create_backbone("resnet18").state_dict(), tmp_path / "resnet18.pt")
    line = fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--checkpoint", tmp_path / "resnet18.pt", "--out", tmp_path / "e",
        match="has no weights for this backbone",
    )  # fmt: skip
    assert "--backbone it was trained with" in line


def test_checkpoint_of_a_smaller_network(tiny_npz, tmp_path, capsys):
    from thresher.models import create_backbone

    torch.save(create_backbone("resnet20").state_dict(), tmp_path / "resnet20.pt")
    line = fails(
        capsys, "embed", f"npz:{tiny_npz}", "--backbone", "resnet32", "--resolution", "12",
        "--checkpoint", tmp_path / "resnet20.pt", "--out", tmp_path / "e", match="does not fit backbone",
    )  # fmt: skip
    assert "missing key" in line and "the backbone the checkpoint was trained with" in line


def test_checkpoint_of_random_tensors(tiny_npz, tmp_path, capsys):
    torch.save({"foo": torch.randn(3)}, tmp_path / "random.pt")
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--checkpoint", tmp_path / "random.pt", "--out", tmp_path / "e",
        match="has no weights for this backbone",
    )  # fmt: skip


def test_checkpoint_is_a_text_file(tiny_npz, tmp_path, capsys):
    (tmp_path / "weights.pt").write_text("not a checkpoint\n")
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *P, "--init", tmp_path / "weights.pt", "--out", tmp_path / "p",
        match="is not a PyTorch or safetensors checkpoint",
    )  # fmt: skip


def test_checkpoint_missing(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--checkpoint", tmp_path / "gone.pt", "--out", tmp_path / "e",
        match="No such file or directory",
    )  # fmt: skip


def test_checkpoint_pickles_python_objects(tiny_npz, tmp_path, capsys):
    torch.save({"args": argparse.Namespace(lr=0.1), "w": torch.zeros(2)}, tmp_path / "unsafe.pt")
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--checkpoint", tmp_path / "unsafe.pt", "--out", tmp_path / "e",
        match="will not unpickle it",
    )  # fmt: skip


def test_features_checkpoint_is_a_text_file(tiny_npz, tmp_path, capsys):
    (tmp_path / "features.pt").write_text("hello")
    fails(
        capsys, "score", "--source", f"npz:{tiny_npz}", "--target", f"npz:{tiny_npz}", "-m", "knn",
        "--features", tmp_path / "features.pt", "--out", tmp_path / "s",
        match="is not a PyTorch or safetensors checkpoint",
    )  # fmt: skip


def test_plain_checkpoint_without_backbone_name(tiny_npz, tmp_path, capsys):
    from thresher.models import create_backbone

    torch.save(create_backbone("small-cnn").state_dict(), tmp_path / "plain.pt")
    test = make_npz(tmp_path / "t" / "test.npz", n=16, seed=1)
    fails(
        capsys, "evaluate", "--checkpoint", tmp_path / "plain.pt", "--train", f"npz:{tiny_npz}",
        "--test", f"npz:{test}", "--out", tmp_path / "v", match="name its backbone (--backbone",
    )  # fmt: skip


def test_checkpoint_folder_without_checkpoint(tiny_npz, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    test = make_npz(tmp_path / "t" / "test.npz", n=16, seed=1)
    fails(
        capsys, "evaluate", "--checkpoint", tmp_path / "run", "--train", f"npz:{tiny_npz}",
        "--test", f"npz:{test}", "--out", tmp_path / "v", match="holds no checkpoint.pt",
    )  # fmt: skip


# --- run folders --------------------------------------------------------------------------------------------
def test_run_folder_of_another_config(embedded, tiny_npz, capsys):
    before = snapshot(embedded)
    line = fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--set", "dtype=float16", "--out", embedded,
        match="holds results of a different config (differs in: dtype)",
    )  # fmt: skip
    assert "--force" in line
    assert snapshot(embedded) == before


def test_run_folder_of_another_command(embedded, tiny_npz, capsys):
    before = snapshot(embedded)
    fails(capsys, "pretrain", f"npz:{tiny_npz}", *P, "--out", embedded, match="pass --force to replace them")
    assert snapshot(embedded) == before


def test_run_folder_locked_by_another_process(embedded, tiny_npz, capsys):
    before = snapshot(embedded)
    fd = os.open(embedded / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a second thresher process writing the folder would
    try:
        fails(capsys, "embed", f"npz:{tiny_npz}", *E, "--out", embedded, match="another thresher process is writing")
    finally:
        os.close(fd)
    assert snapshot(embedded) == before


def test_out_is_a_file(tiny_npz, tmp_path, capsys):
    (tmp_path / "out").write_text("my notes")
    fails(capsys, "embed", f"npz:{tiny_npz}", *E, "--out", tmp_path / "out", match="is a file; give a folder")
    assert (tmp_path / "out").read_text() == "my notes"


def test_out_is_a_foreign_folder(tiny_npz, tmp_path, capsys):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "main.py").write_text("print('hi')")
    before = snapshot(tmp_path / "project")
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *P, "--force", "--out", tmp_path / "project",
        match="is not empty and is not a thresher run folder",
    )  # fmt: skip
    assert snapshot(tmp_path / "project") == before  # not even a .lock is left behind


def test_compare_out_is_a_file(tmp_path, capsys):
    (tmp_path / "out.json").write_text("{}")
    fails(
        capsys, "compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "out.json",
        match="is a file; give a folder",
    )  # fmt: skip


def test_out_inside_a_file(tiny_npz, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("my notes")
    fails(
        capsys, "embed", f"npz:{tiny_npz}", *E, "--out", tmp_path / "notes.txt" / "run",
        match="notes.txt is a file, not a folder",
    )  # fmt: skip
    assert (tmp_path / "notes.txt").read_text() == "my notes"


def test_out_not_writable(tiny_npz, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if ROOT:  # root may write anywhere; ask as any other user would be answered
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real(p, mode, **kw))
    fails(capsys, "pretrain", f"npz:{tiny_npz}", *P, "--out", locked / "run", match="no permission to write in")
    assert not (locked / "run").exists()


def test_contact_sheet_path_is_a_folder(tiny_npz, tmp_path, capsys):
    fails(capsys, "data", "info", f"npz:{tiny_npz}", "--sheet", tmp_path, match="is a folder; give a file")


def test_disk_full_mid_write(small_npz, tmp_path, capsys, monkeypatch):
    """The write of epoch 2's checkpoint hits ENOSPC half-way: epoch 1's checkpoint stays, and the run resumes."""
    out = tmp_path / "p"
    real_save = torch.save
    calls: list[str] = []
    earlier: dict[str, str] = {}

    def full_disk(obj, f, *args, **kwargs):
        calls.append(str(f))
        if len(calls) == 1:
            return real_save(obj, f, *args, **kwargs)
        earlier.update(snapshot(out))
        Path(f).write_bytes(b"\0" * 1000)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    args = ("pretrain", f"npz:{small_npz}", *T, "--epochs", "2", "--out", out)
    line = fails(capsys, *args, match="disk full while writing")
    assert "checkpoint.pt" in line and "earlier results are intact" in line
    assert snapshot(out)["checkpoint.pt"] == earlier["checkpoint.pt"]
    assert not list(out.glob(".checkpoint.pt.tmp-*"))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["state"]["step"] == 2
    monkeypatch.undo()
    code, stdout, err = run(capsys, *args)
    assert code == 0 and "resuming at step 2" in stdout, err


# --- training that diverges -----------------------------------------------------------------------------------
def test_nan_loss_keeps_last_good_checkpoint(small_npz, tmp_path, capsys, monkeypatch):
    import thresher.atomic as atomic

    written: list[str] = []
    real = atomic.torch_save

    def recording(path, obj):
        real(path, obj)
        written.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())

    monkeypatch.setattr(atomic, "torch_save", recording)
    out = tmp_path / "p"
    line = fails(
        capsys, "pretrain", f"npz:{small_npz}", *T, "--epochs", "2", "--checkpoint-every", "1", "--set", "optim.lr=1e6",
        "--out", out,
        match="the last good checkpoint",
    )  # fmt: skip
    assert "non-finite" in line or "loss became" in line
    assert "lower the learning rate" in line
    assert written and hashlib.sha256((out / "checkpoint.pt").read_bytes()).hexdigest() == written[-1]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (out / "summary.json").exists()


def test_nan_loss_before_first_checkpoint(tiny_npz, tmp_path, capsys):
    out = tmp_path / "p"
    line = fails(
        capsys, "pretrain", f"npz:{tiny_npz}", *P, "--set", "optim.lr=1e6", "--out", out,
        match="no checkpoint had been written yet",
    )  # fmt: skip
    assert "last good checkpoint" not in line and "lower the learning rate" in line
    assert not (out / "checkpoint.pt").exists()


def test_pretrain_needs_two_examples(tmp_path, capsys):
    spec = arrays(tmp_path / "one.npz", images=images(1), labels=np.zeros(1, int))
    fails(capsys, "pretrain", spec, *P, "--out", tmp_path / "p", match="at least 2 examples")


def test_supervised_pretrain_on_unlabeled_images(tmp_path, capsys):
    np.save(tmp_path / "images.npy", images())
    fails(capsys, "pretrain", f"npz:{tmp_path / 'images.npy'}", *P, "--out", tmp_path / "p", match="needs labels")


def test_chain_with_a_dataset(tiny_npz, tmp_path, capsys):
    chain = yaml_file(tmp_path / "chain.yaml", "stages: []\n")
    fails(
        capsys, "pretrain", f"npz:{tiny_npz}", "--chain", chain, "--out", tmp_path / "p",
        match="--chain takes its data from the chain file",
    )  # fmt: skip


# --- scores, budgets, selection -------------------------------------------------------------------------------
def test_budget_zero(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "0", "--out", tmp_path / "sel",
            match="budget '0' must be >= 1",
        )  # fmt: skip


def test_budget_larger_than_pool(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "100", "--out", tmp_path / "sel",
            match="budget 100 is more than the 64 examples in the pool",
        )  # fmt: skip
    assert not (tmp_path / "sel" / "manifest.parquet").exists()


def test_budget_over_100_percent(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "150%", "--out", tmp_path / "sel",
            match="is more than 100% of the pool",
        )  # fmt: skip


def test_budget_not_a_number(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "lots", "--out", tmp_path / "sel",
            match="budget 'lots' is not a number",
        )  # fmt: skip


def test_budget_rounds_to_zero(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "0.001", "--out", tmp_path / "sel",
            match="which rounds to 0; give a larger fraction or a count",
        )  # fmt: skip


def test_scores_not_numbers(scores_dir, tmp_path, capsys):
    table = pq.read_table(scores_dir / "scores.parquet")
    table = table.append_column("text", pa.array([str(i) for i in range(64)]))
    pq.write_table(table, scores_dir / "scores.parquet")
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "text", "--budget", "8", "--out", tmp_path / "sel",
            match="scores must be numbers",
        )  # fmt: skip


def test_nan_scores(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "nan", "--budget", "8", "--out", tmp_path / "sel",
            match="1 of 64 scores are NaN or infinite (first at position 5)",
        )  # fmt: skip


def test_inf_scores(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "inf", "--budget", "8", "--mode", "weighted",
            "--out", tmp_path / "sel", match="NaN or infinite (first at position 7)",
        )  # fmt: skip


def test_unknown_score_column(scores_dir, tmp_path, capsys):
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "knn", "--budget", "8", "--out", tmp_path / "sel",
            match="has no scores of method 'knn' (available: good, nan, inf)",
        )  # fmt: skip


def test_missing_scores(tmp_path, capsys):
    fails(
        capsys, "select", "--scores", tmp_path / "nothing", "-m", "knn", "--budget", "8", "--out", tmp_path / "sel",
        match="no scores.parquet there; run thresher score first",
    )  # fmt: skip


def test_corrupt_scores_table(scores_dir, tmp_path, capsys):
    (scores_dir / "scores.parquet").write_bytes(b"PAR1 definitely not parquet")
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "8", "--out", tmp_path / "sel",
            match="as a score table",
        )  # fmt: skip


def test_scores_table_without_ids(scores_dir, tmp_path, capsys):
    pq.write_table(pa.table({"good": np.arange(5.0)}), scores_dir / "scores.parquet")
    with untouched(scores_dir):
        fails(
            capsys, "select", "--scores", scores_dir, "-m", "good", "--budget", "2", "--out", tmp_path / "sel",
            match="lacks column(s) id, label, index",
        )  # fmt: skip


def test_empty_target(tiny_npz, tmp_path, capsys):
    spec = arrays(tmp_path / "empty.npz", images=images(0), labels=np.zeros(0, int))
    fails(
        capsys, "score", "--source", f"npz:{tiny_npz}", "--target", spec, "-m", "random", "--out", tmp_path / "s",
        match="empty.npz holds no images",
    )  # fmt: skip
    assert not (tmp_path / "s").exists()


def test_target_larger_than_pool(tmp_path, capsys):
    """Scoring a small pool against a larger target is allowed (the README scores tiny-imagenet's 30k images
    against cifar10's 50k); selecting more than the pool holds is the error."""
    pool = make_npz(tmp_path / "pool" / "train.npz", n=8, seed=3)
    target = make_npz(tmp_path / "target" / "train.npz", n=32, seed=4)
    code, _, err = run(
        capsys, "score", "--source", f"npz:{pool}", "--target", f"npz:{target}", "-m", "random",
        "--out", tmp_path / "s",
    )  # fmt: skip
    assert code == 0, err
    before = snapshot(tmp_path / "s")
    fails(
        capsys, "select", "--scores", tmp_path / "s", "-m", "random", "--budget", "32", "--out", tmp_path / "sel",
        match="more than the 8 examples in the pool",
    )  # fmt: skip
    assert snapshot(tmp_path / "s") == before


# --- manifests and ids ----------------------------------------------------------------------------------------
def test_manifest_ids_not_in_dataset(selection, tmp_path, capsys):
    other = make_npz(tmp_path / "other" / "other.npz", n=32)
    with untouched(selection):
        fails(
            capsys, "pretrain", f"npz:{other}", "--manifest", selection, *P, "--out", tmp_path / "p",
            match="16 of the manifest's 16 ids are not in the dataset",
        )  # fmt: skip


def test_manifest_duplicate_ids(selection, tiny_npz, tmp_path, capsys):
    table = pq.read_table(selection / "manifest.parquet").to_pydict()
    table["id"][1] = table["id"][0]
    pq.write_table(pa.table(table), selection / "manifest.parquet")
    with untouched(selection):
        fails(
            capsys, "pretrain", "--manifest", selection, *P, "--out", tmp_path / "p",
            match="manifest has 1 duplicate ids",
        )  # fmt: skip


def test_manifest_incomplete(selection, tmp_path, capsys):
    (selection / "manifest.json").unlink()
    with untouched(selection):
        fails(
            capsys, "pretrain", "--manifest", selection, *P, "--out", tmp_path / "p",
            match="is not a complete manifest: manifest.json is missing",
        )  # fmt: skip


def test_dataset_duplicate_ids(tmp_path, capsys):
    folder = tmp_path / "hf"
    folder.mkdir()
    table = pa.table(
        {
            "image": pa.array([png(40 * k) for k in range(4)], pa.binary()),
            "label": pa.array([0, 1, 0, 1], pa.int64()),
            "name": ["cat", "dog", "cat", "eel"],
        }
    )
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    fails(
        capsys, "embed", f"hf:{folder}?id=name", *E, "--out", tmp_path / "e",
        match="repeats 'cat'; ids must be unique",
    )  # fmt: skip


# --- obtaining built-ins: archives and downloads (issue 15) --------------------------------------------------------
@pytest.fixture
def no_pool(no_shared_data) -> Path:
    return no_shared_data


@pytest.fixture
def tiny_zip(tmp_path) -> Path:
    train, val = synthetic_classes(3, 6, 3)
    return make_tiny_archive(tmp_path / "in" / "tiny-imagenet-200.zip", train, val)


def test_pool_missing_offline(no_pool, capsys):
    fails(
        capsys, "data", "info", "builtin:tiny-imagenet-32:train",
        match="THRESHER_OFFLINE is set: online, run `thresher data download tiny-imagenet-32`; offline, get "
        "tiny-imagenet-200.zip",
    )  # fmt: skip


def test_data_download_unknown_name(capsys):
    fails(capsys, "data", "download", "tiny-imagenet", match="did you mean 'tiny-imagenet-32'")


def test_data_download_from_missing_file(no_pool, tmp_path, capsys):
    fails(capsys, "data", "download", "tiny-imagenet-32", "--from", tmp_path / "nope.zip", match="does not exist")


def test_data_download_from_for_a_torchvision_builtin(no_pool, tiny_zip, capsys):
    fails(
        capsys, "data", "download", "cifar10", "--from", tiny_zip,
        match="--from and --url are for the Tiny ImageNet archive; cifar10 downloads through torchvision",
    )  # fmt: skip


def test_truncated_archive(no_pool, tiny_zip, tmp_path, capsys):
    """A cut archive is refused in one line, and the copy converted before from a good one stays as it was."""
    assert run(capsys, "data", "download", "tiny-imagenet-32", "--from", tiny_zip)[0] == 0
    cut = tmp_path / "cut.zip"
    cut.write_bytes(tiny_zip.read_bytes()[: tiny_zip.stat().st_size // 2])
    with untouched(no_pool / "data"):
        fails(
            capsys, "data", "download", "tiny-imagenet-32", "--from", cut, "--force",
            match="is not a complete zip archive (File is not a zip file): it is truncated or damaged",
        )  # fmt: skip


def test_wrong_archive(no_pool, tmp_path, capsys):
    wrong = tmp_path / "other.zip"
    with zipfile.ZipFile(wrong, "w") as zf:
        zf.writestr("cifar-10-batches-py/data_batch_1", b"not this")
    fails(
        capsys, "data", "download", "tiny-imagenet-32", "--from", wrong,
        match="is not the Tiny ImageNet archive: it has no wnids.txt (expected wnids.txt, words.txt",
    )  # fmt: skip


def test_archive_with_too_few_images(no_pool, tmp_path, capsys):
    train, val = synthetic_classes(2, 3, 3)  # the draw keeps 4 training images per class
    small = make_tiny_archive(tmp_path / "small.zip", train, val)
    fails(
        capsys, "data", "download", "tiny-imagenet-32", "--from", small,
        match="has 3 train images, the recipe keeps 4: the archive is incomplete",
    )  # fmt: skip


def test_archive_with_a_damaged_image(no_pool, tmp_path, capsys):
    train, val = synthetic_classes(2, 5, 3)
    good = make_tiny_archive(tmp_path / "good.zip", train, val)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:200] if info.filename.endswith("_2.JPEG") else data)
    fails(
        capsys, "data", "download", "tiny-imagenet-32", "--from", bad,
        match="the archive is damaged, download it again",
    )  # fmt: skip
    assert not (no_pool / "data" / "tiny-imagenet-200-32px").exists()


def _serve_pool(monkeypatch, data: bytes, md5: str, server: RangeServer) -> None:
    from thresher.data import tinyimagenet
    from thresher.data.download import Remote

    monkeypatch.delenv("THRESHER_OFFLINE")
    monkeypatch.setattr("thresher.data.download.time.sleep", lambda s: None)
    remote = Remote(server.url("/t.zip"), "tiny-imagenet-200.zip", md5, len(data))
    monkeypatch.setattr(tinyimagenet, "ARCHIVE", remote)


def test_download_with_a_wrong_checksum(no_pool, tiny_zip, loopback_only, monkeypatch, capsys):
    data = tiny_zip.read_bytes()
    with RangeServer({"/t.zip": data}) as srv:
        _serve_pool(monkeypatch, data, "f" * 32, srv)
        fails(
            capsys, "data", "download", "tiny-imagenet-32",
            match="has MD5 " + hashlib.md5(data).hexdigest() + ", expected " + "f" * 32,
        )  # fmt: skip
    assert not (no_pool / "downloads" / "tiny-imagenet-200.zip").exists()


def test_download_cut_again_and_again(no_pool, tiny_zip, loopback_only, monkeypatch, capsys):
    data = tiny_zip.read_bytes()
    with RangeServer({"/t.zip": data}, cut_after=1000, cuts=100) as srv:
        _serve_pool(monkeypatch, data, hashlib.md5(data).hexdigest(), srv)
        line = fails(capsys, "data", "download", "tiny-imagenet-32", match="stopped at 6,000 of")
    assert line.endswith("after 5 retries; run the same command again to resume from there")
    assert (no_pool / "downloads" / "tiny-imagenet-200.zip.part").stat().st_size == 6000


def test_npz_ids_not_unique(tmp_path, capsys):
    fails(
        capsys, "data", "info", arrays(tmp_path / "d.npz", images=images(3), ids=np.array(["a", "b", "a"])),
        match="ids must be unique, non-empty strings",
    )  # fmt: skip


# --- evaluation, comparison, reports ------------------------------------------------------------------------------
def test_evaluate_test_labels_unseen_in_train(tmp_path, capsys):
    train = make_npz(tmp_path / "a" / "train.npz", n=16, classes=2)
    test = arrays(tmp_path / "b" / "test.npz", images=images(), labels=np.arange(8) % 4)
    fails(
        capsys, "evaluate", "--backbone", "small-cnn", "--random-init", "--train", f"npz:{train}", "--test", test,
        "--out", tmp_path / "v", match="has labels the training split",
    )  # fmt: skip


def test_evaluate_unlabeled_train(tmp_path, capsys):
    np.save(tmp_path / "images.npy", images())
    test = make_npz(tmp_path / "t" / "test.npz", n=16, seed=1)
    fails(
        capsys, "evaluate", "--backbone", "small-cnn", "--random-init", "--train", f"npz:{tmp_path / 'images.npy'}",
        "--test", f"npz:{test}", "--out", tmp_path / "v", match="has no labels; evaluation needs a labeled target",
    )  # fmt: skip


def test_evaluate_train_and_test_overlap(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "evaluate", "--backbone", "small-cnn", "--random-init", "--train", f"npz:{tiny_npz}",
        "--test", f"npz:{tiny_npz}", "--out", tmp_path / "v", match="share examples; give disjoint splits",
    )  # fmt: skip


def test_evaluate_without_a_model(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "evaluate", "--train", f"npz:{tiny_npz}", "--test", f"npz:{tiny_npz}", "--out", tmp_path / "v",
        match="give one of --checkpoint, --encoder or --backbone NAME --random-init",
    )  # fmt: skip


def test_evaluate_an_encoder_thresher_cannot_load(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "evaluate", "--encoder", "torchvision:vit_b_16", "--train", f"npz:{tiny_npz}", "--test",
        f"npz:{tiny_npz}", "--out", tmp_path / "v",
        match="torchvision:vit_b_16:IMAGENET1K_V1 has no thresher backbone to load it into",
    )  # fmt: skip


def test_evaluate_fewshot_without_shots(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "evaluate", "--backbone", "small-cnn", "--random-init", "--train", f"npz:{tiny_npz}",
        "--test", f"npz:{tiny_npz}", "--protocol", "fewshot", "--out", tmp_path / "v",
        match="fewshot needs exactly one of --shots N",
    )  # fmt: skip


def test_compare_not_an_evaluate_folder(embedded, capsys):
    with untouched(embedded):
        fails(capsys, "compare", embedded, embedded, match="is not a finished thresher evaluate folder")


def test_compare_corrupt_results(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text('{"protocol": "linear", ')
        (tmp_path / name / "predictions.npz").write_bytes(b"garbage")
    fails(capsys, "compare", tmp_path / "a", tmp_path / "b", match="re-run the same thresher evaluate command")


def test_report_without_results(embedded, capsys):
    before = snapshot(embedded)
    fails(capsys, "report", embedded, match="holds no results.json; run thresher study first")
    assert snapshot(embedded) == before


def test_report_corrupt_results(tmp_path, capsys):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "results.json").write_text('{"rows": [')
    before = snapshot(tmp_path / "study")
    fails(capsys, "report", tmp_path / "study", match="re-run the same thresher study command")
    assert snapshot(tmp_path / "study") == before


def test_inspect_not_a_selection(embedded, capsys):
    with untouched(embedded):
        fails(capsys, "inspect", embedded, match="is not a complete manifest")


def test_search_source_without_candidates(tiny_npz, tmp_path, capsys):
    fails(
        capsys, "search-source", "--backbone", "small-cnn", "--train", f"npz:{tiny_npz}", "--test", f"npz:{tiny_npz}",
        "--out", tmp_path / "ss", match="config key 'candidates' is required",
    )  # fmt: skip


# --- dense datasets ----------------------------------------------------------------------------------------------
def _coco(tmp_path, ann: dict) -> str:
    (tmp_path / "c").mkdir()
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 16, "width": 20}],
           "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4], **ann}],
           "categories": [{"id": 1, "name": "shoe"}]}  # fmt: skip
    (tmp_path / "c" / "ann.json").write_text(json.dumps(doc))
    return f"coco:{tmp_path / 'c' / 'ann.json'}"


def test_coco_box_outside_its_image(tmp_path, capsys):
    fails(capsys, "data", "info", _coco(tmp_path, {"bbox": [15, 2, 10, 4]}),
          match="annotation 9 (image 1): box [x0=15, y0=2, x1=25, y1=6] lies outside its 20x16 image")  # fmt: skip


def test_coco_unknown_category(tmp_path, capsys):
    fails(capsys, "data", "info", _coco(tmp_path, {"category_id": 4}), match="unknown category_id 4 (declared: [1])")


# --- thresher plan -----------------------------------------------------------------------------------------------
def _plan(tiny_npz, tmp_path, *extra: str) -> list:
    return ["plan", "--source", f"npz:{tiny_npz}", "--target", f"npz:{tiny_npz}", "--out", tmp_path / "plan", *extra]


def test_plan_budget_without_a_unit_it_knows(tiny_npz, tmp_path, capsys):
    fails(capsys, *_plan(tiny_npz, tmp_path, "--budget", "3 parsecs"), match="give a number with a unit: 0.5C")


def test_plan_budget_below_the_minimum(tiny_npz, tmp_path, capsys):
    line = fails(capsys, *_plan(tiny_npz, tmp_path, "--budget", "2C"), match="is too small to plan:")
    assert re.search(r"need at least [0-9.]+ C", line)
    assert not list((tmp_path / "plan").glob("stages/score-*"))  # refused before scoring


def test_plan_fraction_out_of_range(tiny_npz, tmp_path, capsys):
    fails(capsys, *_plan(tiny_npz, tmp_path, "--budget", "9C", "--fractions", "0.1,1.5"),
          match="fractions are subset sizes strictly between 0 and 1")  # fmt: skip


def test_plan_check_of_a_folder_without_a_plan(tmp_path, capsys):
    (tmp_path / "notaplan").mkdir()
    fails(capsys, "plan", tmp_path / "notaplan", "--check", match="holds no plan.json: run `thresher plan")


# --- the catalogue document -------------------------------------------------------------------------------------
def test_docs_table_lists_every_test():
    """docs/errors.md has one row per test of this module, so the catalogue cannot drift from the tests."""
    text = (REPO / "docs" / "errors.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("|") and "tests/test_errors.py::" in ln]
    named = re.findall(r"tests/test_errors\.py::(test_\w+)", "\n".join(rows))
    assert len(named) == len(set(named)), "a test is listed twice"
    module = sys.modules[__name__]
    tests = {n for n in dir(module) if n.startswith("test_") and callable(getattr(module, n))}
    assert set(named) == tests - {"test_docs_table_lists_every_test"}
    assert all(ln.count("|") >= 4 for ln in rows)  # input | message | test
