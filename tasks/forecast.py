"""Forecast with a registered model: load it from the registry, forecast, write Parquet atomically.

The batch's MLflow run (experiment `tickerflow-forecasts`) and its Prefect table are the daily flow's
reporting (`publish_forecasts` in `tickerflow.reporting`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from prefect import task

from tickerflow.run_log import run_logger
from tickerflow.tasks.plurals import counted
from tickerflow.tasks.retries import retry_unless
from tickerflow.tracking.home import tickerflow_home
from tickerflow.tracking.models import load_model as load_registered_model
from tickerflow_model.atomic_io import write_bytes_atomic, write_file_atomic
from tickerflow_model.baselines import BaselineForecaster
from tickerflow_model.config import ForecastConfig
from tickerflow_model.errors import ModelNotFound
from tickerflow_model.quantiles import quantile_columns
from tickerflow_model.redaction import redact_uri


def output_columns(levels: tuple[float, ...]) -> list[str]:
    """A forecast file's columns: the quantile columns of the model's levels (q05 .. q95 by default, in price
    units) come between forecast_close and model_version."""
    return ["ticker", "date", "horizon", "forecast_close", *quantile_columns(levels), "model_version"]


@dataclass
class ForecastBatch:
    frame: pd.DataFrame  # output_columns(levels)
    skipped: dict[str, str] = field(default_factory=dict)  # ticker -> why it has no forecast
    levels: tuple[float, ...] = ()  # the model's quantile levels


@dataclass
class LoadedModel:
    uri: str
    version: str
    pyfunc: Any  # the loaded pyfunc (`tickerflow.tracking.models.load_model`): predict, unwrap_python_model

    @property
    def min_rows(self) -> int:
        return self.pyfunc.unwrap_python_model().forecaster.min_rows

    @property
    def levels(self) -> tuple[float, ...]:
        """The quantile levels the model forecasts, from its own spec."""
        forecaster = self.pyfunc.unwrap_python_model().forecaster
        spec = forecaster.spec
        return tuple(spec.levels if isinstance(forecaster, BaselineForecaster) else spec.quantiles)

    @property
    def no_forecast_reason(self) -> str:
        forecaster = self.pyfunc.unwrap_python_model().forecaster
        if isinstance(forecaster, BaselineForecaster) and forecaster.spec.name == "static_quantile":
            return "not a ticker the static-quantile model was fit on"
        return f"fewer than {self.min_rows} rows with a price, the model needs {self.min_rows}"


@task(name="load-model", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless(ModelNotFound))
def load_model(config: ForecastConfig) -> LoadedModel:
    version, model = load_registered_model(config.model_uri)
    run_logger().info("loaded %s (version %s)", config.model_uri, version or "n/a")
    return LoadedModel(config.model_uri, version, model)


def forecast_batch(model: LoadedModel, prices: pd.DataFrame, dropped: dict[str, int]) -> ForecastBatch:
    """Plain function behind the task: forecast every ticker with a full window; say why the others have none."""
    skipped = {t: f"{n} rows of history, the model needs {model.min_rows}" for t, n in dropped.items()}
    forecasts = model.pyfunc.predict(prices)
    assert isinstance(forecasts, pd.DataFrame)  # GRUPricePyfunc.predict's frame; MLflow types any model's answer
    for ticker in sorted(set(prices["ticker"].astype(str)) - set(forecasts["ticker"])):
        skipped[ticker] = model.no_forecast_reason
    # Validation refuses non-finite prices; this keeps any NaN/inf forecast out of the store all the same.
    numeric = forecasts.select_dtypes("number").drop(columns=["horizon"], errors="ignore")
    bad = ~np.isfinite(numeric.to_numpy(np.float64)).all(axis=1)
    for ticker in sorted(set(forecasts.loc[bad, "ticker"].astype(str))):
        skipped[ticker] = "the model's forecast is not a finite number (check the ticker's recent prices)"
    forecasts = forecasts[~forecasts["ticker"].astype(str).isin(list(skipped))].reset_index(drop=True)
    forecasts["model_version"] = model.version
    levels = model.levels
    return ForecastBatch(forecasts[output_columns(levels)], skipped, levels)


@task(name="forecast")
def forecast_prices(model: LoadedModel, prices: pd.DataFrame, dropped: dict[str, int] | None = None) -> ForecastBatch:
    batch = forecast_batch(model, prices, dropped or {})
    logger = run_logger()
    for ticker, why in batch.skipped.items():
        logger.warning("skipped ticker %r: %s", ticker, why)
    logger.info(
        "forecast %s for %s", counted(len(batch.frame), "row"), counted(batch.frame["ticker"].nunique(), "ticker")
    )
    return batch


def output_location(out: str) -> str:
    """Where `out` is written: an fsspec URI as given; a relative path under TICKERFLOW_HOME.

    A deployment runs in whatever folder its worker started in, so a relative path there would land
    anywhere; the command line resolves `--out` against the user's folder before it gets here.
    """
    if "://" in out:
        return out
    path = Path(out).expanduser()
    return str(path if path.is_absolute() else tickerflow_home() / path)


def write_parquet_atomic(frame: pd.DataFrame, out: str) -> str:
    """Readers see the old file or the new one, never half of one (see `write_bytes_atomic`)."""
    location = output_location(out)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    if location.startswith("file://") or "://" not in location:
        path = Path(location.removeprefix("file://")).resolve()
        write_file_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
        return str(path)
    fs, path = fsspec.core.url_to_fs(location)
    write_bytes_atomic(fs, path, buffer.getvalue())
    return location


@dataclass(frozen=True)
class WrittenForecasts:
    """What `write_forecasts` wrote: where, how many rows, which tickers, and the model that forecast them."""

    out: str
    rows: int
    tickers: tuple[str, ...]
    skipped: dict[str, str]  # ticker -> why it has no forecast
    model_uri: str
    model_version: str


@task(name="write-forecasts")
def write_forecasts(batch: ForecastBatch, model: LoadedModel, config: ForecastConfig) -> WrittenForecasts:
    path = write_parquet_atomic(batch.frame, config.out)
    run_logger().info("wrote %s to %s", counted(len(batch.frame), "forecast"), redact_uri(path))
    return WrittenForecasts(
        out=str(path),
        rows=len(batch.frame),
        tickers=tuple(sorted(batch.frame["ticker"].unique())),
        skipped=dict(batch.skipped),
        model_uri=model.uri,
        model_version=model.version,
    )
