"""Resumable, checksummed downloads into the cache (issue 15): HTTP Range, a progress bar, atomic completion.

A download writes ``NAME.part`` beside its destination and appends to it; a cut connection is retried from where it
stopped, and a ``.part`` left by an earlier, interrupted command is resumed by the next one. Only a file whose size
and MD5 match the published ones is renamed to ``NAME``, so a file under its final name is always complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..atomic import fsync_dir
from ..errors import ThresherError
from ..progress import progress_bar

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Remote:
    """A published file: where it is, what it is called, and the size and MD5 it must have."""

    url: str
    filename: str
    md5: str
    size: int

    def describe(self) -> str:
        return f"{self.filename} ({self.size / 1e6:.0f} MB) from {self.url}"


def md5sum(path: str | Path) -> str:
    """MD5 of a file, read in 1 MiB blocks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), waited for: one process downloads or converts a
    given file at a time, the others find its result when they get the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fetch(
    remote: Remote,
    dest: str | Path,
    *,
    url: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Download ``remote`` (or the same file from the mirror ``url``) to ``dest``; return ``dest``.

    Resumes a ``.part`` file with an HTTP Range request (a server that ignores Range starts it over), retries a cut
    connection with backoff (giving up after ``retries`` attempts in a row that gained less than 1 MiB), and renames
    into place only after the size and MD5 match.
    """
    dest = Path(dest)
    url = url or remote.url
    part = dest.with_name(dest.name + ".part")
    with file_lock(dest.with_name(f".{dest.name}.lock")):
        if dest.is_file() and dest.stat().st_size == remote.size:
            return dest  # another process finished it while we waited, or an earlier command did
        have = part.stat().st_size if part.is_file() else 0
        _check_free_space(dest.parent, remote.size - min(have, remote.size))
        log(
            f"downloading {remote.filename} ({remote.size / 1e6:.0f} MB) from {url}"
            + (f", resuming at {have / 1e6:.1f} MB" if 0 < have < remote.size else "")
        )
        failures = 0
        bar = progress_bar(remote.size, remote.filename, enabled=progress, initial=min(have, remote.size), unit="B")
        try:
            while True:
                have = part.stat().st_size if part.is_file() else 0
                if have > remote.size:
                    part.unlink()  # longer than the file can be: not ours to keep
                    have = 0
                if have == remote.size:
                    break
                try:
                    _transfer(url, part, have, remote.size, timeout, bar)
                except _Cut as cut:
                    got = part.stat().st_size if part.is_file() else 0
                    failures = 1 if got - have >= CHUNK else failures + 1  # an attempt that moved on starts a new count
                    if failures > retries:
                        raise ThresherError(
                            f"download of {url} stopped at {got:,} of {remote.size:,} bytes ({cut}) after "
                            f"{retries} retries; run the same command again to resume from there"
                        ) from None
                    time.sleep(min(backoff * 2 ** (failures - 1), 30.0))
        finally:
            bar.close()
        digest = md5sum(part)
        if digest != remote.md5:
            part.unlink()
            raise ThresherError(
                f"{remote.filename} from {url} has MD5 {digest}, expected {remote.md5}: the download is damaged or "
                "the server sent another file; it was deleted, run the same command again"
            )
        os.replace(part, dest)
        fsync_dir(dest.parent)
    log(f"downloaded {dest} (MD5 {digest} verified)")
    return dest


class _Cut(Exception):
    """A transfer that stopped early for a reason worth retrying (a reset, a timeout, a short read)."""


def _transfer(url: str, part: Path, have: int, size: int, timeout: float, bar) -> None:
    """One HTTP request: append from byte ``have`` (Range), or start over when the server sends the whole file."""
    headers = {"User-Agent": f"thresher/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the range starts past the file's end: the .part is not a prefix of it
            part.unlink()
            raise _Cut(f"HTTP 416 at byte {have:,}, starting over") from None
        if exc.code in (429, 500, 502, 503, 504):
            raise _Cut(f"HTTP {exc.code} {exc.reason}") from None
        raise ThresherError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; check the URL") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(exc, urllib.error.URLError) and isinstance(reason, socket.gaierror):
            raise ThresherError(
                f"download of {url} failed: cannot resolve the host ({reason}); are you online?"
            ) from None
        raise _Cut(str(reason) or type(exc).__name__) from None
    with response:
        start, total = _range_of(response, have)
        if total is not None and total != size:
            raise ThresherError(
                f"{url} serves {total:,} bytes, expected {size:,}: it is not the published file (or the server "
                "changed it); check the URL"
            )
        if start > have:  # bytes we do not have would be skipped: start over
            part.unlink(missing_ok=True)
            raise _Cut(f"the server sent bytes from {start:,}, not {have:,}")
        if start != have:  # the server ignored the Range header (or sent less): rewrite from ``start``
            bar.reset(total=size)
            bar.update(start)
        mode = "r+b" if start else "wb"
        with open(part, mode) as f:
            f.seek(start)
            f.truncate()
            written = start
            try:
                while block := response.read(CHUNK):
                    f.write(block)
                    written += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                raise _Cut(str(exc) or type(exc).__name__) from None
            finally:
                f.flush()
                os.fsync(f.fileno())
        if written < size:
            raise _Cut(f"the connection closed at byte {written:,}")


def _range_of(response, have: int) -> tuple[int, int | None]:
    """(first byte sent, total size of the file) from a 200 or 206 response."""
    if response.status == 206:
        m = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not m:
            raise _Cut("a 206 response without a valid Content-Range")
        total = None if m.group(3) == "*" else int(m.group(3))
        return int(m.group(1)), total
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _check_free_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + (64 << 20):
        raise ThresherError(
            f"not enough disk space in {folder}: the download needs {needed / 1e6:.0f} MB, {free / 1e6:.0f} MB are "
            "free; free some space or set THRESHER_CACHE to a larger disk"
        )
