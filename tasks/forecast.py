"""Forecast with a registered model: load it from the registry, forecast, write Parquet atomically."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from tasks.tracking import use_tracking


@dataclass(frozen=True)
class ForecastConfig:
    model_uri: str = "models:/tickerflow-gru@champion"
    out: str = "forecasts.parquet"


@dataclass
class LoadedModel:
    uri: str
    version: str
    pyfunc: object

    @property
    def min_rows(self) -> int:
        return self.pyfunc.unwrap_python_model().forecaster.spec.window.lookback + 1


def resolve_version(uri: str) -> str:
    """The registry version behind a `models:/NAME@ALIAS` or `models:/NAME/N` URI ('' otherwise)."""
    if not uri.startswith("models:/"):
        return ""
    name, _, ref = uri[len("models:/"):].partition("@")
    client = use_tracking()
    if ref:
        return str(client.get_model_version_by_alias(name, ref).version)
    return uri.rstrip("/").rsplit("/", 1)[-1]


@task(name="load-model", retries=2, retry_delay_seconds=[2, 10])
def load_model(config: ForecastConfig) -> LoadedModel:
    use_tracking()
    version = resolve_version(config.model_uri)
    model = mlflow.pyfunc.load_model(config.model_uri)
    get_run_logger().info("loaded %s (version %s)", config.model_uri, version or "n/a")
    return LoadedModel(config.model_uri, version, model)


@task(name="forecast")
def forecast_prices(model: LoadedModel, prices: pd.DataFrame) -> pd.DataFrame:
    forecasts = model.pyfunc.predict(prices)
    forecasts["model_version"] = model.version
    get_run_logger().info("forecast %d rows for %d tickers", len(forecasts), forecasts["ticker"].nunique())
    return forecasts


def write_parquet_atomic(frame: pd.DataFrame, out: str) -> Path:
    path = Path(out).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@task(name="write-forecasts")
def write_forecasts(forecasts: pd.DataFrame, model: LoadedModel, config: ForecastConfig) -> dict:
    path = write_parquet_atomic(forecasts, config.out)
    get_run_logger().info("wrote %d forecasts to %s", len(forecasts), path)
    return {"out": str(path), "rows": len(forecasts), "model_uri": model.uri, "model_version": model.version}
