"""Metrics and baselines against values computed by hand."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tickerflow_model.metrics import (
    METRIC_NAMES,
    drift_forecast,
    naive_scale,
    point_terms,
    seasonal_naive_forecast,
)

FORECAST = np.array([102.0, 98.0, 100.0, 105.0])
ACTUAL = np.array([100.0, 100.0, 100.0, 100.0])
BASE = np.array([101.0, 99.0, 101.0, 100.0])
# errors: +2, -2, 0, +5


def point_means(forecast=FORECAST, actual=ACTUAL, base=BASE, scale=np.nan) -> dict[str, float]:
    """The point metrics as scoring builds them: the mean of each term, RMSE the root of the mean of `se`."""
    terms = {k: float(np.mean(v)) for k, v in point_terms(forecast, actual, base, scale).items()}
    return {"rmse": math.sqrt(terms.pop("se")), **terms}


def test_rmse_mae_mape_by_hand():
    m = point_means()
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 4 + 0 + 25) / 4))
    assert m["mae"] == pytest.approx((2 + 2 + 0 + 5) / 4)
    assert m["mape"] == pytest.approx(100 * (0.02 + 0.02 + 0 + 0.05) / 4)
    assert set(m) == set(METRIC_NAMES)


def test_smape_by_hand_and_zero_pair():
    expected = 100 * (4 / 202 + 4 / 198 + 0 + 10 / 205) / 4
    assert point_means()["smape"] == pytest.approx(expected)
    # 0 vs 0 is a perfect forecast, not a division by zero
    pair = point_means(np.array([0.0, 1.0]), np.array([0.0, 3.0]), np.array([1.0, 1.0]))
    assert pair["smape"] == pytest.approx(100 * (0 + 4 / 4) / 2)


def test_mase_divides_each_error_by_its_scale():
    # ticker A (first two) has in-sample naive MAE 2, ticker B (last two) has 0.5
    scale = np.array([2.0, 2.0, 0.5, 0.5])
    assert point_means(scale=scale)["mase"] == pytest.approx((1 + 1 + 0 + 10) / 4)


def test_naive_scale_is_mean_absolute_one_step_change():
    assert naive_scale(np.array([10.0, 12.0, 11.0, 11.0, 15.0])) == pytest.approx((2 + 1 + 0 + 4) / 4)
    with pytest.raises(ValueError, match="at least one price change"):
        naive_scale(np.array([5.0, 5.0, 5.0]))


def test_directional_accuracy_by_hand():
    # predicted moves from base: +1, -1, -1, +5 ; actual moves: -1, +1, -1, 0
    assert point_means()["directional_accuracy"] == pytest.approx(1 / 4)
    # the naive forecast is right only where the price did not move
    assert point_means(forecast=BASE)["directional_accuracy"] == pytest.approx(1 / 4)


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


# ---- distribution scores ----------------------------------------------------------------------------
from tickerflow_model.metrics import distribution_metrics, distribution_terms, winkler  # noqa: E402
from tickerflow_model.quantiles import interval_index, pinball, require_scored_intervals  # noqa: E402

LEVELS = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


def test_pinball_by_hand():
    # y = 1: above q = 0 at tau 0.1 costs 0.1 * 1; below q = 3 at tau 0.9 costs 0.1 * 2
    assert pinball(np.array([0.0, 3.0]), np.array(1.0), (0.1, 0.9)) == pytest.approx((0.1 * 1 + 0.1 * 2) / 2)
    # the median's loss is half the absolute error
    assert pinball(np.array([[2.0]]), np.array([5.0]), (0.5,))[0] == pytest.approx(1.5)
    # per forecast: (n, Q) -> (n,)
    q = np.array([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(
        pinball(q, np.array([0.0, 2.0]), (0.25, 0.5, 0.75)),
        [(0.25 * 1 + 0 + 0.25 * 1) / 3, (0.25 * 3 + 0.5 * 2 + 0.75 * 1) / 3],
    )


def test_winkler_is_width_plus_two_over_alpha_times_the_miss():
    lower, upper = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    y = np.array([0.0, 1.5, -3.0])
    # alpha = 0.2 -> 2 / alpha = 10
    np.testing.assert_allclose(winkler(lower, upper, y, 0.8), [2.0, 2.0 + 10 * 0.5, 2.0 + 10 * 2.0])


def test_coverage_width_and_interval_scores_by_hand():
    q = np.array([[-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]] * 4)  # q10 = -2, q90 = 2; q05 = -3, q95 = 3
    y = np.array([0.0, 2.5, -4.0, 2.0])
    m = distribution_metrics(q, y, LEVELS)
    assert m["coverage_80"] == pytest.approx(2 / 4)  # 0 and 2 (the bound counts as inside)
    assert m["coverage_90"] == pytest.approx(3 / 4)  # -4 is outside q05
    assert m["width_80"] == pytest.approx(4.0) and m["width_90"] == pytest.approx(6.0)
    assert m["winkler_80"] == pytest.approx(4.0 + 10 * (0.5 + 2.0) / 4)
    assert m["winkler_90"] == pytest.approx(6.0 + 20 * 1.0 / 4)
    assert m["pinball"] == pytest.approx(float(np.mean(pinball(q, y, LEVELS))))
    assert set(distribution_terms(q, y, LEVELS)) == set(m)


def test_interval_needs_its_levels():
    assert interval_index(LEVELS, 0.8) == (1, 5)
    with pytest.raises(ValueError, match="90% interval needs the levels 0.05 and 0.95"):
        interval_index((0.1, 0.5, 0.9), 0.9)


@pytest.mark.parametrize(
    "levels, missing",
    [
        ((0.1, 0.5, 0.9), "0.05, 0.95"),
        ((0.05, 0.25, 0.5, 0.75, 0.95), "0.1, 0.9"),
        ((0.25, 0.5, 0.75), "0.05, 0.1, 0.9, 0.95"),
    ],
)
def test_levels_without_a_scored_interval_are_refused_naming_them(levels, missing):
    with pytest.raises(ValueError, match=f"must include {missing}.*got {re.escape(str(list(levels)))}"):
        require_scored_intervals(levels)
    assert require_scored_intervals(LEVELS) == LEVELS
    assert require_scored_intervals((0.025, 0.05, 0.1, 0.5, 0.9, 0.95, 0.975))  # more levels are fine


def test_the_true_quantiles_score_best():
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 1.0, 20_000)
    z = np.array([-1.6449, -1.2816, -0.6745, 0.0, 0.6745, 1.2816, 1.6449])
    true = distribution_metrics(np.tile(z, (len(y), 1)), y, LEVELS)
    wide = distribution_metrics(np.tile(2 * z, (len(y), 1)), y, LEVELS)
    assert true["pinball"] < wide["pinball"] and true["winkler_80"] < wide["winkler_80"]
    assert abs(true["coverage_80"] - 0.8) < 0.01 and wide["coverage_80"] > 0.95
