"""`tickerflow replay`: months of the production loop in minutes, over history.

For each trading day of the data between `start` and `end`, the daily flow (`batch_forecast`) runs as
of that day: its input is the data cut at that day, so it scores the forecasts whose closes have
arrived, forecasts the next days and tidies up exactly as it would have. Every `retrain_every`
trading days (0: never) the training pipeline runs first, on the data up to that day; it also runs
before the first day when the model has no champion yet. Each day's runs are child flow runs of one
`replay` flow run, so with `PREFECT_API_URL` set they appear together in the Prefect UI.

The day's cut is written to `TICKERFLOW_HOME/replay/as_of.parquet`, one file replaced each day. gc runs
after each day with no grace period (`retention.grace_minutes=0`): a replay is expected to own its home.
Its batch-forecast runs go to an MLflow experiment of its own (`replay_experiment`), never the daily flow's:
the gc after each day reads that experiment alone, and a production gc never sees the replay's runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow

from tickerflow.flows.batch_forecast import batch_forecast
from tickerflow.flows.train_pipeline import train_pipeline
from tickerflow.reporting.run_labels import replay_run_names
from tickerflow.reporting.summaries import DegradationEvent, ReplayedDay, ReplaySummary, Retraining
from tickerflow.run_log import run_logger
from tickerflow.tasks.forecast import model_serving
from tickerflow.tracking.home import home_subdir
from tickerflow.tracking.registry import current_champion
from tickerflow.tracking.store import EXPERIMENT
from tickerflow_model.atomic_io import write_file_atomic
from tickerflow_model.config import (
    REPLAY_RETRAIN_EVERY,
    ForecastStoreConfig,
    MonitorConfig,
    PipelineConfig,
    RetentionConfig,
)
from tickerflow_model.errors import ConfigError, TickerflowError
from tickerflow_model.names import CHAMPION_ALIAS
from tickerflow_model.price_files import load_prices


def replay_days(prices: pd.DataFrame, start: str, end: str) -> list[pd.Timestamp]:
    """The trading days (days with a price in the data) from `start` to `end`, inclusive."""
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    if last < first:
        raise ConfigError(f"replay end {end} is before its start {start}")
    dates = pd.to_datetime(prices["date"])
    days = sorted(d for d in dates.unique() if first <= d <= last)
    if not days:
        raise ConfigError(
            f"the data has no trading day between {start} and {end} (it covers {dates.min():%Y-%m-%d} to {dates.max():%Y-%m-%d})"
        )
    return [pd.Timestamp(d) for d in days]


def write_cut(prices: pd.DataFrame, day: pd.Timestamp, path: Path) -> Path:
    """The data as it was known at the end of `day`."""
    cut = prices[pd.to_datetime(prices["date"]) <= day]
    return write_file_atomic(path, lambda tmp: cut.to_parquet(tmp, index=False))


@flow(name="replay", log_prints=True)
def replay(
    data: str,
    start: str,
    end: str,
    retrain_every: int = REPLAY_RETRAIN_EVERY,
    config: PipelineConfig = PipelineConfig(),
    store: ForecastStoreConfig = ForecastStoreConfig(),
    monitor: MonitorConfig = MonitorConfig(),
    retention: RetentionConfig = RetentionConfig(grace_minutes=0),
    gc: bool = True,
) -> ReplaySummary:
    if retrain_every < 0:
        raise ConfigError(f"retrain_every must be >= 0 (0: never), got {retrain_every}")
    logger = run_logger()
    prices, _, _ = load_prices(data, config.ingest.ticker, splits=config.ingest.splits)
    days = replay_days(prices, start, end)
    folder = home_subdir("replay")
    cut_path, out = folder / "as_of.parquet", folder / "forecasts.parquet"
    # named once, from the replay's data: each day trains on a cut file whose name says nothing
    model_name = config.register_.model_name or replay_model(prices, data)
    train_config = config.model_copy(
        update={
            "ingest": config.ingest.model_copy(update={"source": str(cut_path)}),
            "register_": config.register_.model_copy(update={"model_name": model_name}),
        }
    )
    days_out, retrains, events = [], [], []
    for i, day in enumerate(days):
        write_cut(prices, day, cut_path)
        train_name, forecast_name = replay_run_names(data, model_name, day)
        if current_champion(model_name) is None or (retrain_every and i > 0 and i % retrain_every == 0):
            retrains.append(retrain(train_config, day, train_name))
        result = batch_forecast.with_options(flow_run_name=forecast_name)(
            data=str(cut_path),
            out=str(out),
            model_uri=f"models:/{model_name}@{CHAMPION_ALIAS}",
            store=store,
            monitor=monitor,
            retention=retention,
            gc=gc,
            splits=config.ingest.splits,
            experiment=replay_experiment(model_name),
        )
        d = result.degradation
        days_out.append(ReplayedDay(f"{day:%Y-%m-%d}", result.model_version, result.scored_forecasts, d.streak))
        if d.event_id:
            events.append(DegradationEvent(f"{day:%Y-%m-%d}", d.event_id, d.version, d.reasons, d.latest))
        logger.info(
            "replayed %s: champion v%s, %d forecasts scored, %d day(s) past a threshold%s",
            f"{day:%Y-%m-%d}",
            result.model_version,
            result.scored_forecasts,
            d.streak,
            "; degradation event emitted" if d.event_id else "",
        )
    return ReplaySummary(tuple(days_out), tuple(retrains), tuple(events))


def replay_experiment(model_name: str) -> str:
    """The MLflow experiment of a replay's batch-forecast runs: one per model it replays, apart from the daily
    flow's `tickerflow-forecasts`."""
    return f"{EXPERIMENT}-replay-{model_name}"


def replay_model(prices: pd.DataFrame, data: str) -> str:
    """The model a replay of `data` forecasts with and trains: the one whose champion serves its tickers, else
    the one a training run on `data` would register under."""
    return model_serving(prices, data)[0]


def retrain(config: PipelineConfig, day: pd.Timestamp, run_name: str) -> Retraining:
    """The training pipeline on the data up to `day`; it must leave a champion to forecast with."""
    summary = train_pipeline.with_options(flow_run_name=run_name)(config)
    if current_champion(summary.model_name) is None:
        raise TickerflowError(f"training on the data up to {day:%Y-%m-%d} gave no champion: {summary.reason}")
    return Retraining(f"{day:%Y-%m-%d}", summary.model_version, summary.promoted)
