"""Distribution baselines against loop-by-hand oracles; no look-ahead; the servable baseline."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from price_frames import gjr_garch_returns, make_prices

from tickerflow_model.baselines import (
    MIN_RETURNS,
    BaselineForecaster,
    cumulative_log_returns,
    ewma,
    rolling_quantile,
    static_quantile,
)
from tickerflow_model.forecaster import forecast_columns
from tickerflow_model.quantiles import QUANTILE_LEVELS, quantile_columns

LEVELS = QUANTILE_LEVELS


def garch_prices(n: int, seed: int = 0) -> np.ndarray:
    return 100 * np.exp(np.cumsum(gjr_garch_returns(n, seed)))


P = garch_prices(600)


def test_cumulative_log_returns_end_on_their_day():
    p = np.array([1.0, 2.0, 4.0, 8.0])
    c = cumulative_log_returns(p, 2)
    assert np.isnan(c[:2]).all()
    np.testing.assert_allclose(c[2:], [np.log(4.0), np.log(4.0)])


def test_static_uses_the_training_period_only():
    base = np.array([400, 450, 599])
    q = static_quantile(P, base, 3, LEVELS, fit_end=399)
    for h in (1, 2, 3):
        returns = np.log(P[h:400] / P[: 400 - h])  # h-day returns ending on days h..399
        np.testing.assert_allclose(q[:, h - 1], np.tile(np.quantile(returns, LEVELS), (3, 1)))
    with pytest.raises(ValueError, match="cannot forecast from the earlier day 100"):
        static_quantile(P, np.array([100]), 1, LEVELS, fit_end=399)


def test_rolling_matches_np_quantile_of_the_last_250_days():
    base = np.array([30, 260, 400, 599])
    q = rolling_quantile(P, base, 2, LEVELS)
    for i, b in enumerate(base):
        for h in (1, 2):
            ends = np.arange(max(h, b - 249), b + 1)  # returns ending in the 250 days up to b
            np.testing.assert_allclose(
                q[i, h - 1], np.quantile(np.log(P[ends] / P[ends - h]), LEVELS), rtol=1e-9, atol=1e-15
            )
    # too little history: NaN, not a guess
    assert np.isnan(rolling_quantile(P, np.array([MIN_RETURNS - 1]), 1, LEVELS)).all()


def test_ewma_matches_the_riskmetrics_weights_and_scales_with_sqrt_h():
    base = np.array([50, 300])
    q = ewma(P, base, 4, LEVELS)
    r = np.diff(np.log(P))
    z = np.array([NormalDist().inv_cdf(q) for q in LEVELS])  # (Q,): -2.326 (1%) .. 0 .. 2.326 (99%)
    for i, b in enumerate(base):
        past = r[:b][::-1]  # the newest return (ending on day b) first
        w = 0.94 ** np.arange(len(past))
        sigma = np.sqrt(np.sum(w * past**2) / np.sum(w))
        for h in (1, 4):
            np.testing.assert_allclose(q[i, h - 1], sigma * np.sqrt(h) * z, rtol=1e-6)


@pytest.mark.parametrize("fn", ["rolling", "ewma"])
def test_no_baseline_reads_a_price_after_its_base_day(fn):
    base = np.array([300, 350])
    tampered = P.copy()
    tampered[351:] *= np.exp(np.linspace(0, 3, len(P) - 351))  # rewrite everything after day 350
    run = (lambda p: rolling_quantile(p, base, 2, LEVELS)) if fn == "rolling" else (lambda p: ewma(p, base, 2, LEVELS))
    np.testing.assert_array_equal(run(P), run(tampered))
    # the check has teeth: a base day after the change sees it
    later = np.array([500])
    f = (lambda p: rolling_quantile(p, later, 2, LEVELS)) if fn == "rolling" else (lambda p: ewma(p, later, 2, LEVELS))
    assert not np.allclose(f(P), f(tampered))


def test_baseline_quantiles_are_monotone_across_levels():
    base = np.arange(100, 600)
    for q in (rolling_quantile(P, base, 3, LEVELS), ewma(P, base, 3, LEVELS), static_quantile(P, base, 3, LEVELS, 99)):
        assert (np.diff(q, axis=-1) >= 0).all()


def test_servable_baseline_forecasts_prices_with_quantile_columns(tmp_path):
    prices = make_prices(n_days=120, tickers=("AAA", "BBB"), seed=2)
    histories = {t: g.sort_values("date")["close"].to_numpy() for t, g in prices.groupby("ticker")}
    for name in ("static_quantile", "rolling_quantile", "ewma"):
        fitted = BaselineForecaster.fit(name, histories, {"AAA": 80, "BBB": 80}, horizon=2)
        loaded = BaselineForecaster.load(fitted.save(tmp_path / name))
        out = loaded.forecast_frame(prices)
        assert list(out.columns) == forecast_columns(LEVELS)
        assert out["ticker"].tolist() == ["AAA", "AAA", "BBB", "BBB"] and out["horizon"].tolist() == [1, 2, 1, 2]
        q = out[quantile_columns(LEVELS)].to_numpy()
        assert (np.diff(q, axis=1) >= 0).all()
        last = prices.sort_values("date").groupby("ticker")["close"].last()
        np.testing.assert_allclose(out["forecast_close"], out["ticker"].map(last))  # the point forecast is naive
        assert (pd.to_datetime(out["date"]) > prices["date"].max()).all()
        # a backtest from every day with enough history: one row per (base day, step)
        backtest = loaded.forecast_frame(prices, all_dates=True)
        assert len(backtest) == 2 * 2 * (120 - loaded.min_rows + 1)
    # static quantiles exist only for tickers they were fit on
    static = BaselineForecaster.fit("static_quantile", {"AAA": histories["AAA"]}, {"AAA": 80}, horizon=1)
    assert static.forecast_frame(prices)["ticker"].unique().tolist() == ["AAA"]
    with pytest.raises(ValueError, match="unknown distribution baseline 'arima'"):
        BaselineForecaster.fit("arima", histories, {}, horizon=1)
