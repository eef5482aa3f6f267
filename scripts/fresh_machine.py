"""The first run of a new user, replayed (issue 15): a fresh clone with no ../shared beside it, THRESHER_DATA holding
only cifar10 and fashion-mnist, the pool given once as an archive in the official Tiny ImageNet layout, then
``make demo ARGS=--quick``.

The archive is built from the shared pool's own images (upsampled 2x, saved as JPEG; 150 train + 25 val per class),
since this machine cannot reach the public archive. Usage, from the checkout (takes about 6 minutes on 2 cores):

    .venv/bin/python scripts/fresh_machine.py [--work DIR] [--keep]

It prints each step's command and time, and exits non-zero when a step fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tiny_archive import make_tiny_archive  # noqa: E402


def step(title: str, cmd: list[str], **kw) -> None:
    print(f"\n== {title}\n$ {' '.join(map(str, cmd))}", flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, **kw)
    print(f"-- {title}: {time.perf_counter() - t0:.0f} s", flush=True)


def build_archive(shared: Path, out: Path) -> Path:
    """tiny-imagenet-200.zip in the official layout from the shared pool: train 150, val 25 images per class."""
    folder = shared / "tiny-imagenet-200-32px"
    wnids = [ln.split("\t")[0] for ln in (folder / "classes.txt").read_text().splitlines() if ln.strip()]
    train_npz, val_npz = np.load(folder / "train.npz"), np.load(folder / "val.npz")
    train_images, train_labels = train_npz["images"], train_npz["labels"]
    val_images, val_labels = val_npz["images"], val_npz["labels"]
    train = {w: train_images[train_labels == k] for k, w in enumerate(wnids)}
    val = {w: val_images[val_labels == k] for k, w in enumerate(wnids)}
    return make_tiny_archive(out, train, val, gray_every=97)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="Scratch folder (default: a new temporary folder).")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="The real data to build from.")
    ap.add_argument("--keep", action="store_true", help="Keep the scratch folder.")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="thresher-fresh-"))
    work.mkdir(parents=True, exist_ok=True)
    assert not (work.parent / "shared").exists() or work.parent != REPO.parent, "the clone must not see ../shared"
    t0 = time.perf_counter()
    try:
        print(f"scratch: {work}")
        archive = build_archive(args.shared, work / "downloads-elsewhere" / "tiny-imagenet-200.zip")
        print(f"archive: {archive} ({archive.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
        data = work / "data"  # the targets only, as a user who downloaded them through torchvision would have
        data.mkdir(exist_ok=True)
        for name in ("cifar10", "fashion-mnist"):
            if not (data / name).exists():
                (data / name).symlink_to(args.shared.resolve() / name, target_is_directory=True)
        clone = work / "clone"
        if not clone.exists():
            step("fresh clone", ["git", "clone", "-q", REPO, clone])
        assert not (clone.parent / "shared").exists()
        env = {
            **os.environ,
            "THRESHER_DATA": str(data),
            "THRESHER_CACHE": str(work / "cache"),
            "THRESHER_OFFLINE": "1",  # proves nothing is fetched: the pool comes from the archive given
        }
        step("install", ["make", "-C", clone, ".venv/.installed"], env=env)
        thresher = clone / ".venv" / "bin" / "thresher"
        step("doctor", [thresher, "doctor"], env=env, cwd=clone)
        step("the pool, from the archive", [thresher, "data", "download", "tiny-imagenet-32", "--from", archive],
             env=env, cwd=clone)  # fmt: skip
        step("make demo ARGS=--quick", ["make", "-C", clone, "demo", "ARGS=--quick"], env=env)
        print(f"\nfresh machine: the quick demo ran, {time.perf_counter() - t0:.0f} s in all")
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
