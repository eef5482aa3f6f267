"""Shared fixtures: the real data folder (tests marked ``realdata`` skip without it) and a hermetic cache."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    for cand in (os.environ.get("THRESHER_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "tiny-imagenet-200-32px" / "train.npz").is_file():
            return Path(cand)
    return None


SHARED = shared_data()


def pytest_collection_modifyitems(config, items):
    if SHARED is not None:
        return
    skip = pytest.mark.skip(reason="needs the real data of ../shared/data (or THRESHER_DATA); not found")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _hermetic_env(tmp_path_factory):
    """A per-session cache (never the user's home) and no downloads: tests never touch the network."""
    saved = {k: os.environ.get(k) for k in ("THRESHER_CACHE", "THRESHER_OFFLINE")}
    os.environ["THRESHER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["THRESHER_OFFLINE"] = "1"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def loopback_only(monkeypatch):
    """A connection to any host but 127.0.0.1 fails the test (and no proxy is asked): download tests fetch only from
    their local server."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"a test tried to reach {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def no_shared_data(tmp_path, monkeypatch) -> Path:
    """A user without ../shared/data: an empty cache, the cache the only data root, and a small draw (4 train, 2 val
    images per class) for test archives of the Tiny ImageNet layout. Returns the cache."""
    from thresher.data import tinyimagenet

    cache = tmp_path / "cache"
    monkeypatch.setenv("THRESHER_CACHE", str(cache))
    monkeypatch.delenv("THRESHER_DATA", raising=False)
    monkeypatch.setattr("thresher.data.builtin.data_roots", lambda explicit=None: [cache / "data"])
    monkeypatch.setitem(tinyimagenet.VARIANTS, "tiny-imagenet-32", tinyimagenet.Draw(4, 2))
    return cache


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    assert SHARED is not None
    return SHARED


@pytest.fixture(scope="session")
def pool_backbone(tmp_path_factory) -> Path:
    """The session's shared pre-trained backbone (realdata tests): small-cnn, supervised on the whole tiny-imagenet-32
    pool (30,000 images) for 4 epochs at 32 px, about 40 s here; its run folder."""
    from thresher.config import build_config
    from thresher.pretrain.run import pretrain
    from thresher.train.config import TrainConfig

    assert SHARED is not None
    cfg = build_config(TrainConfig, values={
        "data": {"spec": "builtin:tiny-imagenet-32:train"}, "backbone": "small-cnn", "resolution": 32, "epochs": 4,
        "batch_size": 128, "optim": {"lr": 0.1}, "runtime": {"progress": False}})  # fmt: skip
    out = tmp_path_factory.mktemp("pool-backbone") / "pt"
    pretrain(cfg, out, log=print)
    return out


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``thresher ARGS`` in-process: (exit code, stdout, stderr)."""
    from thresher.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def make_npz(
    path: Path, n: int = 64, size: int = 12, channels: int = 3, classes: int = 4, seed: int = 0, compressed: bool = True
) -> Path:
    """A small labeled npz in the format of ../shared/data, with class-dependent colours so models can learn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    base = (labels[:, None, None, None] * (200 // max(1, classes - 1))).astype(np.int64)
    noise = rng.integers(0, 50, size=(n, size, size, channels))
    images = np.clip(base + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, images=images, labels=labels.astype(np.int64))
    (path.parent / "classes.txt").write_text("".join(f"class{k}\n" for k in range(classes)))
    return path


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    return make_npz(tmp_path / "data" / "train.npz")
