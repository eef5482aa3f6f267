"""Scores -> the pre-training subset: a budget and one of the modes in ``SELECTORS`` (000 B.2; 004 4.1, 4.2, 4.3).

Modes: ``top`` (highest scores, 000), ``weighted`` (same distribution matcher, with replacement, 004 4.3),
``elastic`` (elastic distribution matcher, without replacement, 004 4.3), ``classes`` (hand-picked label sets or
every class under an ancestor of a hierarchy, the hand-selected subsets of 004 4.2). A new mode is one function
``fn(pool: Pool, *, param=default, ...) -> Selection`` and one ``@SELECTORS.register("name")`` decorator; its
keyword parameters are the mode's parameters (``select(..., name=value)``).

Score -> weight transforms for ``weighted`` and ``elastic`` (``transform=``, registry ``WEIGHT_TRANSFORMS``):
``auto`` identity when every score is >= 0 (and some > 0), else ``rank``; ``identity`` the scores themselves (error
if any is negative); ``rank`` the average rank, 1 for the lowest score .. n for the highest (ties share their mean
rank); ``softmax`` exp(z / temperature) of the standardised scores z = (s - mean) / std (temperature default 1.0);
``shift`` s - min(s) (the lowest-scoring example gets weight 0).
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import jsonable
from .data.manifest import Manifest
from .errors import ThresherError
from .hierarchy import classes_under, resolve_class_list
from .registry import Registry

SELECTORS: Registry[Selection] = Registry("selection mode")
WEIGHT_TRANSFORMS: Registry[np.ndarray] = Registry("weight transform")


# --- the result ------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """Positions into the score arrays with a weight and a count each (000 B.2; 004 4.3); ``info`` = diagnostics.

    ``resolved_budget`` is the budget as a count (draws for ``weighted``; for ``classes`` without a budget, the
    number selected). ``params`` are the mode's parameters with defaults filled in.
    """

    positions: np.ndarray
    weights: np.ndarray
    counts: np.ndarray
    resolved_budget: int
    mode: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    budget: Any = None
    seed: int = 0
    pool_size: int = 0
    n_excluded: int = 0

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def total_count(self) -> int:
        return int(np.sum(self.counts))

    def provenance(self) -> dict[str, Any]:
        """The ``selection`` block of manifest.json: mode, params, budget as given and resolved, seed, pool."""
        return jsonable(
            {
                "mode": self.mode,
                "params": self.params,
                "budget": self.budget,
                "resolved_budget": self.resolved_budget,
                "seed": self.seed,
                "pool_size": self.pool_size,
                "excluded": self.n_excluded,
                "info": self.info,
            }
        )

    def to_manifest(
        self,
        ids: Sequence[str] | np.ndarray,
        labels: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Manifest:
        """The Manifest of this selection; ``ids``/``labels``/``scores`` are aligned with the arrays given to select.

        ``meta`` carries ``source`` (spec), ``method`` (scorer) and ``inputs`` (name -> sha256, see
        ``thresher.data.manifest.file_sha256``); the ``selection`` block is added here.
        """
        ids = np.asarray(ids, dtype=object)
        n = len(ids)
        if len(self.positions) and int(self.positions.max()) >= n:
            raise ThresherError(f"selection refers to position {int(self.positions.max())} but only {n} ids were given")
        for name, arr in (("labels", labels), ("scores", scores)):
            if arr is not None and len(arr) != n:
                raise ThresherError(f"to_manifest: {len(arr)} {name} for {n} ids")
        doc = dict(meta or {})
        doc["selection"] = self.provenance()
        return Manifest(
            ids=ids[self.positions],
            weights=self.weights,
            counts=self.counts,
            labels=None if labels is None else np.asarray(labels)[self.positions],
            scores=None if scores is None else np.asarray(scores, dtype=np.float64)[self.positions],
            meta=doc,
        )


# --- budget ---------------------------------------------------------------------------------------------------
def parse_budget(budget: Any) -> tuple[str, float]:
    """``budget`` -> ("fraction", f) with f in (0, 1] or ("count", c) with integral c >= 1 (000 B.2: 6%, 12%).

    Integers (and strings of integers) are counts; floats in (0, 1] are fractions (so 1.0 is the whole pool);
    integral floats > 1 ("3e3", 3000.0) are counts; "10%" is the fraction 0.1.
    """
    given = budget
    if budget is None:
        raise ThresherError("a budget is required: a fraction of the pool in (0, 1] (e.g. 0.1) or a count >= 1")
    if isinstance(budget, bool | np.bool_):
        raise ThresherError(f"budget {given!r} is not a number")
    if isinstance(budget, str):
        text = budget.strip()
        try:
            if text.endswith("%"):
                budget = float(text[:-1]) / 100.0
                if budget > 1:
                    raise ThresherError(f"budget {given!r} is more than 100% of the pool")
            elif re.fullmatch(r"[+-]?\d+", text):
                budget = int(text)
            else:
                budget = float(text)
        except ValueError:
            raise ThresherError(
                f"budget {given!r} is not a number; give a fraction in (0, 1] (e.g. 0.1) or a count (e.g. 3000)"
            ) from None
    if isinstance(budget, int | np.integer):
        if budget < 1:
            raise ThresherError(f"budget {given!r} must be >= 1 (a count) or a fraction in (0, 1]")
        return "count", float(budget)
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ThresherError(f"budget {given!r} is not a number") from None
    if not math.isfinite(value):
        raise ThresherError(f"budget {given!r} is not finite; give a fraction in (0, 1] or a count >= 1")
    if value <= 0:
        raise ThresherError(f"budget {given!r} must be positive: a fraction in (0, 1] or a count >= 1")
    if value <= 1:
        return "fraction", value
    if value.is_integer():
        return "count", value
    raise ThresherError(f"budget {given!r} is neither a fraction in (0, 1] nor a whole count")


def resolve_budget(budget: Any, n: int, *, replacement: bool = False, excluded: int = 0) -> int:
    """The budget as a number of examples for a pool of ``n`` (after exclusions); fractions round half up.

    Without replacement a count above ``n`` is an error; with replacement (``weighted``) any count is allowed.
    """
    kind, value = parse_budget(budget)
    note = f" (after excluding {excluded} near-duplicates of the target)" if excluded else ""
    if n <= 0:
        raise ThresherError(f"the pool is empty{note}; nothing to select")
    if kind == "fraction":
        k = int(math.floor(value * n + 0.5))
        if k < 1:
            raise ThresherError(
                f"budget {budget!r} of a pool of {n} examples{note} is {value * n:.3g} examples, which rounds to 0; "
                "give a larger fraction or a count"
            )
        return k
    k = int(value)
    if k > n and not replacement:
        raise ThresherError(
            f"budget {k} is more than the {n} examples in the pool{note}; give a count <= {n} or a fraction, or use "
            "mode 'weighted' (samples with replacement)"
        )
    return k


# --- score -> weight transforms ----------------------------------------------------------------------------
@WEIGHT_TRANSFORMS.register("identity")
def _identity(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The scores are the weights (importance weights of 004 3.3); negative scores are an error."""
    neg = int((scores < 0).sum())
    if neg:
        raise ThresherError(
            f"transform 'identity' needs non-negative scores, but {neg} are negative (min {scores.min():.4g}); "
            "use transform 'rank', 'softmax' or 'shift'"
        )
    return scores.astype(np.float64, copy=True)


@WEIGHT_TRANSFORMS.register("rank")
def _rank(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Weight = rank 1 (lowest) .. n (highest); tied scores share their average rank."""
    n = len(scores)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    new_group = np.r_[True, ordered[1:] != ordered[:-1]] if n else np.zeros(0, bool)
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], n]
    mean_rank = (starts + 1 + ends) / 2.0  # ranks starts+1 .. ends
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = mean_rank[np.cumsum(new_group) - 1]
    return ranks


@WEIGHT_TRANSFORMS.register("softmax")
def _softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Weight = exp(z / temperature), z = standardised scores (constant scores -> uniform weights)."""
    s = scores.astype(np.float64)
    std = float(s.std())
    z = (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    return np.exp((z - z.max()) / temperature)


@WEIGHT_TRANSFORMS.register("shift")
def _shift(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Weight = score - min(score): the lowest-scoring example gets weight 0."""
    return scores.astype(np.float64) - float(scores.min())


def to_weights(scores: np.ndarray, transform: str = "auto", temperature: float | None = None) -> tuple[np.ndarray, str]:
    """Map scores to non-negative sampling weights (004 4.1) -> (weights, transform used); see the module doc."""
    s = np.asarray(scores, dtype=np.float64)
    name = str(transform)
    if name == "auto":
        name = "identity" if len(s) and (s >= 0).all() and s.sum() > 0 else "rank"
    elif name not in WEIGHT_TRANSFORMS:
        close = difflib.get_close_matches(name, ["auto", *WEIGHT_TRANSFORMS], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ThresherError(f"unknown weight transform {name!r}{hint} (known: auto, {', '.join(WEIGHT_TRANSFORMS)})")
    if temperature is not None and name != "softmax":
        raise ThresherError(f"temperature applies to transform 'softmax' only, not {name!r}")
    t = 1.0 if temperature is None else _positive_float(temperature, "temperature")
    w = WEIGHT_TRANSFORMS.get(name)(s, temperature=t)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ThresherError(f"transform {name!r} produced non-finite or negative weights; try transform 'rank'")
    if not len(w) or w.sum() <= 0:
        raise ThresherError(f"transform {name!r} gives every example weight 0; try transform 'rank' or 'softmax'")
    return w, name


def _positive_float(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ThresherError(f"{what} {value!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise ThresherError(f"{what} must be a positive finite number, got {value!r}")
    return v


def draw_with_replacement(p: np.ndarray, m: int, rng: np.random.Generator, chunk: int = 1 << 20) -> np.ndarray:
    """Counts of ``m`` draws with replacement from probabilities ``p`` (inverse CDF, in chunks; 004 4.3)."""
    cdf = np.cumsum(p, dtype=np.float64)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    counts = np.zeros(len(p), dtype=np.int64)
    left = int(m)
    while left > 0:
        k = min(left, chunk)
        counts += np.bincount(np.searchsorted(cdf, rng.random(k), side="right"), minlength=len(p))
        left -= k
    return counts


def rank_order(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by descending score, ties in a seeded random order (the importance score of 004 3.3 ties per class)."""
    return np.lexsort((rng.permutation(len(scores)), -np.asarray(scores, dtype=np.float64)))


# --- what a mode sees --------------------------------------------------------------------------------------
@dataclass
class Pool:
    """The non-excluded examples a mode selects from; positions a mode returns index these arrays."""

    scores: np.ndarray | None
    labels: np.ndarray | None
    class_names: list[str] | None
    budget: Any
    rng: np.random.Generator
    n_excluded: int = 0
    size: int = 0
    ids: np.ndarray | None = None  # the examples' ids (mode ``given`` matches a manifest by them)

    def __len__(self) -> int:
        return self.size

    def count(self, mode: str, *, replacement: bool = False) -> int:
        """The budget resolved against this pool; modes other than ``classes`` require one."""
        if self.budget is None:
            raise ThresherError(f"mode {mode!r} needs a budget: a fraction of the pool in (0, 1] or a count >= 1")
        return resolve_budget(self.budget, self.size, replacement=replacement, excluded=self.n_excluded)

    def require_scores(self, mode: str) -> np.ndarray:
        if self.scores is None:
            raise ThresherError(f"mode {mode!r} needs scores")
        return self.scores

    def require_labels(self, mode: str) -> np.ndarray:
        if self.labels is None or not (self.labels >= 0).any():
            raise ThresherError(f"mode {mode!r} needs the source labels, and the pool has none")
        return self.labels


def _uniform(positions: np.ndarray, resolved: int, **info: Any) -> Selection:
    k = len(positions)
    return Selection(
        positions=np.asarray(positions, dtype=np.int64),
        weights=np.full(k, 1.0 / k if k else 0.0),
        counts=np.ones(k, dtype=np.int64),
        resolved_budget=resolved,
        info=info,
    )


# --- modes -------------------------------------------------------------------------------------------------------
@SELECTORS.register("top")
def top(pool: Pool) -> Selection:
    """The ``budget`` highest-scoring examples, ties in seeded random order (000 B.2: keep the top N)."""
    k = pool.count("top")
    return _uniform(rank_order(pool.require_scores("top"), pool.rng)[:k], k)


@SELECTORS.register("weighted")
def weighted(pool: Pool, *, transform: str = "auto", temperature: float | None = None) -> Selection:
    """Same distribution matcher (004 4.1, 4.3): ``budget`` draws with replacement, probability ∝ weight."""
    m = pool.count("weighted", replacement=True)
    w, used = to_weights(pool.require_scores("weighted"), transform, temperature)
    p = w / w.sum()
    counts = draw_with_replacement(p, m, pool.rng)
    pos = np.flatnonzero(counts)
    return Selection(
        positions=pos,
        weights=p[pos],
        counts=counts[pos],
        resolved_budget=m,
        info={"transform_used": used, "unique": len(pos)},
    )


@SELECTORS.register("elastic")
def elastic(pool: Pool, *, transform: str = "auto", temperature: float | None = None) -> Selection:
    """Elastic distribution matcher (004 4.3): without replacement, classes by weight, excess redistributed.

    The highest-weight class takes min(round(remaining x its share of the remaining weight), its size) examples,
    highest scores first; then the rest recurse on the remaining budget. Passes repeat over the classes with
    examples left until the budget is met. Unlabeled examples and classes of total weight 0 are never selected.
    """
    scores = pool.require_scores("elastic")
    y = pool.require_labels("elastic")
    k = pool.count("elastic")
    w, used = to_weights(scores, transform, temperature)
    labeled = np.flatnonzero(y >= 0)
    classes, inv = np.unique(y[labeled], return_inverse=True)
    cw = np.bincount(inv, weights=w[labeled], minlength=len(classes))
    avail = np.bincount(inv, minlength=len(classes)).astype(np.int64)
    eligible = int(avail[cw > 0].sum())
    if k > eligible:
        raise ThresherError(
            f"mode 'elastic': budget {k} is more than the {eligible} labeled examples in classes of positive weight "
            f"(transform {used!r}); give a smaller budget, or use transform 'rank' or mode 'weighted'"
        )
    # members of each class contiguous (classes ascending, as np.unique), best score first, ties random
    members = labeled[np.lexsort((pool.rng.permutation(len(labeled)), -scores[labeled], y[labeled]))]
    starts = np.r_[0, np.cumsum(avail)[:-1]]
    order = [int(c) for c in np.lexsort((pool.rng.permutation(len(classes)), -cw)) if cw[c] > 0]
    taken = np.zeros(len(classes), dtype=np.int64)
    remaining, active = k, order
    while remaining > 0 and active:
        before = remaining
        tails = np.cumsum(cw[active][::-1])[::-1]  # weight of this class and all after it
        for c, tail in zip(active, tails, strict=True):
            desired = int(math.floor(remaining * (cw[c] / tail) + 0.5))
            t = min(desired, int(avail[c] - taken[c]))
            taken[c] += t
            remaining -= t
        active = [c for c in active if taken[c] < avail[c]]
        if remaining == before:  # cannot happen (the last active class takes the rest or is exhausted); be safe
            break
    pos = np.concatenate([members[starts[c] : starts[c] + taken[c]] for c in order] or [np.zeros(0, np.int64)])
    total_w = float(cw[order].sum())
    info = {
        "transform_used": used,
        "classes": [
            {
                "label": int(classes[c]),
                "weight_share": float(cw[c] / total_w),
                "available": int(avail[c]),
                "taken": int(taken[c]),
            }
            for c in order
            if taken[c]
        ],
    }
    return _uniform(pos, k, **info)


@SELECTORS.register("classes")
def classes_mode(
    pool: Pool,
    *,
    classes: Any = None,
    ancestor: str | Sequence[str] | None = None,
    hierarchy: str | Path | None = None,
    wordnet: str | Path | None = None,
    fill: bool = False,
) -> Selection:
    """Hand-picked label sets (004 4.2, e.g. every class under "bird"), capped by the budget as a random subset.

    ``classes``: names or integer ids, or ``hand-picked:TARGET`` (the package's list for a built-in target);
    ``ancestor`` (+ ``hierarchy``: a file of ``child parent`` lines, or a local WordNet ``data.noun`` for WordNet ids):
    every class with the ancestor above it, or equal to it. Budget None = all; a fractional budget is of the whole
    (non-excluded) pool, as in the other modes. ``fill``: when the classes hold fewer examples than the budget, draw
    the rest with replacement (a reference arm of the budget's size; its unique count stays in the manifest).
    """
    from .data.hand_picked import PREFIX, hand_picked

    y = pool.require_labels("classes")
    if classes is None and ancestor is None:
        raise ThresherError("mode 'classes' needs classes=NAMES|IDS or ancestor=NAME (with hierarchy=FILE)")
    ids: list[int] = []
    if isinstance(classes, str) and classes.startswith(PREFIX):  # the classes of the list this pool has
        ids += hand_picked(classes, pool.class_names)
    elif classes is not None:
        ids += resolve_class_list(classes, pool.class_names)
    if ancestor is not None:
        ids += classes_under(ancestor, pool.class_names, hierarchy=hierarchy, wordnet=wordnet)
    ids = sorted(set(ids))
    candidates = np.flatnonzero(np.isin(y, ids))
    if not len(candidates):
        raise ThresherError(f"mode 'classes': no example in the pool has one of the {len(ids)} chosen classes")
    names = pool.class_names
    info: dict[str, Any] = {
        "class_ids": ids,
        "class_names": [names[i] for i in ids] if names else None,
        "available": len(candidates),
    }
    if pool.budget is None:
        return _uniform(candidates, len(candidates), **info)
    return _capped_or_filled(candidates, pool.count("classes"), pool.rng, fill, info)


@SELECTORS.register("given")
def given(pool: Pool, *, manifest: str | Path | None = None, fill: bool = True) -> Selection:
    """A fixed set from a manifest (a hand-picked or earlier selection), as a reference arm of the budget's size: a
    random subset of it when it holds more examples, all of it plus draws with replacement when fewer (``fill``)."""
    from .data.manifest import Manifest

    if manifest is None:
        raise ThresherError("mode 'given' needs manifest=PATH (a manifest.parquet or the folder holding it)")
    if pool.ids is None:
        raise ThresherError("mode 'given' needs the pool's ids")
    m = Manifest.read(manifest)
    candidates = np.flatnonzero(np.isin(pool.ids, m.ids))
    if not len(candidates):
        raise ThresherError(f"mode 'given': none of the {len(m.ids)} examples of {manifest} is in this pool")
    info = {"manifest": str(manifest), "available": len(candidates), "missing": int(len(m.ids) - len(candidates))}
    if pool.budget is None:
        return _uniform(candidates, len(candidates), **info)
    return _capped_or_filled(candidates, pool.count("given"), pool.rng, fill, info)


def _capped_or_filled(candidates: np.ndarray, k: int, rng: np.random.Generator, fill: bool, info: dict) -> Selection:
    """``k`` of ``candidates``: a uniform random subset when there are more; when fewer, all of them and, with
    ``fill``, ``k - len`` further uniform draws with replacement (counts > 1), so the arm trains on ``k`` draws."""
    if k <= len(candidates) or not fill:
        picked = np.sort(rng.choice(candidates, size=min(k, len(candidates)), replace=False))
        return _uniform(picked, k, capped=bool(k < len(candidates)), **info)
    counts = 1 + np.bincount(rng.integers(0, len(candidates), size=k - len(candidates)), minlength=len(candidates))
    return Selection(
        positions=np.asarray(candidates, dtype=np.int64),
        weights=counts / counts.sum(),
        counts=counts.astype(np.int64),
        resolved_budget=k,
        info={**info, "filled_with_replacement": int(k - len(candidates)), "unique": len(candidates)},
    )


# --- entry point ----------------------------------------------------------------------------------------------------
def _mode_params(mode: str, fn: Any, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check ``given`` against the mode's keyword parameters -> (arguments to pass, all params with defaults)."""
    sig = list(inspect.signature(fn).parameters.values())[1:]
    names = [p.name for p in sig]
    for key in given:
        if key not in names:
            takes = ", ".join(names) or "no parameters"
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ThresherError(f"mode {mode!r} has no parameter {key!r}{hint} (it takes: {takes})")
    passed = {k: v for k, v in given.items() if v is not None}
    full = {p.name: passed.get(p.name, p.default) for p in sig}
    return passed, full


def _vector(arr: Any, name: str, n: int | None) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 1:
        raise ThresherError(f"{name} must be one-dimensional, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ThresherError(f"{len(a)} {name} for {n} scores; they must be aligned")
    return a


def select(
    scores: np.ndarray | Sequence[float] | None,
    *,
    budget: Any,
    mode: str,
    labels: np.ndarray | Sequence[int] | None = None,
    seed: int = 0,
    exclude: np.ndarray | Sequence[bool] | None = None,
    class_names: Sequence[str] | None = None,
    ids: Sequence[str] | np.ndarray | None = None,
    **mode_params: Any,
) -> Selection:
    """Select the pre-training set from scored examples (000 B.2; 004 4.3) with mode ``mode`` of ``SELECTORS``.

    ``exclude`` (bool per example, e.g. near-duplicates of target images) are never selected and a fractional
    budget is of the rest. Scores may be None for modes ``classes`` and ``given`` (which reads ``ids``). Positions
    index the arrays given here.
    """
    fn = SELECTORS.get(mode)
    passed, full = _mode_params(mode, fn, mode_params)
    n: int | None = None
    score_arr = None
    if scores is not None:
        score_arr = _vector(scores, "scores", None)
        if not (np.issubdtype(score_arr.dtype, np.number) or score_arr.dtype == bool):
            raise ThresherError(f"scores must be numbers, got {score_arr.dtype}")
        score_arr = score_arr.astype(np.float64)
        n = len(score_arr)
    label_arr = None
    if labels is not None:
        label_arr = _vector(labels, "labels", n)
        if len(label_arr) and not np.issubdtype(label_arr.dtype, np.integer):
            raise ThresherError(f"labels must be integers (-1 = unlabeled), got {label_arr.dtype}")
        label_arr = label_arr.astype(np.int64)
        n = len(label_arr)
    if n is None and ids is not None:
        n = len(ids)
    if n is None:
        raise ThresherError(f"mode {mode!r} needs scores (or labels for mode 'classes', ids for mode 'given')")
    keep = np.ones(n, dtype=bool)
    if exclude is not None:
        ex = _vector(exclude, "exclude flags", n)
        if ex.dtype != bool:
            if not (np.issubdtype(ex.dtype, np.integer) and np.isin(ex, (0, 1)).all()):
                raise ThresherError(f"exclude must be booleans, got {ex.dtype}")
            ex = ex.astype(bool)
        keep = ~ex
    pool_pos = np.flatnonzero(keep)
    pool_scores = None if score_arr is None else score_arr[pool_pos]
    if pool_scores is not None:
        bad = ~np.isfinite(pool_scores)
        if bad.any():
            first = int(pool_pos[np.flatnonzero(bad)[0]])
            raise ThresherError(
                f"{int(bad.sum())} of {len(pool_scores)} scores are NaN or infinite (first at position {first}); "
                "re-run scoring or exclude those examples"
            )
    try:
        seed = int(seed)
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ThresherError(f"seed must be a non-negative integer, got {seed!r}") from None
    pool = Pool(
        scores=pool_scores,
        labels=None if label_arr is None else label_arr[pool_pos],
        class_names=None if class_names is None else [str(c) for c in class_names],
        budget=budget,
        rng=rng,
        n_excluded=int(n - len(pool_pos)),
        size=len(pool_pos),
        ids=None if ids is None else np.asarray(ids, dtype=object)[pool_pos],
    )
    sel = fn(pool, **passed)
    sel.positions = pool_pos[np.asarray(sel.positions, dtype=np.int64)]
    sel.weights = np.asarray(sel.weights, dtype=np.float64)
    sel.counts = np.asarray(sel.counts, dtype=np.int64)
    sel.mode, sel.params, sel.budget, sel.seed = mode, jsonable(full), jsonable(budget), seed
    sel.pool_size, sel.n_excluded = pool.size, pool.n_excluded
    return sel
