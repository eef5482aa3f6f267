"""The one rule for long-running commands: an ``--out`` folder that resumes, refuses foreign configs, and locks.

Running the same command on the same folder resumes what is unfinished; a folder holding another config's results
is refused unless ``force``; one process at a time may write a folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import SCHEMA_VERSION, __version__, atomic
from .config import diff_keys, fingerprint, semantic_dict
from .errors import ThresherError

CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions and device recorded beside every artefact."""
    import torch

    return {
        "thresher_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "torch_version": str(torch.__version__),
        "device": device or "cpu",
    }


class RunFolder:
    """Context manager owning one run folder: ``with RunFolder(out, "embed", cfg) as run: ...``."""

    def __init__(
        self,
        path: str | Path,
        kind: str,
        config: BaseModel,
        *,
        force: bool = False,
        inputs: dict | None = None,
        device: str | None = None,
        keep: tuple[str, ...] = (),
    ):
        self.path = Path(path)
        self.keep = keep  # entries a --force replacement leaves in place (content-addressed caches)
        self.kind = kind
        self.config = config
        self.force = force
        self.inputs = inputs or {}
        self.device = device
        self.fingerprint = fingerprint(config, self.inputs)
        self.resumed = False
        self._lock_fd: int | None = None

    def __enter__(self) -> RunFolder:
        if self.path.exists() and not self.path.is_dir():
            raise ThresherError(f"--out {self.path} is a file; give a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ThresherError(f"cannot create --out {self.path}: {exc.strerror}; give a writable folder") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ThresherError(f"--out {self.path} is not writable; give a writable folder")
        made_lock = not (self.path / LOCK_FILE).exists()
        self._lock()
        try:
            self._check_or_claim()
        except BaseException:
            self._unlock()
            if made_lock and not (self.path / CONFIG_FILE).is_file():  # refused a folder we never claimed: no trace
                (self.path / LOCK_FILE).unlink(missing_ok=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._unlock()

    def file(self, name: str) -> Path:
        return self.path / name

    # --- internals ----------------------------------------------------------------------------------
    def _lock(self) -> None:
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ThresherError(
                f"another thresher process is writing {self.path}; wait for it to finish or use another --out"
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _refusal(self, old: dict) -> str:
        """One line saying what the folder holds and which settings differ."""
        try:
            old_sem = semantic_dict(type(self.config).model_validate(old.get("config", {})))
        except Exception:  # written by another schema: compare as stored
            old_sem = old.get("config", {})
        changed = diff_keys(old_sem, semantic_dict(self.config))
        if old.get("inputs", {}) != self.inputs:
            changed.append("inputs (" + ", ".join(diff_keys(old.get("inputs", {}), self.inputs)) + ")")
        kind = old["thresher"]["kind"]
        if kind != self.kind:  # two kinds of config: a list of differing keys would mean nothing
            what = f"{_a(kind)} run, not {_a(self.kind)} run"
        elif not changed:  # the same settings, fingerprinted by a thresher that stored them another way
            version = old["thresher"].get("thresher_version", "?")
            return (
                f"{self.path} holds results of the same settings written by an older layout (thresher {version}); "
                "pass --force to redo them (cached stages and models are kept where their keys still match), or use "
                "another --out"
            )
        else:
            what = "results of a different config" + (f" (differs in: {', '.join(changed[:6])})" if changed else "")
        return f"{self.path} holds {what}; use another --out, or pass --force to replace them"

    def _check_or_claim(self) -> None:
        _remove_stale_temporaries(self.path)  # left by a process killed mid-write; we hold the lock
        cfg_file = self.path / CONFIG_FILE
        others = [p for p in self.path.iterdir() if p.name not in (LOCK_FILE, CONFIG_FILE)]
        old = read_run_config(self.path) if cfg_file.is_file() else None
        meta = old.get("thresher") if isinstance(old, dict) else None
        is_run = isinstance(meta, dict) and "kind" in meta and "fingerprint" in meta
        if cfg_file.is_file() and not is_run:
            raise ThresherError(f"{self.path} holds a config.yaml not written by thresher; choose a new or empty --out")
        if is_run and others:  # a run folder with results: resume it, or refuse, or (force) replace it
            if meta["fingerprint"] == self.fingerprint and meta["kind"] == self.kind:
                self.resumed = True
                return
            if not self.force:
                raise ThresherError(self._refusal(old))
            for p in others:
                if p.name in self.keep:
                    continue
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        elif others:
            raise ThresherError(
                f"{self.path} is not empty and is not a thresher run folder; choose a new or empty --out"
            )
        doc = {
            "thresher": {
                "kind": self.kind,
                "fingerprint": self.fingerprint,
                **environment(self.device),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            "config": self.config.model_dump(mode="json"),
            "inputs": self.inputs,
        }
        atomic.write_text(cfg_file, yaml.safe_dump(doc, sort_keys=False))


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete ``.NAME.tmp-PID`` files (see atomic.py) whose writer process no longer exists."""
    for p in folder.rglob(".*.tmp-*"):
        pid = p.name.rpartition(".tmp-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_run_config(path: str | Path) -> dict:
    """The resolved ``config.yaml`` of a run folder (safe YAML loader)."""
    f = Path(path) / CONFIG_FILE
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ThresherError(f"cannot read {f}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ThresherError(f"{f} is not a thresher run config")
    return data


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file (checkpoints are fingerprinted by content, not by name)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as exc:
        raise ThresherError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()
