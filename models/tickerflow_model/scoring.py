"""Scoring many forecasters on the same forecasts: every metric overall, per ticker and per horizon step.

The predictions frame has one row per forecast (ticker, base day, horizon step) with the actual price,
the base price, the MASE scale and each forecaster's point forecast in its own column; distribution
forecasters add (rows, Q) quantiles of the cumulative log return. Every metric is a mean of per-forecast
terms (see `metrics.point_terms` / `metrics.distribution_terms`; RMSE is the root of the mean squared
error, skill compares RMSEs), so all groups of all forecasters come from one grouped mean, with no
Python loop over tickers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import METRIC_KEYS, distribution_terms, point_terms


def score_terms(
    predictions: pd.DataFrame, point_columns: dict[str, str], quantiles: dict[str, np.ndarray], levels
) -> pd.DataFrame:
    """Per-forecast terms of every metric, one block of rows per forecaster, stacked: (rows * F, terms).

    `point_columns`: forecaster -> column of its point forecast (in this order); a forecaster in
    `quantiles` also gets the distribution terms, on log returns in percent.
    """
    actual_pct = 100.0 * np.log(predictions["actual"].to_numpy() / predictions["base_price"].to_numpy())
    blocks = []
    for name, column in point_columns.items():
        terms = point_terms(predictions[column], predictions["actual"], predictions["base_price"], predictions["mase_scale"])
        if name in quantiles:
            terms.update(distribution_terms(100.0 * quantiles[name], actual_pct, levels))
        block = pd.DataFrame(terms)
        block["forecaster"], block["ticker"], block["horizon"] = name, predictions["ticker"].to_numpy(), predictions["horizon"].to_numpy()
        blocks.append(block)
    terms = pd.concat(blocks, ignore_index=True)
    # an ordered categorical keeps the forecasters in the given order inside every group
    terms["forecaster"] = pd.Categorical(terms["forecaster"], categories=list(point_columns), ordered=True)
    return terms


def _finish(means: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Group means -> metrics: RMSE is the root of the mean squared error; skill is vs naive in the same group."""
    out = means.rename(columns={"se": "rmse"})
    out["rmse"] = np.sqrt(out["rmse"])
    naive = out.xs("naive", level="forecaster")["rmse"] if by else out.loc["naive", "rmse"]
    ref = np.asarray(out.index.droplevel("forecaster").map(naive) if by else naive, dtype=np.float64)
    out["skill"] = np.where(ref > 0, 1.0 - out["rmse"].to_numpy() / ref, 0.0)
    return out


def metric_frames(
    predictions: pd.DataFrame, point_columns: dict[str, str], quantiles: dict[str, np.ndarray], levels
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Overall, per ticker and per horizon step, each a frame indexed by (group..., forecaster). Needs `naive`."""
    terms = score_terms(predictions, point_columns, quantiles, levels)
    cols = [c for c in terms.columns if c not in ("forecaster", "ticker", "horizon")]
    frames = []
    for by in ([], ["ticker"], ["horizon"]):
        means = terms.groupby([*by, "forecaster"], sort=True, observed=True)[cols].mean()
        frames.append(_finish(means, by))
    return tuple(frames)


def _as_dict(frame: pd.DataFrame) -> dict:
    """forecaster -> metric -> value, without the metrics a forecaster does not have (NaN)."""
    return {
        str(name): {k: float(v) for k, v in row.items() if k in METRIC_KEYS and np.isfinite(v)}
        for name, row in frame.iterrows()
    }


def grouped_metrics(
    predictions: pd.DataFrame, point_columns: dict[str, str], quantiles: dict[str, np.ndarray], levels
) -> tuple[dict, dict, dict]:
    """Overall, per ticker and per horizon step ("h1", "h2", ...) as forecaster -> metric -> value."""
    overall, by_ticker, by_horizon = metric_frames(predictions, point_columns, quantiles, levels)
    per_ticker = {str(t): _as_dict(g.droplevel("ticker")) for t, g in by_ticker.groupby(level="ticker", sort=True)}
    per_horizon = {f"h{h}": _as_dict(g.droplevel("horizon")) for h, g in by_horizon.groupby(level="horizon", sort=True)}
    return _as_dict(overall), per_ticker, per_horizon
