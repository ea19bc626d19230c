"""How far ahead of GARCH can any forecaster get on a price file? The headroom, measured.

    python bench/garch_headroom.py [--data FILE]

One-day-ahead quantiles at the model's levels, on the test split of the default WindowConfig's date
split, scored by the evaluation's mean pinball loss (`tickerflow_model.quantiles.pinball`), on the same
windows for every row (base days with the history the GRU's features need):

- `garch`, `ewma`: the project's baselines (`tickerflow_model.baselines`), as the gate runs them.
- `har`: a forecaster one could ship. A HAR model of the log daily variance (Corsi 2009) on the
  range-based (Parkinson) variance of the last 1, 5, 22 and 66 days, plus the close-to-close squared
  returns of 5 and 22 days (close-only data: squared returns throughout), fit per ticker by least
  squares on the days up to the end of validation. Quantiles: the predicted volatility times the
  empirical quantiles of the training returns standardized by it.
- `bound`: not a forecaster. One linear quantile regression per level, pooled over the tickers, on every
  input at once (garch's volatility, the HAR components, the market's mean range variance over 5 and
  22 days), fit on the test split itself: it sees the outcomes it is scored on. No model that maps
  these inputs linearly to quantiles does better on these windows; the gap between `garch` and `bound`
  is the headroom that the inputs GARCH does not use leave on this data.

It prints each row's pinball per ticker and pooled, and each one's improvement over garch.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "models")]

from tickerflow_model.baselines import ewma, fit_garch, garch  # noqa: E402
from tickerflow_model.config import WindowConfig  # noqa: E402
from tickerflow_model.price_files import read_prices  # noqa: E402
from tickerflow_model.quantiles import QUANTILE_LEVELS, pinball  # noqa: E402
from tickerflow_model.splits import split_dates  # noqa: E402
from tickerflow_model.window_dataset import choose_price_column  # noqa: E402

HAR_DAYS = (5, 22, 66)
FIRST_BASE = 30 + max(HAR_DAYS)  # the GRU's lookback plus its longest feature history
FLOOR = 1e-10  # a log of a zero range (a day with high == low) stays finite


def ticker_inputs(g: pd.DataFrame, price: str) -> pd.DataFrame:
    """Per day of one ticker: its return and the log variances the HAR model and the bound read."""
    logp = np.log(g[price].to_numpy(np.float64))
    r = np.r_[np.nan, np.diff(logp)]  # r[t]: the return ending on day t
    if {"high", "low"} <= set(g.columns):
        rng = np.log(g["high"].to_numpy(np.float64) / g["low"].to_numpy(np.float64)) ** 2 / (4 * np.log(2))
        rng = np.where(np.isfinite(rng) & (rng > 0), rng, r**2)  # Parkinson (1980); a flat day: r^2
    else:
        rng = r**2
    rng, sq = pd.Series(rng), pd.Series(r**2)
    out = {"r": r, "range_1": rng.to_numpy()}
    for k in HAR_DAYS:
        out[f"range_{k}"] = rng.rolling(k).mean().to_numpy()
    for k in HAR_DAYS[:2]:
        out[f"sq_{k}"] = sq.rolling(k).mean().to_numpy()
    return pd.DataFrame(out, index=g["date"].to_numpy())


def har(inputs: pd.DataFrame, fit_rows: np.ndarray, base: np.ndarray, levels) -> np.ndarray:
    """HAR on log variance, fit on `fit_rows` (base days whose next day is up to the fit end): (n, Q) at `base`."""
    cols = [c for c in inputs.columns if c != "r"]
    logv = np.log(np.maximum(inputs[cols].to_numpy(), FLOOR))
    design = lambda rows: np.c_[np.ones(len(rows)), logv[rows]]  # noqa: E731
    target = logv[fit_rows + 1, 0]  # the next day's log range variance
    ok = np.all(np.isfinite(design(fit_rows)), axis=1) & np.isfinite(target)
    beta = np.linalg.lstsq(design(fit_rows)[ok], target[ok], rcond=None)[0]
    r = inputs["r"].to_numpy()
    z = r[fit_rows + 1] / np.exp(design(fit_rows) @ beta / 2)
    shape = np.quantile(z[np.isfinite(z)], levels)  # (Q,)
    return np.exp(design(base) @ beta / 2)[:, None] * shape[None, :]


def bound(design: np.ndarray, y: np.ndarray, levels) -> np.ndarray:
    """One linear quantile regression per level, fit and predicted on the same rows: (n, Q), sorted along Q."""
    import statsmodels.api as sm  # a dependency of arch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = [sm.QuantReg(y, design).fit(q=tau, max_iter=5000).predict(design) for tau in levels]
    return np.sort(np.column_stack(cols), axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "data/sample/stocks_daily_2000_2013.csv.gz"))
    args = parser.parse_args()
    levels = QUANTILE_LEVELS
    frame = read_prices(args.data)[0]
    window = WindowConfig()
    price = choose_price_column(frame, window.price)
    cut = split_dates(frame["date"], window.train_fraction, window.val_fraction, window.purge_gap)
    print(
        f"data {args.data}: {frame['ticker'].nunique()} tickers, {len(frame)} rows, price {price}, "
        f"{'high/low ranges' if {'high', 'low'} <= set(frame.columns) else 'close only'}; test split after "
        f"{pd.Timestamp(cut.val_end).date()}; levels {levels}"
    )
    per = {}
    for ticker, g in frame.groupby("ticker", sort=True):
        g = g.sort_values("date").reset_index(drop=True)
        prices = g[price].to_numpy(np.float64)
        dates = g["date"].to_numpy("datetime64[ns]")
        fit_end = int(np.searchsorted(dates, np.datetime64(cut.val_end), side="right")) - 1
        base = np.arange(FIRST_BASE, len(g) - 1)
        base = base[dates[base] > np.datetime64(cut.val_end)]
        if fit_end < FIRST_BASE + 250 or len(base) < 20:
            continue
        inputs = ticker_inputs(g, price)
        per[ticker] = {
            "dates": dates[base],
            "y": inputs["r"].to_numpy()[base + 1],
            "garch": garch(prices, base, 1, levels, fit_garch(prices, fit_end))[:, 0, :],
            "ewma": ewma(prices, base, 1, levels)[:, 0, :],
            "har": har(inputs, np.arange(FIRST_BASE, fit_end), base, levels),
            "inputs": inputs.iloc[base],
            "range_1": inputs["range_1"],
        }
    if not per:
        raise SystemExit("no ticker has enough history before and after the end of validation")
    # the market: the tickers' mean range variance per day (days up to the base day only)
    market = pd.concat([d["range_1"] for d in per.values()], axis=1, sort=True).mean(axis=1)
    market_5, market_22 = market.rolling(5).mean(), market.rolling(22).mean()
    design = []
    for d in per.values():
        x = d["inputs"]
        g_sigma = (d["garch"][:, -1] - d["garch"][:, 0]) / 2  # proportional to garch's volatility
        cols = [g_sigma] + [np.sqrt(x[c].to_numpy()) for c in x.columns if c != "r"]
        cols += [np.sqrt(m.reindex(d["dates"]).to_numpy()) for m in (market_5, market_22)]
        design.append(np.column_stack([np.ones(len(g_sigma)), *cols]))
    design_all = np.concatenate(design)
    y_all = np.concatenate([d["y"] for d in per.values()])
    ok = np.all(np.isfinite(design_all), axis=1) & np.isfinite(y_all)
    pooled_bound = np.full((len(y_all), len(levels)), np.nan)
    pooled_bound[ok] = bound(design_all[ok], y_all[ok], levels)
    start = 0
    for d in per.values():
        d["bound"] = pooled_bound[start : start + len(d["y"])]
        start += len(d["y"])
    names = ("garch", "ewma", "har", "bound")
    print("\n| ticker | windows | " + " | ".join(names) + " | har vs garch | bound vs garch |")
    print("|---|---|" + "---|" * (len(names) + 2))
    pooled = {n: [] for n in names}
    for ticker, d in per.items():
        keep = np.isfinite(d["y"]) & np.all(np.isfinite(d["bound"]), axis=1)
        scores = {n: pinball(d[n][keep], d["y"][keep], levels) * 100 for n in names}  # percent, as evaluated
        for n in names:
            pooled[n].append(scores[n])
        mean = {n: float(np.mean(s)) for n, s in scores.items()}
        print(
            f"| {ticker} | {int(keep.sum())} | "
            + " | ".join(f"{mean[n]:.4f}" for n in names)
            + f" | {1 - mean['har'] / mean['garch']:+.2%} | {1 - mean['bound'] / mean['garch']:+.2%} |"
        )
    mean = {n: float(np.mean(np.concatenate(s))) for n, s in pooled.items()}
    print(
        f"| all | {sum(len(s) for s in pooled['garch'])} | "
        + " | ".join(f"{mean[n]:.4f}" for n in names)
        + f" | {1 - mean['har'] / mean['garch']:+.2%} | {1 - mean['bound'] / mean['garch']:+.2%} |"
    )
    print(
        f"\npooled: har {1 - mean['har'] / mean['garch']:+.2%} vs garch (a forecaster), bound "
        f"{1 - mean['bound'] / mean['garch']:+.2%} vs garch (fit on the outcomes it is scored on: the headroom), "
        f"ewma {1 - mean['ewma'] / mean['garch']:+.2%} vs garch"
    )


if __name__ == "__main__":
    main()
