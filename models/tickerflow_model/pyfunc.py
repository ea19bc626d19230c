"""MLflow pyfunc wrapper: raw recent prices in, price forecasts out.

This package travels inside every registered model (`code_paths`), so the model loads with
`mlflow.pyfunc.load_model` where tickerflow is not installed.
"""

from __future__ import annotations

import pandas as pd
from mlflow.pyfunc import PythonModel

from .baselines import BaselineForecaster
from .blend import BlendForecaster
from .canonical_prices import wall_clock
from .forecaster import Forecaster

BUNDLE_ARTIFACT = "bundle"


class GRUPricePyfunc(PythonModel):
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


class BlendPyfunc(GRUPricePyfunc):
    """The GRU and garch averaged (`blend.BlendForecaster`), with the same input and output as the GRU."""

    @staticmethod
    def load_forecaster(folder: str):
        return BlendForecaster.load(folder)


class BaselinePyfunc(GRUPricePyfunc):
    """A distribution baseline (static/rolling quantiles, EWMA) with the same input and output as the GRU."""

    @staticmethod
    def load_forecaster(folder: str):
        return BaselineForecaster.load(folder)


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Accept the canonical long frame, tolerating JSON-served inputs (string dates, any case)."""
    frame = frame.rename(columns={c: str(c).strip().lower().replace(" ", "_") for c in frame.columns})
    if "date" in frame.columns:
        frame["date"] = _dates(frame["date"])
    if "ticker" in frame.columns:
        frame["ticker"] = frame["ticker"].astype(str)
    return frame


def _dates(values: pd.Series) -> pd.Series:
    """ISO-8601 strings (a pd.read_csv frame, a JSON request) or datetimes -> naive datetimes.

    A value with a UTC offset keeps its wall-clock day: `2020-01-02T00:00+09:00` is 2020-01-02.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    text = wall_clock(values.astype("string").str.strip())  # the day as written, as ingest reads it
    try:
        return pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError) as exc:
        example = text.dropna().iloc[0] if text.notna().any() else None
        raise ValueError(f"column 'date' must hold ISO dates (YYYY-MM-DD) or datetimes, got e.g. {example!r}") from exc
