"""Forecast metrics in price units. Plain numpy: arrays in, floats out."""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("rmse", "mae", "mape", "directional_accuracy")


def rmse(forecast: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(forecast - actual))))


def mae(forecast: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(forecast - actual)))


def mape(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    return float(100.0 * np.mean(np.abs((forecast - actual) / actual)))


def directional_accuracy(forecast: np.ndarray, actual: np.ndarray, base: np.ndarray) -> float:
    """Share of forecasts whose move from the last seen price has the sign of the actual move.

    A forecast of no move (the naive one) only counts as right on days the price did not move.
    """
    return float(np.mean(np.sign(forecast - base) == np.sign(actual - base)))


def forecast_metrics(forecast: np.ndarray, actual: np.ndarray, base: np.ndarray) -> dict[str, float]:
    forecast, actual, base = (np.asarray(a, dtype=np.float64) for a in (forecast, actual, base))
    return {
        "rmse": rmse(forecast, actual),
        "mae": mae(forecast, actual),
        "mape": mape(forecast, actual),
        "directional_accuracy": directional_accuracy(forecast, actual, base),
    }


def skill(model_rmse: float, naive_rmse: float) -> float:
    """1 - RMSE_model / RMSE_naive: > 0 beats "tomorrow = today", < 0 loses to it."""
    return float(1.0 - model_rmse / naive_rmse) if naive_rmse > 0 else 0.0
