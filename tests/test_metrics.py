"""Metrics and baselines against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickerflow_model.metrics import (
    directional_accuracy,
    drift_forecast,
    forecast_metrics,
    mae,
    mape,
    mase,
    naive_scale,
    rmse,
    seasonal_naive_forecast,
    skill,
    smape,
)

FORECAST = np.array([102.0, 98.0, 100.0, 105.0])
ACTUAL = np.array([100.0, 100.0, 100.0, 100.0])
BASE = np.array([101.0, 99.0, 101.0, 100.0])
# errors: +2, -2, 0, +5


def test_rmse_mae_mape_by_hand():
    assert rmse(FORECAST, ACTUAL) == pytest.approx(math.sqrt((4 + 4 + 0 + 25) / 4))
    assert mae(FORECAST, ACTUAL) == pytest.approx((2 + 2 + 0 + 5) / 4)
    assert mape(FORECAST, ACTUAL) == pytest.approx(100 * (0.02 + 0.02 + 0 + 0.05) / 4)


def test_smape_by_hand_and_zero_pair():
    expected = 100 * (4 / 202 + 4 / 198 + 0 + 10 / 205) / 4
    assert smape(FORECAST, ACTUAL) == pytest.approx(expected)
    # 0 vs 0 is a perfect forecast, not a division by zero
    assert smape(np.array([0.0, 1.0]), np.array([0.0, 3.0])) == pytest.approx(100 * (0 + 4 / 4) / 2)


def test_mase_divides_each_error_by_its_scale():
    # ticker A (first two) has in-sample naive MAE 2, ticker B (last two) has 0.5
    scale = np.array([2.0, 2.0, 0.5, 0.5])
    assert mase(FORECAST, ACTUAL, scale) == pytest.approx((1 + 1 + 0 + 10) / 4)


def test_naive_scale_is_mean_absolute_one_step_change():
    assert naive_scale(np.array([10.0, 12.0, 11.0, 11.0, 15.0])) == pytest.approx((2 + 1 + 0 + 4) / 4)
    with pytest.raises(ValueError, match="at least one price change"):
        naive_scale(np.array([5.0, 5.0, 5.0]))


def test_directional_accuracy_by_hand():
    # predicted moves from base: +1, -1, -1, +5 ; actual moves: -1, +1, -1, 0
    assert directional_accuracy(FORECAST, ACTUAL, BASE) == pytest.approx(1 / 4)
    # the naive forecast is right only where the price did not move
    assert directional_accuracy(BASE, ACTUAL, BASE) == pytest.approx(1 / 4)


def test_forecast_metrics_has_every_key_and_skill():
    m = forecast_metrics(FORECAST, ACTUAL, BASE, mase_scale=np.full(4, 2.0))
    assert set(m) == {"rmse", "mae", "mape", "smape", "mase", "directional_accuracy"}
    assert m["mase"] == pytest.approx(9 / 4 / 2)
    assert skill(1.0, 2.0) == pytest.approx(0.5)
    assert skill(3.0, 2.0) == pytest.approx(-0.5)
    assert skill(1.0, 0.0) == 0.0


def test_seasonal_naive_is_same_weekday_of_the_last_seen_week():
    p = np.arange(100.0, 120.0)  # p[i] = 100 + i
    base = np.array([9, 9, 9, 9, 9, 9, 3])
    h = np.array([1, 2, 5, 6, 10, 11, 1])
    out = seasonal_naive_forecast(p, base, h)
    # t+h-5*ceil(h/5): 5, 6, 9, 5, 9, 5 ; base 3 has no week behind it
    np.testing.assert_allclose(out[:6], [105, 106, 109, 105, 109, 105])
    assert np.isnan(out[6])


def test_drift_extrapolates_the_average_past_change():
    p = np.array([10.0, 11.0, 13.0, 16.0])  # from p0=10 to p3=16 in 3 steps: +2 per step
    np.testing.assert_allclose(drift_forecast(p, np.array([3, 3]), np.array([1, 2])), [18.0, 20.0])
    # only history up to the base day counts: from p0=10 to p1=11 is +1 per step
    np.testing.assert_allclose(drift_forecast(p, np.array([1]), np.array([1])), [12.0])
