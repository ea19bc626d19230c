"""Live metrics (core): forecasts joined with realized closes, rolling windows, degradation rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tickerflow_model.live import (
    Thresholds,
    breaches,
    join_realized,
    rolling_live_metrics,
    rule_state,
    score_stored,
    thresholds_from_test,
    trailing_streak,
)
from tickerflow_model.quantiles import LEGACY_LEVELS, levels_text


def forecasts(days: int, quantiles: bool = False, version: str = "3") -> pd.DataFrame:
    base = pd.bdate_range("2024-01-01", periods=days)
    frame = pd.DataFrame(
        {
            "ticker": "AAA",
            "base_date": base,
            "date": base + pd.offsets.BDay(1),
            "horizon": 1,
            "base_close": 100.0,
            "forecast_close": 101.0,
            "model_version": version,
        }
    )
    if quantiles:
        for col, q in zip(("q05", "q10", "q25", "q50", "q75", "q90", "q95"), (96, 97, 99, 101, 103, 105, 106)):
            frame[col] = float(q)
    return frame


def closes(values, start="2024-01-02") -> pd.DataFrame:
    return pd.DataFrame({"ticker": "AAA", "date": pd.bdate_range(start, periods=len(values)), "close": values})


def test_only_forecasts_whose_close_is_known_are_scored_and_metrics_match_the_formulas():
    realized = [102.0, 99.0, 104.0]  # the 4th and 5th forecasts' closes have not arrived
    scored = join_realized(forecasts(5), closes(realized))
    assert scored["realized"].tolist() == realized

    m = rolling_live_metrics(scored, windows=(2,), min_days=2)
    assert m["day"].tolist() == list(pd.bdate_range("2024-01-03", periods=2))  # from the 2nd day on
    last = m.iloc[-1]  # the window of days 2 and 3: errors -2, +3 (model), -1, +4 (naive)
    assert last["live_rmse"] == pytest.approx(np.sqrt((4 + 9) / 2))
    assert last["live_mae"] == pytest.approx(2.5)
    assert last["live_skill"] == pytest.approx(1 - np.sqrt(13 / 2) / np.sqrt(17 / 2))
    assert (last["days"], last["n"]) == (2, 2)
    assert "live_pinball" not in m.columns  # point forecasts only: no quantile metrics


def test_quantile_metrics_when_the_forecasts_carry_quantiles():
    scored = join_realized(forecasts(2, quantiles=True), closes([104.0, 107.0]))
    m = rolling_live_metrics(scored, windows=(2,), min_days=2, levels=LEGACY_LEVELS).iloc[-1]
    assert m["live_coverage_80"] == pytest.approx(0.5)  # 104 in [97, 105]; 107 is not
    assert m["live_coverage_90"] == pytest.approx(0.5)  # 104 in [96, 106]; 107 is not
    tau = np.array([5, 10, 25, 50, 75, 90, 95]) / 100
    q = np.array([96, 97, 99, 101, 103, 105, 106.0])
    pinball = [np.mean(np.maximum(tau * (y - q), (tau - 1) * (y - q))) for y in (104.0, 107.0)]
    assert m["live_pinball"] == pytest.approx(np.mean(pinball))


def test_quantiles_are_scored_at_the_levels_given_not_at_levels_read_from_column_names():
    # nine levels: the 80% and 90% intervals are the 2nd/8th and 3rd/7th columns, not the first and last
    levels = (0.025, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.975)
    values = (90.0, 96, 97, 99, 101, 103, 105, 106, 120)
    frame = forecasts(2)
    for col, v in zip(("q025", "q05", "q10", "q25", "q50", "q75", "q90", "q95", "q975"), values):
        frame[col] = v
    scored = join_realized(frame, closes([104.0, 110.0]))
    m = rolling_live_metrics(scored, windows=(2,), min_days=2, levels=levels).iloc[-1]
    assert m["live_coverage_80"] == pytest.approx(0.5)  # 104 in [97, 105]; 110 is not
    assert m["live_coverage_90"] == pytest.approx(0.5)  # 104 in [96, 106]; 110 is not, though inside q025..q975
    tau, q = np.array(levels), np.array(values)
    expected = np.mean([np.mean(np.maximum(tau * (y - q), (tau - 1) * (y - q))) for y in (104.0, 110.0)])
    assert m["live_pinball"] == pytest.approx(expected)
    # without levels, the same frame is scored as point forecasts only
    assert "live_pinball" not in rolling_live_metrics(scored, windows=(2,), min_days=2).columns


def test_stored_forecasts_are_scored_at_the_levels_stored_with_them():
    stored = forecasts(2, quantiles=True).assign(model_name="m", price_column="close")
    narrow = stored.assign(quantile_levels=levels_text(LEGACY_LEVELS))
    metrics, _ = score_stored(narrow, closes([104.0, 107.0]), pd.Timestamp("2024-01-03"), windows=(2,), min_days=2)
    assert metrics["live_coverage_90"].iloc[-1] == pytest.approx(0.5)
    point = stored.assign(quantile_levels="")  # a point forecaster's rows: no quantile scores
    metrics, _ = score_stored(point, closes([104.0, 107.0]), pd.Timestamp("2024-01-03"), windows=(2,), min_days=2)
    assert "live_pinball" not in metrics.columns or metrics["live_pinball"].isna().all()


def test_each_model_version_is_scored_on_its_own_forecasts():
    both = pd.concat([forecasts(3, version="1"), forecasts(3, version="2").assign(forecast_close=100.0)])
    m = rolling_live_metrics(join_realized(both, closes([101.0, 101.0, 101.0])), windows=(3,), min_days=3)
    assert m.set_index("model_version")["live_rmse"].to_dict() == {"1": 0.0, "2": 1.0}


def test_a_breach_streak_counts_consecutive_days_at_the_end():
    metrics = pd.DataFrame({"live_skill": [0.1, -0.2, 0.0, -0.3, -0.4], "live_rmse": [1.0, 1.0, 3.0, 1.0, 1.0]})
    flagged = breaches(metrics, Thresholds(min_skill=-0.1, max_rmse=2.0))
    assert flagged["breached"].tolist() == [False, True, True, True, True]
    assert "live_rmse 3.0000 > 2.0000" in flagged["reasons"][2] and "live_skill" in flagged["reasons"][4]
    assert trailing_streak(flagged["breached"]) == 4
    assert trailing_streak(breaches(metrics, Thresholds(min_skill=-0.35))["breached"]) == 1
    assert trailing_streak(breaches(metrics, Thresholds())["breached"]) == 0


def test_rule_state_names_the_streak_its_first_day_and_the_last_figures():
    days = pd.bdate_range("2024-03-01", periods=5)
    metrics = pd.DataFrame(
        {"day": days, "live_skill": [0.1, -0.2, 0.0, -0.3, -0.4], "live_rmse": [1.0, 1.0, 3.0, 1.0, 1.0]}
    )
    state = rule_state(metrics.iloc[::-1], Thresholds(min_skill=-0.1, max_rmse=2.0))  # any row order
    assert state.streak == 4 and state.streak_start == days[1]
    assert state.latest == {"live_skill": -0.4, "live_rmse": 1.0, "day": "2024-03-07"}
    assert "live_skill -0.4000 < -0.1000" in state.reasons
    assert rule_state(metrics, Thresholds()).streak_start is None


def test_thresholds_come_from_the_test_figures_and_a_missing_one_switches_its_rule_off():
    t = thresholds_from_test(0.02, 2.0, skill_margin=0.05, rmse_ratio=1.5, coverage_tolerance=0.1)
    assert (t.min_skill, t.max_rmse, t.coverage_tolerance) == (pytest.approx(-0.03), 3.0, 0.1)
    t = thresholds_from_test(None, 2.0, skill_margin=0.05, rmse_ratio=None, coverage_tolerance=None)
    assert (t.min_skill, t.max_rmse, t.coverage_tolerance) == (None, None, None)


def test_stored_forecasts_are_scored_against_the_price_they_forecast_up_to_the_day_given():
    stored = pd.concat(
        [
            forecasts(4, version="1").assign(model_name="m", price_column="close"),
            forecasts(4, version="2").assign(model_name="m", price_column="adj_close"),
        ]
    )
    prices = closes([101.0] * 4).assign(adj_close=103.0)
    metrics, scored = score_stored(stored, prices, pd.Timestamp("2024-01-04"), windows=(2,), min_days=1)
    assert scored == 6  # 3 days with a close up to the 4th, for each version
    last = metrics.sort_values("day").groupby("model_version").last()["live_rmse"].to_dict()
    assert last == {"1": 0.0, "2": 2.0}
    assert set(metrics["model_name"]) == {"m"}
