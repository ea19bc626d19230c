"""MLflow pyfunc wrapper: raw recent prices in, price forecasts out.

This package travels inside every registered model (`code_paths`), so the model loads with
`mlflow.pyfunc.load_model` where tickerflow is not installed.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from .baselines import BaselineForecaster
from .forecaster import Forecaster

BUNDLE_ARTIFACT = "bundle"


class GRUPricePyfunc(mlflow.pyfunc.PythonModel):
    """The GRU: `ticker, date, horizon, forecast_close, q05 .. q95` in price units."""

    def load_context(self, context) -> None:
        self.forecaster = self.load_forecaster(context.artifacts[BUNDLE_ARTIFACT])

    @staticmethod
    def load_forecaster(folder: str):
        return Forecaster.load(folder)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """`params={"all_dates": True}` forecasts from every day with a full window (backtests)."""
        frame = _canonical(pd.DataFrame(model_input))
        all_dates = bool((params or {}).get("all_dates", False))
        return self.forecaster.forecast_frame(frame, all_dates=all_dates)


class BaselinePyfunc(GRUPricePyfunc):
    """A distribution baseline (static/rolling quantiles, EWMA) with the same input and output as the GRU."""

    @staticmethod
    def load_forecaster(folder: str):
        return BaselineForecaster.load(folder)


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Accept the canonical long frame, tolerating JSON-served inputs (string dates, any case)."""
    frame = frame.rename(columns={c: str(c).strip().lower().replace(" ", "_") for c in frame.columns})
    if "date" in frame.columns:
        frame["date"] = pd.to_datetime(frame["date"])
    if "ticker" in frame.columns:
        frame["ticker"] = frame["ticker"].astype(str)
    return frame
