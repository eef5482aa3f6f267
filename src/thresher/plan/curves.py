"""Accuracy against compute (METHODS.md "Accuracy against compute"; issue 19): acc(C) = a - b C^(-alpha).

Transfer accuracy rises and saturates with pre-training compute; a small data fraction saturates early (Goyal et
al., CVPR 2024), so each candidate (method x fraction x resolution) gets its own curve, fitted to its pilots. For a
fixed exponent alpha the curve is linear in (a, b), so the fit is a one-dimensional search over alpha with an exact
least-squares solve inside (b >= 0: more compute never predicts less). With few compute levels a candidate's own
exponent is poorly determined; ``fit_curves(shared=True)`` fits one alpha for every candidate (their a and b stay
their own). The prediction interval at a budget combines the pilots' seed noise (a bootstrap over seeds, refitting
each time) with how far the curve misses a level it did not see (the leave-the-largest-level-out error, scaled by how
many level ratios the prediction lies past the largest pilot): a pilot grid tells nothing past its largest level but
the trend, and the interval says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ThresherError

#: the exponents searched (log-uniformly): slower than C^-0.02 is a flat line, faster than C^-4 a step
ALPHA_RANGE = (0.02, 4.0)
#: the most a curve may promise: top-1 and macro AUROC are at most 1, so a fitted ceiling a above it is clipped (a
#: slow exponent otherwise fits a rising pilot grid with a ceiling of 1.8 and extrapolates a log-linear trend forever)
CEILING = 1.0


@dataclass(frozen=True)
class Curve:
    """acc(C) = a - b C^(-alpha), with the fit's root-mean-square residual over the pilots' means."""

    a: float
    b: float
    alpha: float
    rmse: float = 0.0

    def predict(self, compute: float | np.ndarray) -> float | np.ndarray:
        c = np.asarray(compute, dtype=np.float64)
        if np.any(c <= 0):
            raise ThresherError("compute must be positive to predict accuracy")
        out = self.a - self.b * c ** (-self.alpha)
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Points:
    """A candidate's pilots: compute levels and the accuracy measured at each, one value per seed."""

    compute: np.ndarray  # (n,) positive, in C
    accuracy: np.ndarray  # (n,) one pilot run each (several runs may share a level: its seeds)

    @classmethod
    def of(cls, compute: Sequence[float], accuracy: Sequence[float]) -> Points:
        c, y = np.asarray(compute, np.float64), np.asarray(accuracy, np.float64)
        if c.shape != y.shape or c.ndim != 1 or len(c) == 0:
            raise ThresherError(f"pilots need one accuracy per compute level, got {c.shape} and {y.shape}")
        if np.any(c <= 0) or not np.all(np.isfinite(y)):
            raise ThresherError("pilot compute levels must be positive and accuracies finite")
        return cls(c, y)

    @property
    def levels(self) -> np.ndarray:
        return np.unique(self.compute)


def _solve(points: Points, alpha: float) -> tuple[float, float, float]:
    """(a, b, sum of squared residuals) of the least-squares line y = a - b x, x = C^-alpha, with b >= 0 and
    a <= CEILING."""
    x, y = points.compute ** (-alpha), points.accuracy
    if np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        a, b = float(intercept), float(-slope)
    else:
        a, b = float(y.mean()), 0.0
    if b < 0:  # accuracy falling with compute is noise around a flat line, not a trend to extrapolate
        a, b = float(y.mean()), 0.0
    if a > CEILING:  # the constrained optimum has its ceiling on the bound: b by least squares for a = CEILING
        a = CEILING
        b = max(0.0, float(x @ (a - y) / (x @ x)))
    resid = y - (a - b * x)
    return a, b, float(resid @ resid)


def _best_alpha(candidates: Sequence[Points]) -> float:
    """The exponent minimising the summed squared residuals of every candidate's own (a, b)."""

    def sse(log_alpha: float) -> float:
        return sum(_solve(p, float(np.exp(log_alpha)))[2] for p in candidates)

    lo, hi = np.log(ALPHA_RANGE[0]), np.log(ALPHA_RANGE[1])
    grid = np.linspace(lo, hi, 41)  # a coarse scan first: the residual can have several local minima in alpha
    k = int(np.argmin([sse(g) for g in grid]))
    bounds = (grid[max(0, k - 1)], grid[min(len(grid) - 1, k + 1)])
    x = _golden_section(sse, *bounds)
    return float(np.exp(x if sse(x) <= sse(grid[k]) else grid[k]))


def _golden_section(f, lo: float, hi: float, tol: float = 1e-7) -> float:
    """The minimum of a function unimodal on [lo, hi] (golden-section search: numpy alone, no scipy at run time)."""
    inv = (np.sqrt(5.0) - 1) / 2
    c, d = hi - inv * (hi - lo), lo + inv * (hi - lo)
    fc, fd = f(c), f(d)
    while hi - lo > tol:
        if fc <= fd:
            hi, d, fd = d, c, fc
            c = hi - inv * (hi - lo)
            fc = f(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + inv * (hi - lo)
            fd = f(d)
    return (lo + hi) / 2


def fit_curve(points: Points, alpha: float | None = None) -> Curve:
    """One candidate's curve; ``alpha`` fixed (a shared exponent) or fitted. Two levels at least."""
    if len(points.levels) < 2:
        raise ThresherError("a compute curve needs pilots at two compute levels at least")
    alpha = _best_alpha([points]) if alpha is None else float(alpha)
    a, b, sse = _solve(points, alpha)
    return Curve(a, b, alpha, float(np.sqrt(sse / len(points.compute))))


def shares_exponent(candidates: Mapping[str, Points]) -> bool:
    """Whether the candidates' curves share one exponent: when some candidate has fewer than four compute levels,
    too few to pin its own exponent down."""
    return min(len(p.levels) for p in candidates.values()) < 4


def fit_curves(candidates: Mapping[str, Points], *, shared: bool | None = None) -> dict[str, Curve]:
    """Every candidate's curve. ``shared``: one exponent for all (default: when some candidate has fewer than four
    compute levels, too few to pin its own exponent down)."""
    if not candidates:
        raise ThresherError("no pilots to fit")
    if shared is None:
        shared = shares_exponent(candidates)
    alpha = _best_alpha(list(candidates.values())) if shared else None
    return {name: fit_curve(p, alpha) for name, p in candidates.items()}


@dataclass(frozen=True)
class Prediction:
    """The predicted accuracy at a budget, its interval, and what the interval is made of."""

    compute: float
    mean: float
    low: float
    high: float
    seed_halfwidth: float  # from the bootstrap over the pilots' seeds
    holdout_error: float  # |prediction - measurement| at the largest level, fitted without it
    holdout_steps: float = 1.0  # the level-ratio steps from the largest pilot to ``compute`` it is scaled by

    @property
    def degenerate(self) -> bool:
        return not self.high > self.low


def predict(
    points: Points,
    compute: float,
    *,
    alpha: float | None = None,
    rounds: int = 500,
    level: float = 0.9,
    seed: int = 0,
) -> Prediction:
    """acc at ``compute`` with an interval: the ``level`` bootstrap interval over seeds (pilots resampled with
    replacement within each compute level, the curve refitted each time; ``alpha`` fixed when shared), widened on both
    sides by the leave-the-largest-level-out error extrapolated to ``compute`` (0 with only two levels: nothing to hold
    out). That error is what one step of the pilots' level ratio past the data costs; a prediction k such steps past
    the largest pilot is widened by k times it (at least once): a wrong trend drifts further the further it is
    followed, and the plan's recommendation is typically tens of times the largest pilot's compute."""
    curve = fit_curve(points, alpha)
    mean = float(curve.predict(compute))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(points.compute == c) for c in points.levels]
    draws = []
    for _ in range(rounds):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        draws.append(fit_curve(Points(points.compute[idx], points.accuracy[idx]), alpha).predict(compute))
    lo_q, hi_q = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    half = float(max(mean - lo_q, hi_q - mean, 0.0))
    holdout, steps = 0.0, 1.0
    if len(points.levels) >= 3:
        top, below = points.levels[-1], points.levels[-2]
        keep = points.compute < top
        seen = fit_curve(Points(points.compute[keep], points.accuracy[keep]), alpha)
        holdout = abs(float(seen.predict(top)) - float(points.accuracy[~keep].mean()))
        steps = max(1.0, float(np.log(compute / top) / np.log(top / below)))
    wide = holdout * steps
    low, high = max(0.0, mean - half - wide), min(CEILING, mean + half + wide)  # the metric's own range bounds it
    return Prediction(compute, mean, low, high, half, holdout, steps)
