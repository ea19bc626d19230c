"""Batch forecast, the daily loop: score what was forecast, then forecast, store, tidy up.

latest prices -> live scores of the stored forecasts whose closes have arrived (MLflow monitoring
runs, a `live-performance` artifact, `tickerflow.champion.degraded` when the champion degrades) ->
validated -> the champion (of `model_uri`, or of the registered model trained on these tickers) -> its intervals
stretched by adaptive conformal margins from the outcomes of what it served -> Parquet forecasts, appended to the forecast store, logged to MLflow ->
gc (retention).

Tickers with too little history for the model's window are reported and skipped; when none is
usable the run fails with the validation summary naming them.
"""

from __future__ import annotations

from prefect import flow

from tickerflow.reporting import log_live_metrics, log_validation, publish_forecasts
from tickerflow.reporting.lifecycle import end_runs_failed, end_runs_stopped
from tickerflow.reporting.run_labels import forecast_run_name, tag_forecast_run
from tickerflow.reporting.summaries import ForecastSummary
from tickerflow.tasks.forecast import (
    adapt_intervals,
    forecast_prices,
    load_model,
    price_column_of,
    serving_champion,
    write_forecasts,
)
from tickerflow.tasks.forecast_store import append_forecasts
from tickerflow.tasks.ingest import ingest
from tickerflow.tasks.monitor import check_degradation, model_identity, score_live
from tickerflow.tasks.retention import collect_garbage
from tickerflow.tasks.validate import require_valid, validate
from tickerflow.tracking.store import FORECAST_EXPERIMENT
from tickerflow_model.config import (
    ForecastConfig,
    ForecastStoreConfig,
    IngestConfig,
    MonitorConfig,
    RetentionConfig,
    SplitPolicy,
    ValidateConfig,
    field_default,
)


@flow(
    name="batch_forecast",
    flow_run_name=forecast_run_name,
    on_running=[tag_forecast_run],
    on_failure=[end_runs_failed],
    on_crashed=[end_runs_stopped],
    on_cancellation=[end_runs_stopped],
    log_prints=True,
)
def batch_forecast(
    data: str = IngestConfig().source,
    out: str = "forecasts.parquet",
    model_uri: str | None = None,
    store: ForecastStoreConfig = ForecastStoreConfig(),
    monitor: MonitorConfig = MonitorConfig(),
    retention: RetentionConfig = RetentionConfig(),
    gc: bool = True,
    splits: SplitPolicy = field_default(IngestConfig, "splits"),
    adaptive_gamma: float = field_default(ForecastConfig, "adaptive_gamma"),
    experiment: str = FORECAST_EXPERIMENT,
) -> ForecastSummary:
    config = ForecastConfig(model_uri=model_uri, out=out, adaptive_gamma=adaptive_gamma)
    raw = ingest(IngestConfig(source=data, splits=splits))
    live = score_live(raw.frame, store, monitor)
    model = load_model(config.model_uri or serving_champion(raw.frame))
    name, forecaster = model_identity(model)
    monitoring_runs = log_live_metrics(live, name, model.version)
    degradation = check_degradation(live, name, model.version, monitor, monitoring_runs)
    report = validate(raw.frame, ValidateConfig(), model.min_rows, raw.source_hash)
    log_validation(report)
    prices = require_valid(report)
    forecasts = forecast_prices(model, prices, report.dropped_tickers)
    forecasts = adapt_intervals(forecasts, live.rows, model, config.adaptive_gamma)
    written = write_forecasts(forecasts, model, config)
    append_forecasts(
        forecasts.frame,
        prices,
        name,
        model.version,
        forecaster,
        price_column_of(model, prices, forecasts.frame),
        forecasts.levels,
        store,
    )
    run = publish_forecasts(forecasts, written, data, experiment)
    tidied = collect_garbage(retention, store, experiment) if gc else None
    return ForecastSummary(written, run.run_id, live.scored_forecasts, degradation, tidied)
