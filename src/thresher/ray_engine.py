"""The Ray engine (``--engine ray``): the per-image passes of ``thresher embed`` and ``thresher score`` as Ray Data
pipelines.

The driver keeps what makes a run safe (the run folder, its lock, atomic writes, resume): it hands Ray the rows still
missing, Ray Data streams them through an actor pool in ``map_batches`` that loads the images and applies the backbone
(one GPU per actor when the cluster has GPUs) or, for scoring's decode-once pass, only reads and resizes them; the
driver writes the results as they come back, in row order. The store and the decoded cache are the local engine's,
so everything downstream reads them unchanged. Ray runs locally (``ray.init()``) unless an address is given
(``--ray-address``, or ``auto`` for ``RAY_ADDRESS``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import torch

from .errors import ThresherError


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ThresherError("--engine ray needs Ray Data: pip install 'thresher[ray]'") from None
    return ray


#: Ray warnings that every thresher run would print and that ask nothing of the user
ROUTINE_WARNINGS = ("Token authentication is enabled", "Progress bars disabled")


class _QuietFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        if record.levelno < logging.WARNING:
            return False
        return not any(text in record.getMessage() for text in ROUTINE_WARNINGS)


def quiet_console() -> None:
    """Keep Ray's INFO lines (cluster start, execution plans) and its routine warnings off the terminal, where thresher
    prints its own progress; other warnings (resources, spilling) still show, and Ray's log files get everything."""
    for name in ("ray", "ray.data"):
        for handler in logging.getLogger(name).handlers:
            console = isinstance(handler, logging.StreamHandler) and "File" not in type(handler).__name__
            if console and not any(isinstance(f, _QuietFilter) for f in handler.filters):
                handler.addFilter(_QuietFilter())


def connect(address: str | None, threads: int | None = None) -> None:
    """Join the cluster at ``address`` or start a local Ray; idempotent within a process."""
    ray = _ray()
    quiet_console()
    if ray.is_initialized():
        return
    opts = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False}
    if address:
        opts["address"] = address
    elif threads:
        opts["num_cpus"] = threads
    try:
        ray.init(**opts)
    except ConnectionError as exc:
        raise ThresherError(f"cannot reach the Ray cluster at {address}: {exc}; check --ray-address") from None


def _fetch(value):
    """An actor's constructor argument: object refs (the dataset, the weights) arrive unresolved, so fetch them."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


class _Embedder:
    """One actor: its own copy of the backbone; ``__call__`` embeds one batch of dataset rows."""

    def __init__(self, dataset, backbone: str, state_dict, resolution: int, threads: int | None):
        from .data.transforms import build_transform
        from .device import memory_format, resolve_device, set_threads
        from .models import create_backbone

        set_threads(threads)
        self.device = resolve_device("auto")
        self.fmt = memory_format(self.device)
        self.ds, self.resolution = _fetch(dataset), resolution
        state_dict = _fetch(state_dict)
        model = create_backbone(backbone)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
        self.model = model.to(self.device).eval().to(memory_format=self.fmt)
        self.transform = build_transform("eval", resolution)

    @torch.inference_mode()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .device import autocast

        index = batch["index"]
        x, ok = self.ds.load_batch(index, self.resolution)
        feats = np.zeros((len(index), self.model.feature_dim), np.float32)
        if len(x):
            x = self.transform(x.to(self.device), None).contiguous(memory_format=self.fmt)
            with autocast(self.device):
                feats[ok] = self.model.forward_features(x).float().cpu().numpy()
        return {"row": batch["row"], "index": index, "ok": ok, "emb": feats}


class _Decoder:
    """One actor of the decode-once pass: ``__call__`` reads and resizes one batch of images (no model)."""

    def __init__(self, dataset, size: int):
        self.ds, self.size = _fetch(dataset), size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["index"]
        x, ok = self.ds.load_batch(index, self.size)
        pixels = np.zeros((len(index), self.size, self.size, 3), np.uint8)
        pixels[ok] = x.permute(0, 2, 3, 1).numpy()
        return {"row": batch["row"], "index": index, "ok": ok, "pixels": pixels}


def _map_rows(
    rows: np.ndarray,
    actor: type,
    kwargs: dict,
    batch_size: int,
    *,
    address: str | None,
    actors: int | None,
    threads: int | None,
    gpu: bool,
):
    """Stream ``rows`` (dataset indices) through a Ray Data actor pool of ``actor(**kwargs)`` in ``map_batches``;
    yields the actors' numpy batches in row order (``row`` = position in ``rows``).

    ``gpu``: one GPU per actor when the cluster has GPUs, else each actor takes ``threads`` CPUs (default: a whole
    node's) and there are as many actors as fit. ``gpu=False`` (no model): one CPU per actor, one actor per CPU.
    """
    ray = _ray()
    connect(address, threads)
    gpus = int(ray.cluster_resources().get("GPU", 0)) if gpu else 0
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    node_cpus = max([int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] + [1])
    if gpus or not gpu:
        per_actor = 1
    else:  # an actor must fit on one node
        per_actor = max(1, min(threads or node_cpus, node_cpus))
    n_actors = actors or (gpus if gpus else max(1, cpus // per_actor))
    if "threads" in kwargs:
        kwargs = {**kwargs, "threads": per_actor}
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # blocks come back in row order
    ctx.enable_progress_bars = False
    table = pa.table({"row": np.arange(len(rows), dtype=np.int64), "index": np.asarray(rows, np.int64)})
    block = batch_size * 4  # several blocks, so every actor gets work
    data = ray.data.from_arrow([table.slice(i, block) for i in range(0, len(rows), block)])
    mapped = data.map_batches(
        actor,
        # the dataset and the weights go through the object store once, not inside every actor's definition
        fn_constructor_kwargs={k: ray.put(v) if k in ("dataset", "state_dict") else v for k, v in kwargs.items()},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else per_actor,
    )
    quiet_console()  # Ray Data sets up its loggers on first use
    yield from mapped.iter_batches(batch_size=None, batch_format="numpy")


def decode_batches(
    ds,
    batches: list[np.ndarray],
    size: int,
    *,
    address: str | None = None,
    actors: int | None = None,
    threads: int | None = None,
):
    """The Ray engine's ``data.loader.iterate_batches``: ``(indices, uint8 images of the readable ones, ok)`` per
    batch of ``batches``, in order, each batch read and resized by an actor (the decode-once pass of scoring)."""
    if not batches:
        return
    out = _map_rows(
        # actor batches smaller than the pass's (1024): a pool of a few thousand still spreads over every actor;
        # _rebatch cuts the rows back into the pass's batches
        np.concatenate(batches), _Decoder, {"dataset": ds, "size": size}, min(256, max(len(b) for b in batches)),
        address=address, actors=actors, threads=threads, gpu=False,
    )  # fmt: skip
    yield from _rebatch(out, batches)


def _regroup(out, sizes: list[int], what: str):
    """Cut output chunks (any sizes, in row order) into consecutive groups of ``sizes`` rows, each one dict of arrays;
    the row order is checked fully, and a stream that ends early is an error (the run resumes from what was kept)."""
    pieces: list[dict] = []  # rows base, base + 1, ... not yet handed out
    have = base = k = 0
    for got in out:
        pieces.append(got)
        have += len(got["row"])
        while k < len(sizes) and have >= sizes[k]:
            n = sizes[k]
            part = {key: np.concatenate([p[key] for p in pieces]) for key in got}
            if not np.array_equal(part["row"][:n], np.arange(base, base + n)):
                raise ThresherError(f"Ray returned the {what} out of order; re-run the same command to resume")
            yield {key: v[:n] for key, v in part.items()}
            pieces = [{key: v[n:] for key, v in part.items()}]
            have, base, k = have - n, base + n, k + 1
    if k != len(sizes):
        raise ThresherError(f"Ray returned the {what} incomplete; re-run the same command to resume")


def _rebatch(out, batches: list[np.ndarray]):
    """The decoder's output chunks cut back into ``batches``: ``(indices, readable images, ok)`` per batch."""
    for batch, part in zip(batches, _regroup(out, [len(b) for b in batches], "decoding pass"), strict=False):
        ok = part["ok"]
        yield batch, torch.from_numpy(part["pixels"][ok]).permute(0, 3, 1, 2).contiguous(), ok


def embed_shards(
    ds,
    shards: list[tuple[int, np.ndarray]],
    model: torch.nn.Module,
    backbone: str,
    resolution: int,
    batch_size: int,
    write: Callable[[int, np.ndarray, np.ndarray, np.ndarray, dict], None],
    *,
    address: str | None = None,
    actors: int | None = None,
    threads: int | None = None,
    progress=None,
) -> None:
    """Embed the rows of every ``(shard, indices)`` with Ray Data; ``write(shard, feats, kept, bad, cost)`` is called
    in shard order as each shard completes (the local engine's contract, so resume works the same)."""
    rows = np.concatenate([idx for _, idx in shards]).astype(np.int64)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    embedded = _map_rows(
        rows, _Embedder,
        {"dataset": ds, "backbone": backbone, "state_dict": state, "resolution": resolution, "threads": threads},
        batch_size, address=address, actors=actors, threads=threads, gpu=True,
    )  # fmt: skip

    def counted(chunks):
        for chunk in chunks:
            if progress is not None:
                progress.update(len(chunk["row"]))
            yield chunk

    started = time.perf_counter()
    parts = _regroup(counted(embedded), [len(idx) for _, idx in shards], "embedding pass")
    for (s, _), part in zip(shards, parts, strict=False):
        cost = {"images": len(part["row"]), "seconds": time.perf_counter() - started}
        write(s, part["emb"][part["ok"]], part["index"][part["ok"]], part["index"][~part["ok"]], cost)
        started = time.perf_counter()
