"""The run-folder rule: resume same config, refuse another (unless force), lock, atomic writes."""

from __future__ import annotations

import errno
import os

import pytest
import yaml

from thresher import atomic
from thresher.config import build_config
from thresher.embed import EmbedConfig
from thresher.errors import ThresherError
from thresher.runs import RunFolder


def cfg(**kw):
    return build_config(EmbedConfig, values={"data": {"spec": "x:y"}, **kw})


def test_config_written_with_environment(tmp_path):
    with RunFolder(tmp_path / "r", "embed", cfg(), device="cpu") as run:
        assert not run.resumed
    doc = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    env = doc["thresher"]
    for key in ("thresher_version", "schema_version", "torch_version", "device", "fingerprint", "kind"):
        assert key in env
    assert doc["config"]["resolution"] == 32


def test_same_config_resumes_other_refused_force_replaces(tmp_path):
    out = tmp_path / "r"
    with RunFolder(out, "embed", cfg()):
        (out / "result.txt").write_text("precious")
    with RunFolder(out, "embed", cfg(runtime={"device": "cpu"})) as run:  # runtime fields do not matter
        assert run.resumed
    with pytest.raises(ThresherError, match=r"differs in: resolution.*--force"):
        with RunFolder(out, "embed", cfg(resolution=64)):
            pass
    assert (out / "result.txt").read_text() == "precious"  # refused: nothing lost
    with RunFolder(out, "embed", cfg(resolution=64), force=True) as run:
        assert not run.resumed
    assert not (out / "result.txt").exists()


def test_folder_of_an_older_layout_gets_its_own_message(tmp_path):
    """Same settings, another fingerprint (thresher stored them another way, e.g. a study before its sections were
    typed): the one line says so instead of listing no difference."""
    out = tmp_path / "r"
    with RunFolder(out, "embed", cfg()):
        (out / "result.txt").write_text("kept")
    doc = yaml.safe_load((out / "config.yaml").read_text())
    doc["thresher"]["fingerprint"] = "0" * 64
    doc["thresher"]["thresher_version"] = "0.0.9"
    (out / "config.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(
        ThresherError, match=r"same settings written by an older layout \(thresher 0.0.9\); pass --force"
    ):
        with RunFolder(out, "embed", cfg()):
            pass
    assert (out / "result.txt").read_text() == "kept"


def test_foreign_folder_refused_even_with_force(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    for force in (False, True):
        with pytest.raises(ThresherError, match="not a thresher run folder"):
            with RunFolder(out, "embed", cfg(), force=force):
                pass
    assert (out / "thesis.tex").read_text() == "years of work"


def test_out_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(ThresherError, match="is a file"):
        with RunFolder(f, "embed", cfg()):
            pass


def test_lock_stops_a_second_writer(tmp_path):
    out = tmp_path / "r"
    with RunFolder(out, "embed", cfg()):
        with pytest.raises(ThresherError, match="another thresher process"):
            with RunFolder(out, "embed", cfg()):
                pass
    with RunFolder(out, "embed", cfg()):  # released afterwards
        pass


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    atomic.write_json(target, {"v": 1})

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic.write_with(target, boom)
    assert '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


def test_disk_full_is_a_clear_error(tmp_path):
    target = tmp_path / "a.bin"
    atomic.write_bytes(target, b"old")

    def full(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(ThresherError, match="disk full"):
        atomic.write_with(target, full)
    assert target.read_bytes() == b"old"
