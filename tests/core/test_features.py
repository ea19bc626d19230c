"""Features per day: their definitions, no look-ahead, and serving-time windows equal to training-time ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_models import untrained_forecaster

from tickerflow_model.config import BASE_FEATURES, FEATURES, WindowConfig, history_days
from tickerflow_model.features import MIN_DAILY_VOL, auto_features, compute_features, market_features, market_on
from tickerflow_model.window_dataset import build_window_dataset, read_split


def ohlc_prices(n_days: int = 400, tickers=("AAA", "BBB", "CCC"), seed: int = 0) -> pd.DataFrame:
    """Random-walk OHLCV with a random range and overnight gap each day, canonical long layout."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2016-01-04", periods=n_days)
    frames = []
    for i, ticker in enumerate(tickers):
        close = 40.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.012, n_days)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.004, n_days))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.008, n_days)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.008, n_days)))
        volume = rng.integers(1_000, 10_000, n_days).astype(float)
        frames.append(
            pd.DataFrame(
                {
                    "date": dates,
                    "ticker": ticker,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def one_ticker(frame: pd.DataFrame, ticker: str) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    g = frame[frame["ticker"] == ticker].sort_values("date")
    columns = {c: g[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")}
    return g["close"].to_numpy(np.float64), columns, g["date"].to_numpy("datetime64[ns]")


def test_gap_is_the_overnight_move_and_a_split_is_not_a_gap():
    close = np.array([100.0, 102.0, 51.5, 52.0])  # a 2:1 split before day 2
    open_ = np.array([99.0, 101.0, 51.2, 51.0])
    adj = close * np.array([0.5, 0.5, 1.0, 1.0])  # the adjusted series has no jump
    raw = compute_features(close, ("log_return", "gap"), {"open": open_, "close": close})
    np.testing.assert_allclose(raw[:, 1], np.log(open_[1:] / close[:-1]))  # on unadjusted closes: the overnight move
    adjusted = compute_features(adj, ("log_return", "gap"), {"open": open_, "close": close})
    expected = np.log(adj[1:] / adj[:-1]) - np.log(close[1:] / open_[1:])
    np.testing.assert_allclose(adjusted[:, 1], expected)
    assert abs(adjusted[1, 1]) < 0.01 < abs(raw[1, 1])  # the split shows in the raw gap only


def test_long_memory_features_are_trailing_realized_volatilities():
    frame = ohlc_prices(n_days=150, tickers=("AAA",))
    close, columns, _ = one_ticker(frame, "AAA")
    feats = compute_features(close, ("log_return", "rv_5", "rv_22", "range_66"), columns)  # (T-1, 4)
    r = np.diff(np.log(close))
    day_range = np.log(columns["high"][1:] / columns["low"][1:]) / np.sqrt(4 * np.log(2))
    for j in range(len(r)):  # loop-by-hand oracle: the mean square of the last k values up to row j
        for col, (values, k) in enumerate(((r, 5), (r, 22), (day_range, 66)), start=1):
            tail = values[max(0, j - k + 1) : j + 1]
            assert feats[j, col] == pytest.approx(np.log(np.sqrt(np.mean(tail**2))), rel=1e-9)
    # a halted stock's zero returns give the floor, not log(0)
    flat = compute_features(np.full(30, 10.0), ("log_return", "rv_5"))
    np.testing.assert_allclose(flat[:, 1], np.log(MIN_DAILY_VOL))


def test_market_features_are_the_cross_section_of_each_day():
    frame = ohlc_prices(n_days=60)
    market = market_features(frame, "close")
    returns = frame.sort_values("date").groupby("ticker")["close"].transform(lambda p: np.log(p).diff())
    expected = returns.groupby(frame["date"]).mean().iloc[1:]
    np.testing.assert_allclose(market["market_return"].iloc[1:], expected.to_numpy())
    assert np.isfinite(market.to_numpy()).all() and len(market) == 60


@pytest.mark.parametrize("feature", FEATURES)
def test_no_feature_reads_anything_after_its_day(feature):
    """Rewrite every ticker's prices, range, gap and volume after day `cut`: no feature up to `cut` moves."""
    frame = ohlc_prices(n_days=200)
    cut = frame["date"].sort_values().unique()[120]
    later = frame["date"] > cut
    tampered = frame.copy()
    shock = np.exp(np.random.default_rng(9).normal(0.02, 0.2, later.sum()))
    for c in ("open", "high", "low", "close"):
        tampered.loc[later, c] *= shock * (1.05 if c == "high" else 1.0)
    tampered.loc[later, "volume"] *= 7

    def features(f: pd.DataFrame) -> np.ndarray:
        close, columns, dates = one_ticker(f, "BBB")
        return compute_features(close, (feature,), columns, market_on(market_features(f, "close"), dates))

    before, after = features(frame), features(tampered)
    upto = 120  # feature row j is day j + 1: rows 0..119 are the days up to `cut`
    np.testing.assert_array_equal(before[:upto], after[:upto])
    if feature != "hl_range":  # the range is a ratio within one day: the uniform shock leaves it alone ...
        assert not np.allclose(before[upto:], after[upto:])  # ... everything else sees the shock later


def test_auto_features_follow_the_columns_the_data_has():
    ohlc = ohlc_prices(n_days=10)
    assert auto_features(ohlc) == ("log_return", "hl_range", "gap", *BASE_FEATURES[1:])
    close_only = ohlc[["date", "ticker", "close"]]
    assert auto_features(close_only) == BASE_FEATURES
    assert auto_features(ohlc.assign(open=np.nan)) == ("log_return", "hl_range", *BASE_FEATURES[1:])
    assert history_days(BASE_FEATURES) == 66 and history_days(("log_return", "hl_range")) == 0


@pytest.mark.parametrize("features", ["auto", ("log_return", "hl_range", "gap", "range_22", "market_vol")])
def test_serving_windows_equal_the_training_windows_of_the_same_frame(tmp_path, features):
    frame = ohlc_prices(n_days=400)
    config = WindowConfig(lookback=12, horizon=2, min_history=100, features=features)
    dataset = build_window_dataset(frame, config, "src", tmp_path / "w")
    x_test, _, index = read_split(dataset, "test")
    forecaster = untrained_forecaster(dataset, 1.0)
    checked = 0
    for ticker, dates, _, base_idx, x, _ in forecaster.input_windows(frame, all_dates=True):
        at = {d: i for i, d in enumerate(dates[base_idx])}
        rows = index["ticker"] == ticker
        served = x[[at[np.datetime64(d, "ns")] for d in index.loc[rows, "base_date"]]]
        np.testing.assert_allclose(served, x_test[rows.to_numpy()], rtol=1e-6, atol=1e-6)  # float32 windows
        checked += int(rows.sum())
    assert checked == len(x_test) > 0
    assert dataset.spec.n_features == (8 if features == "auto" else 5)
