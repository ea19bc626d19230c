"""The live loop's adaptive conformal margins: the served forecasts' misses stretch the next forecast's
intervals, ticker by ticker and step by step, about an unmoved median."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from tickerflow.tasks.forecast import ForecastBatch, LoadedModel, adapted_batch
from tickerflow_model.live import LEVELS_COLUMN
from tickerflow_model.quantiles import levels_text, quantile_columns

LEVELS = (0.05, 0.1, 0.5, 0.9, 0.95)
QCOLS = quantile_columns(LEVELS)


def batch() -> ForecastBatch:
    rows = [{"ticker": t, "date": pd.Timestamp("2024-03-01"), "horizon": 1, "forecast_close": 100.0} for t in "AB"]
    frame = pd.DataFrame(rows).assign(**dict(zip(QCOLS, [95.0, 97.0, 100.0, 103.0, 105.0])))
    frame = frame.assign(base_price=100.0, price_column="close", model_version="3")
    return ForecastBatch(frame, {}, LEVELS)


def served(ticker: str, realized: float, days: int = 40, version: str = "3") -> pd.DataFrame:
    """`days` served forecasts of one ticker, each outcome `realized` (a miss of every interval, or a hit)."""
    dates = pd.bdate_range("2024-01-01", periods=days)
    frame = pd.DataFrame({"ticker": ticker, "date": dates, "horizon": 1, "realized": realized})
    return frame.assign(
        **dict(zip(QCOLS, [95.0, 97.0, 100.0, 103.0, 105.0])),
        model_name="m",
        model_version=version,
        **{LEVELS_COLUMN: levels_text(LEVELS)},
    )


def test_misses_widen_a_tickers_intervals_and_hits_narrow_another_about_the_same_median():
    history = pd.concat([served("A", 120.0), served("B", 100.0), served("A", 50.0, version="2")])
    model = LoadedModel("models:/m@champion", "3", None)

    with disable_run_logger():
        out = adapted_batch(batch(), history, model, gamma=0.02).frame.set_index("ticker")

    before = batch().frame.set_index("ticker")
    assert (out["q50"] == before["q50"]).all() and (out["forecast_close"] == before["forecast_close"]).all()
    # A: 40 misses of every interval by version 3 (version 2's are another model's): the 90% interval's log
    # factor is 0.02 * 40 * (1 - 0.9 nominal coverage's miss rate 0.1), applied to its log return about the median
    assert out.loc["A", "q95"] == pytest.approx(100.0 * 1.05 ** np.exp(0.02 * 40 * 0.9))
    assert out.loc["A", "q90"] == pytest.approx(100.0 * 1.03 ** np.exp(0.02 * 40 * 0.8))
    assert out.loc["A", "q05"] < 95.0 and out.loc["A", "q95"] > 105.0
    assert out.loc["B", "q05"] > 95.0 and out.loc["B", "q95"] < 105.0  # 40 hits: narrower
    assert (np.diff(out[QCOLS].to_numpy(), axis=1) > 0).all()


def test_no_margin_without_gamma_history_or_the_registry():
    history = served("A", 120.0)
    with disable_run_logger():
        for gamma, model, rows in [
            (0.0, LoadedModel("models:/m@champion", "3", None), history),
            (0.02, LoadedModel("models:/m@champion", "4", None), history),  # another version's history
            (0.02, LoadedModel("runs:/abc/model", "", None), history),
            (0.02, LoadedModel("models:/m@champion", "3", None), history.iloc[:0]),
        ]:
            pd.testing.assert_frame_equal(adapted_batch(batch(), rows, model, gamma).frame, batch().frame)
