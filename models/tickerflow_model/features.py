"""Features per day: what a window shows the network about each of its days.

Every feature of day t is known at that day's close: a window ending on its base date reads nothing
later, at training and at serving alike (both call `compute_features`, and `market_features` on the
frame they were given).

- `log_return`: log(p[t] / p[t-1]) of the modelled price (the adjusted close when there is one).
- `abs_log_return`: its absolute value.
- `hl_range`: log(high / low), the day's range: Parkinson's (1980) volatility estimate is proportional
  to it, and one day's range carries about five times the information of one close-to-close return.
- `gap`: the overnight gap, log(open[t] / close[t-1]), read as the day's return less its intraday part,
  log(close[t] / open[t]), so a stock split between two days (which moves the unadjusted open and
  close alike, not the adjusted return) does not show as a gap.
- `log_volume_change`: log(1 + volume[t]) - log(1 + volume[t-1]).
- `rv_5`, `rv_22`, `rv_66`: log realized volatility over the last week, month and quarter, the
  components of the HAR model (Corsi 2009): the network sees a quarter of volatility history through
  three numbers per day, at no cost in lookback.
- `market_return`, `market_vol`: the cross-section of the universe on day t: the mean log return of
  the tickers that traded that day and the log of their mean 22-day realized volatility, from data up to
  day t only. Computed from the frame the windows (or the served forecast) are made from, so the model
  must be given the universe it should see, not one ticker.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .config import BASE_FEATURES, FEATURE_COLUMNS, FEATURES, HAR_DAYS, MARKET_FEATURES, MARKET_VOL_DAYS, OHLC_FEATURES

# Parkinson (1980): E[log(high / low)^2] = 4 ln 2 sigma^2 for a driftless Brownian day
PARKINSON = 4.0 * np.log(2.0)
# A day's realized volatility is floored here (log returns): a halted stock's zero returns stay finite.
MIN_DAILY_VOL = 1e-4


def has_values(frame: pd.DataFrame, column: str) -> bool:
    """True when `column` exists with a value on most rows: a feature can be built from it."""
    return column in frame.columns and bool(frame[column].notna().mean() > 0.9)


def auto_features(frame: pd.DataFrame) -> tuple[str, ...]:
    """The default features for this data: returns, long memory and the market, plus the range and the
    gap where the data has high, low and open prices."""
    extra = [f for f in OHLC_FEATURES if all(has_values(frame, c) for c in FEATURE_COLUMNS[f])]
    return BASE_FEATURES[:1] + tuple(extra) + BASE_FEATURES[1:]


def trailing_mean_square(r: np.ndarray, days: int) -> np.ndarray:
    """Mean of r^2 over the last `days` finite values up to each row (fewer at the start; NaN before any).

    (T,) -> (T,); one cumulative sum, no loop over rows.
    """
    valid = np.isfinite(r)
    cs = np.concatenate([[0.0], np.cumsum(np.where(valid, np.square(r), 0.0))])  # (T+1,)
    cn = np.concatenate([[0], np.cumsum(valid)])  # (T+1,)
    lo = np.maximum(np.arange(1, len(r) + 1) - days, 0)  # (T,)
    count = cn[1:] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (cs[1:] - cs[lo]) / np.maximum(count, 1), np.nan)


def log_realized_vol(r: np.ndarray, days: int) -> np.ndarray:
    """log of the realized volatility over the last `days` returns, floored at MIN_DAILY_VOL. (T,) -> (T,)"""
    return np.log(np.fmax(np.sqrt(trailing_mean_square(r, days)), MIN_DAILY_VOL))  # fmax: no value at all is the floor


def market_features(frame: pd.DataFrame, price_col: str) -> pd.DataFrame:
    """Per date: `market_return`, `market_vol` of every ticker in `frame` (the canonical long frame).

    Each ticker's return and 22-day realized volatility on a day use its prices up to that day; the
    cross-sectional means over the tickers with a return that day follow. Dates in order; no NaN
    (a day no ticker has a return on gets return 0 and the previous day's volatility).
    """
    data = frame[["ticker", "date", price_col]].dropna()
    data = data.sort_values(["ticker", "date"], kind="stable")
    logp = np.log(data[price_col].to_numpy(np.float64))
    tickers = data["ticker"].to_numpy()
    r = np.diff(logp, prepend=np.nan)  # (N,)
    first = np.r_[True, tickers[1:] != tickers[:-1]]  # each ticker's first row has no return
    r[first] = np.nan
    vol = np.empty_like(r)
    starts = np.flatnonzero(first)
    for a, b in zip(starts, np.r_[starts[1:], len(r)]):
        vol[a:b] = np.sqrt(trailing_mean_square(r[a:b], MARKET_VOL_DAYS))
    vol[first] = np.nan
    by_day = pd.DataFrame({"date": data["date"].to_numpy(), "r": r, "vol": vol}).groupby("date", sort=True).mean()
    out = pd.DataFrame(
        {
            "market_return": by_day["r"].fillna(0.0),
            "market_vol": np.log(np.maximum(by_day["vol"].ffill().bfill().fillna(MIN_DAILY_VOL), MIN_DAILY_VOL)),
        }
    )
    return out


def market_on(market: pd.DataFrame, dates: np.ndarray) -> np.ndarray:
    """The market features on a ticker's days: (T, 2). Every day of a ticker in the frame is a market day."""
    aligned = market.reindex(pd.DatetimeIndex(dates))
    if aligned.isna().to_numpy().any():
        raise ValueError("the market features were computed from another frame than this ticker's")
    return aligned.to_numpy(np.float64)


def compute_features(
    prices: np.ndarray,
    features: tuple[str, ...],
    columns: Mapping[str, np.ndarray | None] | None = None,
    market: np.ndarray | None = None,
) -> np.ndarray:
    """Row j holds the features of day j+1 (day 0 has no previous close). (T,) -> (T-1, F).

    `columns`: the raw canonical columns the features read (`FEATURE_COLUMNS`), each (T,);
    `market`: (T, 2) `market_features` on this ticker's days.
    """
    columns = columns or {}
    prices = np.asarray(prices, dtype=np.float64)
    log_return = np.diff(np.log(prices))  # (T-1,)

    def column(name: str, feature: str) -> np.ndarray:
        values = columns.get(name)
        if values is None:
            raise ValueError(f"feature {feature!r} needs a {name!r} column")
        return np.asarray(values, dtype=np.float64)

    cols = []
    for name in features:
        if name == "log_return":
            cols.append(log_return)
        elif name == "abs_log_return":
            cols.append(np.abs(log_return))
        elif name == "hl_range":
            hl = np.log(column("high", name)[1:] / column("low", name)[1:])
            # a missing or inverted high/low (a data gap) reads as "no range" rather than poisoning the window
            cols.append(np.where(np.isfinite(hl) & (hl >= 0), hl, 0.0))
        elif name == "gap":
            intraday = np.log(column("close", name)[1:] / column("open", name)[1:])
            gap = log_return - intraday
            cols.append(np.where(np.isfinite(gap), gap, 0.0))  # no open that day: no gap seen
        elif name == "log_volume_change":
            # +1 keeps zero-volume days (halts) finite
            cols.append(np.diff(np.log1p(column("volume", name))))
        elif name.startswith("rv_"):
            cols.append(log_realized_vol(log_return, HAR_DAYS[name]))
        elif name.startswith("range_"):
            hl = np.log(column("high", name)[1:] / column("low", name)[1:])  # (T-1,)
            # Parkinson's daily volatility, hl / sqrt(4 ln 2), averaged in variance; a day without a range is skipped
            day_vol = np.where(np.isfinite(hl) & (hl >= 0), hl, np.nan) / np.sqrt(PARKINSON)
            cols.append(log_realized_vol(day_vol, HAR_DAYS[name]))
        elif name in MARKET_FEATURES:
            if market is None:
                raise ValueError(f"feature {name!r} needs the market features of the frame")
            cols.append(np.asarray(market, dtype=np.float64)[1:, MARKET_FEATURES.index(name)])
        else:
            raise ValueError(f"unknown feature {name!r}; known: {FEATURES}")
    return np.stack(cols, axis=1)  # (T-1, F)
