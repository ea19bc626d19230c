"""Batch forecast: latest prices -> validated -> champion model -> Parquet forecasts, logged to MLflow.

Tickers with too little history for the model's window are reported and skipped; when none is
usable the run fails with the validation summary naming them.
"""

from __future__ import annotations

from prefect import flow

from flows.ui_labels import forecast_run_name, tag_forecast_run
from tasks.forecast import ForecastConfig, forecast_prices, load_model, publish_forecasts, write_forecasts
from tasks.ingest import IngestConfig, ingest
from tasks.validate import ValidateConfig, require_valid, validate


@flow(name="batch_forecast", flow_run_name=forecast_run_name, on_running=[tag_forecast_run], log_prints=True)
def batch_forecast(
    data: str = IngestConfig.source,
    out: str = "forecasts.parquet",
    model_uri: str = ForecastConfig.model_uri,
) -> dict:
    config = ForecastConfig(model_uri=model_uri, out=out)
    raw = ingest(IngestConfig(source=data))
    model = load_model(config)
    report = validate(raw.frame, ValidateConfig(), model.min_rows, raw.source_hash)
    prices = require_valid(report)
    forecasts = forecast_prices(model, prices, report.dropped_tickers)
    result = write_forecasts(forecasts, model, config)
    return publish_forecasts(forecasts, result, data)
