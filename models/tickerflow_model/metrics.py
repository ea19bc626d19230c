"""Forecast metrics and baseline forecasts in price units. Plain numpy: arrays in, floats out."""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("rmse", "mae", "mape", "smape", "mase", "directional_accuracy")
SEASON = 5  # business days in a week: "same day last week"


def rmse(forecast: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(forecast - actual))))


def mae(forecast: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(forecast - actual)))


def mape(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    return float(100.0 * np.mean(np.abs((forecast - actual) / actual)))


def smape(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Symmetric MAPE in percent: mean of 2|f - a| / (|f| + |a|); a pair of zeros counts as no error."""
    denom = np.abs(forecast) + np.abs(actual)
    ratio = np.divide(2.0 * np.abs(forecast - actual), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100.0 * np.mean(ratio))


def mase(forecast: np.ndarray, actual: np.ndarray, scale: np.ndarray) -> float:
    """Mean absolute scaled error: each error divided by its ticker's in-sample naive MAE.

    `scale` is per forecast (broadcast from per ticker), so tickers with different price levels
    weigh the same; 1.0 means "as bad as the one-step naive forecast was in the training period".
    """
    return float(np.mean(np.abs(forecast - actual) / scale))


def directional_accuracy(forecast: np.ndarray, actual: np.ndarray, base: np.ndarray) -> float:
    """Share of forecasts whose move from the last seen price has the sign of the actual move.

    A forecast of no move (the naive one) only counts as right on days the price did not move.
    """
    return float(np.mean(np.sign(forecast - base) == np.sign(actual - base)))


def forecast_metrics(
    forecast: np.ndarray, actual: np.ndarray, base: np.ndarray, mase_scale: np.ndarray | float = np.nan
) -> dict[str, float]:
    """All of METRIC_NAMES for one set of forecasts; MASE is NaN when no scale is given."""
    forecast, actual, base = (np.asarray(a, dtype=np.float64) for a in (forecast, actual, base))
    return {
        "rmse": rmse(forecast, actual),
        "mae": mae(forecast, actual),
        "mape": mape(forecast, actual),
        "smape": smape(forecast, actual),
        "mase": mase(forecast, actual, np.asarray(mase_scale, dtype=np.float64)),
        "directional_accuracy": directional_accuracy(forecast, actual, base),
    }


def skill(model_rmse: float, naive_rmse: float) -> float:
    """1 - RMSE_model / RMSE_naive: > 0 beats "tomorrow = today", < 0 loses to it."""
    return float(1.0 - model_rmse / naive_rmse) if naive_rmse > 0 else 0.0


def naive_scale(train_prices: np.ndarray) -> float:
    """In-sample one-step naive MAE over a training period: the MASE denominator."""
    diffs = np.abs(np.diff(np.asarray(train_prices, dtype=np.float64)))
    if len(diffs) == 0 or not np.any(diffs > 0):
        raise ValueError(f"MASE needs a training period with at least one price change, got {len(diffs) + 1} prices")
    return float(np.mean(diffs))


def seasonal_naive_forecast(history: np.ndarray, base_index: np.ndarray, horizon: np.ndarray, season: int = SEASON) -> np.ndarray:
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
