"""Forecast target days are the exchange's trading sessions (NYSE by default), not Monday-to-Friday."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tickerflow_model.forecaster import _add_business_days, forecast_rows


def targets(base: str, steps, exchange: str = "XNYS") -> list[str]:
    steps = np.asarray(steps)
    out = _add_business_days(pd.to_datetime([base] * len(steps)), steps, exchange)
    return [str(d)[:10] for d in out]


def test_a_forecast_on_the_friday_before_a_market_holiday_targets_the_next_trading_day():
    # Monday 2024-01-15 is Martin Luther King Jr. Day: the NYSE is closed
    assert targets("2024-01-12", [1, 2, 3]) == ["2024-01-16", "2024-01-17", "2024-01-18"]
    # Good Friday 2024-03-29 is a weekday on which the NYSE is closed (no Mon-Fri rule knows it)
    assert targets("2024-03-28", [1]) == ["2024-04-01"]
    # New Year's Day, across a year boundary
    assert targets("2024-12-31", [1]) == ["2025-01-02"]


def test_a_base_day_that_is_no_session_counts_from_the_session_before_it():
    assert targets("2024-07-04", [1]) == ["2024-07-05"]  # Independence Day
    assert targets("2024-07-06", [1]) == ["2024-07-08"]  # a Saturday


def test_days_beyond_the_calendars_range_fall_back_to_business_days():
    # XHKG's calendar covers dates up to 2049: later days are Monday to Friday
    assert targets("2060-01-09", [1, 2], "XHKG") == ["2060-01-12", "2060-01-13"]  # a Friday -> Monday, Tuesday


def test_forecast_rows_carry_the_trading_day_targets():
    frame = forecast_rows(
        "AAA",
        pd.to_datetime(["2024-01-12"]).to_numpy(),
        np.array([100.0]),
        np.zeros((1, 2)),
        np.zeros((1, 2, 3)),
        (0.1, 0.5, 0.9),
        all_dates=False,
    )
    assert frame["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-16", "2024-01-17"]
    assert frame["horizon"].tolist() == [1, 2]


def test_without_exchange_calendars_installed_the_dates_are_business_days(monkeypatch):
    import builtins

    import tickerflow_model.forecaster as forecaster

    real_import = builtins.__import__

    def no_calendars(name, *args, **kwargs):
        if name == "exchange_calendars":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_calendars)
    forecaster._sessions.cache_clear()
    try:
        assert targets("2024-01-12", [1]) == ["2024-01-15"]  # the holiday itself: Mon-Fri knows no holidays
    finally:
        forecaster._sessions.cache_clear()
