"""Adaptive conformal inference, scale form: intervals follow the realized miss rate of the outcomes known."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from tickerflow_model.calibration import adaptive_scales, apply_scales
from tickerflow_model.quantiles import central_pairs

LEVELS = (0.05, 0.1, 0.5, 0.9, 0.95)


def normal_quantiles(n: int, sd: float) -> np.ndarray:
    return np.tile(norm.ppf(LEVELS) * sd, (n, 1))


def coverage(q: np.ndarray, y: np.ndarray) -> list[float]:
    return [float(np.mean((y >= q[:, lo]) & (y <= q[:, hi]))) for lo, hi, _ in central_pairs(LEVELS)]


def test_intervals_too_narrow_for_a_new_regime_widen_until_they_cover_as_nominal():
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 2.0, 4000)  # the regime is twice as volatile as the model thinks
    q = normal_quantiles(len(y), 1.0)
    assert coverage(q, y) < [0.70, 0.55]  # 90% and 80% intervals cover about 59% and 44%

    scales = adaptive_scales(q, y, LEVELS, gamma=0.05)
    adjusted = apply_scales(q, scales, LEVELS)

    later = slice(1000, None)  # once the factors have followed the regime
    assert np.allclose(coverage(adjusted[later], y[later]), [0.9, 0.8], atol=0.02)
    assert np.median(scales[later, 0]) > 1.7  # about the factor of 2 the regime needs
    assert (np.diff(adjusted, axis=1) >= 0).all()  # still monotone in the level


def test_intervals_that_never_miss_narrow_and_the_median_never_moves():
    rng = np.random.default_rng(1)
    y = rng.normal(0.0, 0.5, 3000)
    q = normal_quantiles(len(y), 1.0) + 0.01
    scales = adaptive_scales(q, y, LEVELS, gamma=0.05)
    adjusted = apply_scales(q, scales, LEVELS)
    assert (np.median(scales[1000:], axis=0) < 0.7).all()
    np.testing.assert_array_equal(adjusted[:, 2], q[:, 2])


def test_a_factor_uses_only_the_outcomes_known_when_the_forecast_is_made():
    """A k-step forecast's outcome arrives k forecasts later: the first k factors are 1, and changing an
    outcome changes no factor before the one k places on."""
    y = np.zeros(50)  # every outcome inside every interval: the factors shrink
    q = normal_quantiles(len(y), 1.0)
    lag = 5
    scales = adaptive_scales(q, y, LEVELS, gamma=0.1, lag=lag)
    assert (scales[:lag] == 1.0).all() and (scales[lag] < 1.0).all()
    changed = y.copy()
    changed[20] = 100.0  # one miss of every interval
    other = adaptive_scales(q, changed, LEVELS, gamma=0.1, lag=lag)
    np.testing.assert_array_equal(other[: 20 + lag], scales[: 20 + lag])
    assert not np.array_equal(other[20 + lag], scales[20 + lag])


def test_the_live_loops_factor_is_the_recursions_state_after_the_served_forecasts_outcomes():
    """The live loop stores what it served (intervals already stretched) and sums their misses: the factor
    it gives the next forecast is the one `adaptive_scales` reaches running over the raw forecasts."""
    import pandas as pd

    from tickerflow_model.live import adaptive_log_factors
    from tickerflow_model.quantiles import quantile_columns

    levels = (0.1, 0.5, 0.9)
    rng = np.random.default_rng(3)
    n = 300
    y = rng.normal(0.0, 1.5, n + 1)
    raw = np.tile(norm.ppf(levels), (n + 1, 1))
    scales = adaptive_scales(raw, y, levels, gamma=0.05)  # scales[n]: the factor of forecast n+1
    served = apply_scales(raw[:n], scales[:n], levels)
    rows = pd.DataFrame(100.0 * np.exp(served), columns=quantile_columns(levels))
    rows = rows.assign(ticker="AAA", horizon=1, realized=100.0 * np.exp(y[:n]))

    factors = adaptive_log_factors(rows, levels, gamma=0.05)

    assert factors[["ticker", "horizon"]].values.tolist() == [["AAA", 1]]
    np.testing.assert_allclose(np.exp(factors["p0"].iloc[0]), scales[n, 0], rtol=1e-12)
    assert scales[n, 0] > 1.3  # a regime half again as volatile: the interval has widened
