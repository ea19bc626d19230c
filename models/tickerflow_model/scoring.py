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


def score_terms(predictions: pd.DataFrame, column: str, quantiles: np.ndarray | None, levels) -> dict[str, np.ndarray]:
    """One forecaster's per-forecast terms of every metric: name -> (rows,).

    `column`: the predictions column of its point forecast; with `quantiles` (rows, Q) it also gets the
    distribution terms, on log returns in percent.
    """
    actual, base = predictions["actual"].to_numpy(np.float64), predictions["base_price"].to_numpy(np.float64)
    terms = point_terms(predictions[column], actual, base, predictions["mase_scale"])
    if quantiles is not None:
        terms.update(distribution_terms(100.0 * quantiles, 100.0 * np.log(actual / base), levels))
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
    """Overall, per ticker and per horizon step, each a frame indexed by (group..., forecaster). Needs `naive`.

    Every forecaster's terms are written into preallocated float64 arrays (terms, forecasters x rows)
    and grouped by integer codes: no per-forecaster frames, no stacked copy of them, no column of
    per-row ticker strings. The groups, the order of the rows in each and the block layout are those
    of one grouped mean over all forecasters' stacked terms, so the means are the same to the last bit.
    """
    names, n = list(point_columns), len(predictions)
    # (terms, F*rows) per kind, forecaster blocks in the given order; NaN where a forecaster has no such term.
    # The names and order of the terms are those the term functions give (on one dummy forecast).
    one = np.ones(1)
    kinds = {"point": list(point_terms(one, one, one, one))}
    if any(name in quantiles for name in names):
        kinds["distribution"] = list(distribution_terms(np.zeros((1, len(levels))), one, levels))
    terms = {kind: np.full((len(keys), len(names) * n), np.nan) for kind, keys in kinds.items()}
    for f, name in enumerate(names):
        for key, values in score_terms(predictions, point_columns[name], quantiles.get(name), levels).items():
            kind = "point" if key in kinds["point"] else "distribution"
            terms[kind][kinds[kind].index(key), f * n : (f + 1) * n] = values
    # One float block per kind of term, laid out as stacking the forecasters' frames laid them out: pandas'
    # compensated grouped sum rounds the last bit differently for another block layout.
    frame = pd.concat([pd.DataFrame(terms[kind].T, columns=keys, copy=False) for kind, keys in kinds.items()], axis=1)
    forecaster = np.repeat(np.arange(len(names)), n)  # (F*rows,) position in `names`
    frames = []
    for by in (None, "ticker", "horizon"):
        if by is None:
            means = frame.groupby(forecaster, sort=True).mean()
            means.index = pd.Index(np.asarray(names, dtype=object)[means.index.to_numpy()], name="forecaster")
        else:
            codes, labels = pd.factorize(predictions[by], sort=True)  # (rows,), sorted labels
            means = frame.groupby([np.tile(codes, len(names)), forecaster], sort=True).mean()
            means.index = pd.MultiIndex.from_arrays(
                [
                    labels[means.index.get_level_values(0).to_numpy()],
                    np.asarray(names, dtype=object)[means.index.get_level_values(1).to_numpy()],
                ],
                names=[by, "forecaster"],
            )
        frames.append(_finish(means, [] if by is None else [by]))
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
