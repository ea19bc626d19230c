"""Forecast metrics and baseline forecasts in price units. Plain numpy: arrays in, arrays out.

Each metric is the mean of a per-forecast term (`point_terms`, `distribution_terms`), so `scoring` gets any
group's figure (a ticker, a horizon step, the whole split) as one grouped mean; RMSE is the root of the mean
of `se`, and skill is 1 - RMSE / RMSE of naive in the same group (`scoring`).
"""

from __future__ import annotations

import numpy as np

from .quantiles import INTERVALS, interval_index, interval_tag, pinball, scored_intervals

METRIC_NAMES = ("rmse", "mae", "mape", "smape", "mase", "directional_accuracy")
SEASON = 5  # business days in a week: "same day last week"


def naive_scale(train_prices: np.ndarray) -> float:
    """In-sample one-step naive MAE over a training period: the MASE denominator."""
    diffs = np.abs(np.diff(np.asarray(train_prices, dtype=np.float64)))
    if len(diffs) == 0 or not np.any(diffs > 0):
        raise ValueError(f"MASE needs a training period with at least one price change, got {len(diffs) + 1} prices")
    return float(np.mean(diffs))


def seasonal_naive_forecast(
    history: np.ndarray, base_index: np.ndarray, horizon: np.ndarray, season: int = SEASON
) -> np.ndarray:
    """Price on the same weekday of the latest week already seen: p[t + h - season * ceil(h / season)].

    `history` is one ticker's price series, `base_index` the index of the last seen day t and
    `horizon` the step h (both per forecast). A base day without `season` days behind it gets NaN.
    """
    base_index, horizon = np.asarray(base_index), np.asarray(horizon)
    source = base_index + horizon - season * np.ceil(horizon / season).astype(np.int64)
    out = np.full(source.shape, np.nan)
    ok = source >= 0
    out[ok] = np.asarray(history, dtype=np.float64)[source[ok]]
    return out


def drift_forecast(history: np.ndarray, base_index: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """The random walk with drift: p[t] + h * (p[t] - p[0]) / t, the average past change extrapolated."""
    history = np.asarray(history, dtype=np.float64)
    base_index, horizon = np.asarray(base_index), np.asarray(horizon)
    last = history[base_index]
    slope = np.divide(last - history[0], base_index, out=np.zeros_like(last), where=base_index > 0)
    return last + horizon * slope


# ---- distribution scores -------------------------------------------------------------------------
# Units: every distribution score is computed on cumulative log returns in percent,
# y = 100 * log(actual / base_price), and quantiles q likewise. A log return in percent is close to the
# percent change of the price for daily moves, so a ticker at $5 and one at $500 weigh the same, and
# a width of 3.1 reads as "the interval spans about 3.1% of the price".
DISTRIBUTION_NAMES = (
    "pinball",
    *(f"coverage_{interval_tag(c)}" for c in INTERVALS),
    *(f"width_{interval_tag(c)}" for c in INTERVALS),
    *(f"winkler_{interval_tag(c)}" for c in INTERVALS),
)

# ---- which names are reported where: one list each, used by evaluation, registration and the CLI ------
# every metric a forecaster can have, in report order (skill: 1 - RMSE / RMSE of naive in the same group)
METRIC_KEYS = METRIC_NAMES + ("skill",) + DISTRIBUTION_NAMES
# the headline figures: each forecaster's on a registered version's tags (`test_<forecaster>_<metric>`)
HEADLINE_METRICS = ("rmse", "skill", "pinball", "coverage_80", "coverage_90", "coverage_98")
# the console's table: the point scores, then the spread's (the wider intervals' widths and Winkler scores are
# in the evaluation's tables)
TABLE_METRICS = (
    METRIC_NAMES
    + ("skill", "pinball")
    + tuple(f"coverage_{interval_tag(c)}" for c in INTERVALS)
    + (
        "width_80",
        "width_90",
        "winkler_80",
        "winkler_90",
    )
)
# per horizon step, the model's figures that get a metric key of their own (the full table is an artifact)
HORIZON_METRICS = HEADLINE_METRICS + ("width_80", "width_90")


def winkler(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, coverage: float) -> np.ndarray:
    """Interval (Winkler) score of each central interval: its width plus 2/alpha times any miss.

    With alpha = 1 - coverage: (u - l) + 2/alpha * (l - y) if y < l, + 2/alpha * (y - u) if y > u
    (Winkler, 1972; Gneiting & Raftery, 2007, eq. 43). Lower is better; a proper score for the
    alpha/2 and 1 - alpha/2 quantiles.
    """
    alpha = 1.0 - coverage
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    return (upper - lower) + (2.0 / alpha) * (below + above)


def distribution_terms(quantiles: np.ndarray, actual: np.ndarray, levels) -> dict[str, np.ndarray]:
    """Per-forecast terms whose means are the DISTRIBUTION_NAMES scores: (n, Q), (n,) -> name -> (n,).

    Every score is a plain mean of these terms, so a group's score (a ticker, a horizon step, the
    whole split) is one grouped mean over rows, for any number of groups at once.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64)
    out = {"pinball": pinball(q, y, levels)}
    for coverage in scored_intervals(levels):
        i, j = interval_index(levels, coverage)
        lower, upper = q[..., i], q[..., j]
        tag = interval_tag(coverage)
        out[f"coverage_{tag}"] = ((y >= lower) & (y <= upper)).astype(np.float64)
        out[f"width_{tag}"] = upper - lower
        out[f"winkler_{tag}"] = winkler(lower, upper, y, coverage)
    return out


def distribution_metrics(quantiles: np.ndarray, actual: np.ndarray, levels) -> dict[str, float]:
    """All of DISTRIBUTION_NAMES for one set of forecasts (quantiles and actuals in the same units)."""
    return {k: float(np.mean(v)) for k, v in distribution_terms(quantiles, actual, levels).items()}


def point_terms(forecast: np.ndarray, actual: np.ndarray, base: np.ndarray, mase_scale) -> dict[str, np.ndarray]:
    """Per-forecast terms behind METRIC_NAMES (rmse is the root of the mean of `se`)."""
    forecast, actual, base = (np.asarray(a, dtype=np.float64) for a in (forecast, actual, base))
    err = forecast - actual
    denom = np.abs(forecast) + np.abs(actual)
    return {
        "se": np.square(err),
        "mae": np.abs(err),
        "mape": 100.0 * np.abs(err / actual),
        "smape": 100.0 * np.divide(2.0 * np.abs(err), denom, out=np.zeros_like(denom), where=denom > 0),
        "mase": np.abs(err) / np.asarray(mase_scale, dtype=np.float64),
        "directional_accuracy": (np.sign(forecast - base) == np.sign(actual - base)).astype(np.float64),
    }
