"""Forecast with a registered model: load it from the registry, forecast, write Parquet atomically, publish."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from prefect import runtime, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from tasks.storage import write_file_atomic
from tasks.tracking import PREFECT_FLOW_RUN_TAG, end_run, experiment_id, run_url, use_tracking
from tickerflow_model.baselines import BaselineForecaster
from tickerflow_model.quantiles import QUANTILE_LEVELS, quantile_columns

FORECAST_EXPERIMENT = "tickerflow-forecasts"
# the quantile columns (q05 .. q95 by default, in price units) come between forecast_close and model_version
OUTPUT_COLUMNS = ["ticker", "date", "horizon", "forecast_close", *quantile_columns(QUANTILE_LEVELS), "model_version"]
QUANTILE_COLUMN = re.compile(r"q\d+")


@dataclass(frozen=True)
class ForecastConfig:
    model_uri: str = "models:/tickerflow-gru@champion"
    out: str = "forecasts.parquet"


@dataclass
class ForecastBatch:
    frame: pd.DataFrame  # OUTPUT_COLUMNS (the quantile columns the model gives)
    skipped: dict[str, str] = field(default_factory=dict)  # ticker -> why it has no forecast


@dataclass
class LoadedModel:
    uri: str
    version: str
    pyfunc: object

    @property
    def min_rows(self) -> int:
        forecaster = self.pyfunc.unwrap_python_model().forecaster
        if isinstance(forecaster, BaselineForecaster):
            return forecaster.min_rows
        return forecaster.spec.window.lookback + 1

    @property
    def no_forecast_reason(self) -> str:
        forecaster = self.pyfunc.unwrap_python_model().forecaster
        if isinstance(forecaster, BaselineForecaster) and forecaster.spec.name == "static_quantile":
            return "not a ticker the static-quantile model was fit on"
        return f"fewer than {self.min_rows} rows with a price, the model needs {self.min_rows}"


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


def forecast_batch(model: LoadedModel, prices: pd.DataFrame, dropped: dict[str, int]) -> ForecastBatch:
    """Plain function behind the task: forecast every ticker with a full window; say why the others have none."""
    skipped = {t: f"{n} rows of history, the model needs {model.min_rows}" for t, n in dropped.items()}
    forecasts = model.pyfunc.predict(prices)
    for ticker in sorted(set(prices["ticker"].astype(str)) - set(forecasts["ticker"])):
        skipped[ticker] = model.no_forecast_reason
    forecasts["model_version"] = model.version
    quantiles = [c for c in forecasts.columns if QUANTILE_COLUMN.fullmatch(str(c))]
    return ForecastBatch(forecasts[["ticker", "date", "horizon", "forecast_close", *quantiles, "model_version"]], skipped)


@task(name="forecast")
def forecast_prices(model: LoadedModel, prices: pd.DataFrame, dropped: dict[str, int] | None = None) -> ForecastBatch:
    batch = forecast_batch(model, prices, dropped or {})
    logger = get_run_logger()
    for ticker, why in batch.skipped.items():
        logger.warning("skipped ticker %r: %s", ticker, why)
    logger.info("forecast %d rows for %d tickers", len(batch.frame), batch.frame["ticker"].nunique())
    return batch


@task(name="write-forecasts")
def write_forecasts(batch: ForecastBatch, model: LoadedModel, config: ForecastConfig) -> dict:
    path = write_file_atomic(Path(config.out).expanduser().resolve(), lambda tmp: batch.frame.to_parquet(tmp, index=False))
    get_run_logger().info("wrote %d forecasts to %s", len(batch.frame), path)
    return {
        "out": str(path),
        "rows": len(batch.frame),
        "tickers": sorted(batch.frame["ticker"].unique()),
        "skipped": batch.skipped,
        "model_uri": model.uri,
        "model_version": model.version,
    }


@task(name="publish-forecasts")
def publish_forecasts(batch: ForecastBatch, result: dict, source: str) -> dict:
    """One MLflow run per batch (in its own experiment) holding the Parquet; a Prefect table artifact."""
    client = use_tracking()
    run = client.create_run(
        experiment_id(client, FORECAST_EXPERIMENT),
        tags={
            PREFECT_FLOW_RUN_TAG: str(runtime.flow_run.id or ""),
            "model_uri": result["model_uri"],
            "model_version": result["model_version"],
            "data.source": source,
            "skipped_tickers": ", ".join(f"{t} ({why})" for t, why in batch.skipped.items())[:5000] or "none",
        },
    )
    run_id = run.info.run_id
    client.log_metric(run_id, "forecast_rows", len(batch.frame))
    client.log_metric(run_id, "tickers_forecast", len(result["tickers"]))
    client.log_metric(run_id, "tickers_skipped", len(batch.skipped))
    client.log_artifact(run_id, result["out"], "forecasts")
    end_run(run_id, failed=False)
    table = batch.frame.assign(date=batch.frame["date"].dt.strftime("%Y-%m-%d"), forecast_close=batch.frame["forecast_close"].round(4))
    create_table_artifact(
        key="batch-forecast",
        table=table.to_dict(orient="records"),
        description=(
            f"Forecasts of {result['model_uri']} (version {result['model_version']}); MLflow run {run_url(run_id)}; "
            f"skipped: {', '.join(batch.skipped) or 'none'}"
        ),
    )
    return {**result, "mlflow_run_id": run_id}
