"""``npz:PATH`` datasets: arrays ``images`` (N x H x W x C uint8) and ``labels``, the format of ../shared/data;
an optional ``multilabels`` (N x classes, 0/1) makes a multi-label target (evaluated by macro AUROC), an optional
``ids`` (N strings, unique) names the examples (else ``<file stem>-<index>``), and an optional ``captions`` (N
strings) gives each image its text (image-text pre-training, issue 21).

Compressed ``.npz`` members are decompressed once into a cache and memory-mapped from there, streaming, so the
pixels are never held twice in memory; uncompressed members and ``.npy`` files are memory-mapped in place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ThresherError
from ..paths import cache_dir
from .base import UNLABELED, ImageDataset, to_square
from .classes import read_classes
from .spec import DATASETS, split_suffix


class ArrayDataset(ImageDataset):
    """Images held in an (optionally memory-mapped) N x H x W [x C] uint8 array; batches are sliced, not looped."""

    def __init__(
        self,
        images,
        labels=None,
        *,
        classes: list[str] | None = None,
        id_prefix: str = "",
        spec: str = "",
        descriptions: list[str] | None = None,
        multilabels: np.ndarray | None = None,
        ids: np.ndarray | None = None,
        captions: np.ndarray | None = None,
    ):
        super().__init__()
        self._reopen = getattr(images, "reopen", None)  # (file, offset) of a memory-mapped .npy, else None
        if images.ndim == 3:  # N x H x W grayscale
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ThresherError(
                f"{spec or 'array dataset'}: images must be N x H x W x C with C = 1 or 3, got shape "
                f"{tuple(images.shape)}"
            )
        if images.dtype != np.uint8:
            raise ThresherError(f"{spec or 'array dataset'}: images must be uint8, got {images.dtype}")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (images.shape[0],):
                raise ThresherError(
                    f"{spec or 'array dataset'}: labels have shape {labels.shape}, "
                    f"expected ({images.shape[0]},) to match the images"
                )
            if not np.issubdtype(labels.dtype, np.integer):
                raise ThresherError(f"{spec or 'array dataset'}: labels must be integers, got {labels.dtype}")
            if len(labels) and labels.min() < UNLABELED:
                raise ThresherError(
                    f"{spec or 'array dataset'}: negative label {int(labels.min())} (use -1 for unlabeled)"
                )
        if multilabels is not None:
            multilabels = np.asarray(multilabels)
            if multilabels.ndim != 2 or len(multilabels) != images.shape[0]:
                raise ThresherError(
                    f"{spec or 'array dataset'}: multilabels must be (n, classes) with n = {images.shape[0]}, got "
                    f"{multilabels.shape}"
                )
            if not np.isin(multilabels, (0, 1)).all():
                raise ThresherError(f"{spec or 'array dataset'}: multilabels must hold only 0 and 1")
            multilabels = multilabels.astype(np.uint8)
        if ids is not None:
            ids = _check_ids(ids, images.shape[0], spec)
        if captions is not None:
            captions = np.asarray(captions)
            if captions.shape != (images.shape[0],) or captions.dtype.kind not in "US":
                raise ThresherError(f"{spec or 'array dataset'}: captions must be {images.shape[0]} strings (one per "
                                    f"image), got {captions.dtype} of shape {captions.shape}")  # fmt: skip
            captions = captions.astype(str).astype(object)
        self.captions = captions
        self._given_ids = ids
        self.multilabels = multilabels
        self.images = images
        self._raw_labels = labels
        self.classes = classes
        self.descriptions = descriptions
        self.id_prefix = id_prefix
        self.spec = spec

    def __getstate__(self) -> dict:
        """A memory-mapped dataset pickles by file and offset (to Ray actors, spawned workers), not by a copy of its
        pixels: a pool of millions would otherwise be copied whole into every worker."""
        state = self.__dict__.copy()
        if state.get("_reopen"):
            state["images"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.images is None and self.__dict__.get("_reopen"):
            images = _memmap_npy(Path(self._reopen[0]), self._reopen[1])
            self.images = images[..., None] if images.ndim == 3 else images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _make_ids(self) -> np.ndarray:
        if self.__dict__.get("_given_ids") is not None:
            return self._given_ids
        width = max(6, len(str(max(len(self) - 1, 0))))
        return np.array([f"{self.id_prefix}{i:0{width}d}" for i in range(len(self))], dtype=object)

    def _make_labels(self) -> np.ndarray:
        if self._raw_labels is None:
            return np.full(len(self), UNLABELED, dtype=np.int64)
        return self._raw_labels.astype(np.int64)

    def load(self, index: int) -> np.ndarray:
        return np.asarray(self.images[index])

    def load_batch(self, indices: Sequence[int], size: int, strict: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")  # sorted reads are sequential on a memmap
        arr = np.empty((len(idx),) + tuple(self.images.shape[1:]), dtype=np.uint8)
        arr[order] = self.images[idx[order]]
        x = torch.from_numpy(arr).permute(0, 3, 1, 2)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return to_square(x.contiguous(), size), np.ones(len(idx), dtype=bool)


def _check_ids(ids, n: int, spec: str) -> np.ndarray:
    """Given ids: n unique, non-empty strings."""
    ids = np.asarray(ids)
    where = spec or "array dataset"
    if ids.shape != (n,) or ids.dtype.kind not in "US":
        raise ThresherError(f"{where}: ids must be {n} strings (one per image), got {ids.dtype} of shape {ids.shape}")
    ids = ids.astype(str).astype(object)
    if n and (len(set(ids)) != n or min(len(i) for i in ids) == 0):
        raise ThresherError(f"{where}: ids must be unique, non-empty strings")
    return ids


# --- npz files ------------------------------------------------------------------------------------


def _member_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored (uncompressed) zip member's data inside the archive."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        if header[:4] != b"PK\x03\x04":
            raise ThresherError(f"{path}: corrupt zip header for {info.filename}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        return info.header_offset + 30 + name_len + extra_len


def _memmap_npy(f_path: Path, offset: int = 0) -> np.ndarray:
    """Memory-map a .npy payload that starts at ``offset`` bytes into ``f_path``."""
    with open(f_path, "rb") as f:
        f.seek(offset)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        data_offset = f.tell()
    if dtype.hasobject:
        raise ThresherError(f"{f_path}: object arrays are not accepted")
    mapped = np.memmap(f_path, dtype=dtype, mode="r", offset=data_offset, shape=shape, order="F" if fortran else "C")
    mapped.reopen = (str(f_path), offset)  # how a pickled ArrayDataset maps it again (see __getstate__)
    return mapped


def cached_member(path: Path, member: str) -> np.ndarray:
    """Memory-map ``member`` of the npz at ``path``: in place when stored, else from a once-decompressed cache."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ThresherError(f"cannot read {path} as an .npz archive: {exc}") from None
    with zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise ThresherError(
                f"{path} has no array {member.removesuffix('.npy')!r} "
                f"(it has: {', '.join(n.removesuffix('.npy') for n in zf.namelist())})"
            ) from None
        if info.compress_type == zipfile.ZIP_STORED:
            return _memmap_npy(path, _member_offset(path, info))
        st = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{member}".encode()).hexdigest()[:20]
        target = cache_dir() / "npz" / f"{key}.npy"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            try:
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=16 << 20)
                os.replace(tmp, target)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                tmp.unlink(missing_ok=True)
                raise ThresherError(f"cannot decompress {member} from {path}: {exc}") from None
    return _memmap_npy(target)


def array_shape(path: str | Path, member: str = "images") -> tuple[int, ...]:
    """The shape of an array in an .npz (or of a .npy), read from its header only: no decompression of the data."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            f = open(path, "rb")
        else:
            with zipfile.ZipFile(path) as zf:
                f = zf.open(f"{member}.npy")
        with f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return tuple(read(f)[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ThresherError(f"cannot read the {member!r} array of {path} ({exc})") from None


def open_npz_path(path: Path, spec: str = "") -> ArrayDataset:
    """Open an .npz file, a .npy file of images, or a folder holding images.npy [+ labels.npy]."""
    if not path.exists():
        raise ThresherError(f"dataset path {path} does not exist")
    labels = multilabels = ids = captions = None
    if path.is_dir():
        img_file = path / "images.npy"
        if not img_file.is_file():
            npzs = sorted(p.stem for p in path.glob("*.npz"))
            hint = f"; name a split, e.g. npz:{path}:{npzs[0]}" if npzs else ""
            raise ThresherError(f"{path} is a folder without images.npy{hint}")
        images = _memmap_npy(img_file)
        if (path / "labels.npy").is_file():
            labels = np.load(path / "labels.npy", allow_pickle=False)
        if (path / "multilabels.npy").is_file():
            multilabels = np.load(path / "multilabels.npy", allow_pickle=False)
        if (path / "ids.npy").is_file():
            ids = np.load(path / "ids.npy", allow_pickle=False)
        if (path / "captions.npy").is_file():
            captions = np.load(path / "captions.npy", allow_pickle=False)
        prefix, folder = "", path
    elif path.suffix == ".npy":
        images, prefix, folder = _memmap_npy(path), f"{path.stem}-", path.parent
    else:
        images = cached_member(path, "images.npy")
        with zipfile.ZipFile(path) as zf:
            small = {}
            for member in ("labels", "multilabels", "ids", "captions"):
                if f"{member}.npy" in zf.namelist():
                    with zf.open(f"{member}.npy") as f:
                        try:
                            small[member] = np.lib.format.read_array(f, allow_pickle=False)
                        except ValueError as exc:  # an object (pickled) array
                            raise ThresherError(f"{path}: array {member!r} cannot be read ({exc})") from None
            labels, multilabels, ids = small.get("labels"), small.get("multilabels"), small.get("ids")
            captions = small.get("captions")
        prefix, folder = f"{path.stem}-", path.parent
    classes, desc = read_classes(folder)
    ds = ArrayDataset(
        images,
        labels,
        classes=classes,
        descriptions=desc,
        id_prefix=prefix,
        spec=spec,
        multilabels=multilabels,
        ids=ids,
        captions=captions,
    )
    ds.source = str(path)
    return ds


@DATASETS.register("npz")
def open_npz(body: str, *, data_root: str | None = None, strict: bool = False) -> ArrayDataset:
    """``npz:FILE.npz``, ``npz:FOLDER:SPLIT`` (FOLDER/SPLIT.npz), ``npz:FILE.npy`` or ``npz:FOLDER`` (images.npy)."""
    path_s, split = split_suffix(body)
    path = Path(path_s).expanduser()
    if split is not None:
        path = path / f"{split}.npz"
    return open_npz_path(path, spec=f"npz:{body}")
