"""The planner's accuracy-against-compute model (issue 19): acc(C) = a - b C^(-alpha) on synthetic curves whose
parameters are known."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.errors import ThresherError
from thresher.plan.curves import Curve, Points, fit_curve, fit_curves, predict

LEVELS = np.array([0.05, 0.1, 0.2, 0.4, 0.8])


def synthetic(a=0.8, b=0.2, alpha=0.5, levels=LEVELS, seeds=3, noise=0.0, rng_seed=0) -> Points:
    rng = np.random.default_rng(rng_seed)
    c = np.repeat(levels, seeds)
    return Points.of(c, a - b * c ** (-alpha) + rng.normal(0, noise, len(c)))


def test_an_exact_curve_is_recovered():
    curve = fit_curve(synthetic(noise=0.0))
    assert curve.a == pytest.approx(0.8, abs=1e-6) and curve.b == pytest.approx(0.2, abs=1e-6)
    assert curve.alpha == pytest.approx(0.5, abs=1e-3) and curve.rmse < 1e-6
    assert curve.predict(2.0) == pytest.approx(0.8 - 0.2 * 2.0**-0.5, abs=1e-6)


def test_a_noisy_curve_is_recovered_near_its_parameters_and_extrapolates():
    curve = fit_curve(synthetic(noise=0.003, seeds=4))
    assert curve.a == pytest.approx(0.8, abs=0.03) and curve.alpha == pytest.approx(0.5, abs=0.15)
    assert curve.predict(1.6) == pytest.approx(0.8 - 0.2 * 1.6**-0.5, abs=0.01)


def test_a_ceiling_above_one_is_clipped_to_the_best_curve_that_stays_below_it():
    """Pilots still rising log-linearly: unconstrained, a slow exponent fits them with a ceiling far above 1 (top-1
    cannot pass 1); the fit puts the ceiling on 1 and is the least-squares b for it (brute force over b agrees)."""
    c = np.repeat([0.01, 0.02, 0.04, 0.08], 2)
    pts = Points.of(c, 0.45 + 0.06 * np.log2(c / 0.01))
    curve = fit_curve(pts, alpha=0.02)
    assert curve.a == 1.0
    x = c**-0.02
    grid = np.linspace(0, 2, 200001)
    best = grid[np.argmin(((pts.accuracy[None] - (1 - grid[:, None] * x[None])) ** 2).sum(1))]
    assert curve.b == pytest.approx(best, abs=2e-5)
    free = fit_curve(pts)
    assert free.a <= 1.0 and free.predict(1e6) <= 1.0


def test_a_shared_exponent_is_fitted_across_candidates_with_their_own_ceilings():
    few = np.array([0.1, 0.3, 0.9])  # three levels: too few for each its own exponent
    cands = {"small": synthetic(a=0.6, b=0.05, levels=few), "whole": synthetic(a=0.9, b=0.2, levels=few)}
    curves = fit_curves(cands)  # shared by default below four levels
    assert curves["small"].alpha == curves["whole"].alpha == pytest.approx(0.5, abs=1e-3)
    assert curves["small"].a == pytest.approx(0.6, abs=1e-5) and curves["whole"].a == pytest.approx(0.9, abs=1e-5)
    own = fit_curves({"x": synthetic(alpha=0.3), "y": synthetic(alpha=1.0)}, shared=False)
    assert own["x"].alpha == pytest.approx(0.3, abs=1e-3) and own["y"].alpha == pytest.approx(1.0, abs=1e-3)


def test_accuracy_falling_with_compute_is_a_flat_line_not_a_trend():
    pts = Points.of([0.1, 0.2, 0.4, 0.8], [0.52, 0.51, 0.50, 0.49])
    curve = fit_curve(pts, alpha=0.5)
    assert curve.b == 0 and curve.a == pytest.approx(0.505) and curve.predict(10.0) == pytest.approx(0.505)


def test_the_interval_covers_the_truth_and_widens_with_seed_noise():
    truth = 0.8 - 0.2 * 1.6**-0.5
    quiet = predict(synthetic(noise=0.002, seeds=4, rng_seed=1), 1.6, rounds=200)
    noisy = predict(synthetic(noise=0.02, seeds=4, rng_seed=1), 1.6, rounds=200)
    assert quiet.low <= truth <= quiet.high and noisy.low <= truth <= noisy.high
    assert not quiet.degenerate and noisy.seed_halfwidth > 3 * quiet.seed_halfwidth
    assert quiet.holdout_error >= 0 and quiet.high - quiet.low >= 2 * quiet.seed_halfwidth


def test_a_curve_that_bends_past_the_pilots_is_caught_by_the_held_out_level():
    """Pilots from a curve that saturates past 0.4 C (a - b C^-alpha is the wrong shape there): the curve fitted
    without the largest level misses it, and the interval is widened by that miss."""
    c = np.repeat(LEVELS, 3)
    acc = np.minimum(0.5 + 0.3 * c, 0.62)  # linear, then flat from 0.4 C
    pred = predict(Points.of(c, acc), 1.6, rounds=50)
    assert pred.holdout_error > 0.01 and pred.high - pred.low >= 2 * pred.holdout_error - 1e-12
    # 1.6 C is one level ratio (x2) past the largest pilot (0.8 C): the miss counts once; four ratios, four times
    assert pred.holdout_steps == pytest.approx(1.0)
    far = predict(Points.of(c, acc), 0.8 * 2**4, rounds=50)
    assert far.holdout_steps == pytest.approx(4.0) and far.holdout_error == pytest.approx(pred.holdout_error)
    assert far.high - far.low >= 2 * 4 * far.holdout_error - 1e-12


def test_bad_pilots_are_one_line_errors():
    with pytest.raises(ThresherError, match="two compute levels"):
        fit_curve(Points.of([0.1, 0.1], [0.5, 0.6]))
    with pytest.raises(ThresherError, match="one accuracy per compute level"):
        Points.of([0.1, 0.2], [0.5])
    with pytest.raises(ThresherError, match="positive"):
        Points.of([0.0, 0.2], [0.5, 0.6])
    with pytest.raises(ThresherError, match="positive"):
        Curve(0.8, 0.2, 0.5).predict(0.0)


def test_the_interval_stays_within_what_accuracy_can_be():
    """A wide interval near the ceiling is cut at 1 (and at 0 below): top-1 and AUROC cannot leave [0, 1]."""
    c = np.repeat([0.01, 0.02, 0.04, 0.08], 2)
    noisy = Points.of(c, np.clip(0.9 + 0.02 * np.log2(c / 0.01) + np.tile([-0.05, 0.05], 4), 0, 1))
    pred = predict(noisy, 100.0, rounds=50)
    assert pred.high <= 1.0 and pred.low >= 0.0 and pred.low < pred.mean <= pred.high
