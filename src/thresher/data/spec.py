"""Dataset spec strings: ``scheme:BODY[?option=value&...]`` -> an ImageDataset (README lists the schemes)."""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from urllib.parse import parse_qsl

from ..errors import ThresherError
from ..registry import Registry
from .base import ImageDataset

#: scheme -> opener(body, *, data_root, strict, **options) -> ImageDataset; the kinds register from
#: ``thresher.data`` (the package lists them), imported on the first lookup
DATASETS: Registry = Registry("dataset kind", roster="thresher.data")


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``scheme:BODY?k=v`` into its parts; a clear error names the accepted schemes."""
    scheme, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ThresherError(
            f"dataset spec {spec!r} needs the form SCHEME:PATH, with SCHEME one of {', '.join(DATASETS)} "
            "(e.g. npz:data/train.npz, folder:images/, builtin:cifar10:train)"
        )
    if scheme == "sources":  # a JSON list of specs: its own ``?`` belong to the parts
        return scheme, rest, {}
    body, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    return scheme, body, options


def split_suffix(body: str) -> tuple[str, str | None]:
    """``PATH`` or ``PATH:SPLIT``: a trailing ``:SPLIT`` counts only when the whole body is not an existing path."""
    if Path(body).expanduser().exists() or ":" not in body:
        return body, None
    path, _, split = body.rpartition(":")
    return path, split or None


def absolute_spec(spec: str) -> str:
    """The same spec with a relative path made absolute, so a manifest or score table can be read from anywhere."""
    scheme, body, _ = parse_spec(spec)
    if scheme in ("builtin", "sources"):  # a pool of several sources holds absolute specs already
        return spec
    path, split = split_suffix(body)
    p = Path(path).expanduser()
    if p.is_absolute() or not p.exists() and split is None:
        return spec
    rest = spec[len(scheme) + 1 + len(body) :]
    return f"{scheme}:{p.resolve()}" + (f":{split}" if split else "") + rest


def open_dataset(spec: str, *, data_root: str | None = None, strict: bool = False) -> ImageDataset:
    """Open the dataset named by ``spec``; unknown schemes and options fail with a suggestion."""
    scheme, body, options = parse_spec(spec)
    opener = DATASETS.get(scheme)
    params = inspect.signature(opener).parameters
    accepted = [p for p in params if p not in ("body", "data_root", "strict")]
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            allowed = ", ".join(accepted) or "none"
            raise ThresherError(f"unknown option {key!r} in dataset spec {spec!r}{hint} (options: {allowed})")
    ds = opener(body, data_root=data_root, strict=strict, **options)
    ds.spec = spec
    return ds
