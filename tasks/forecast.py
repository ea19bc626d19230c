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
from tickerflow.tasks.retries import retry_unless
from tickerflow.tracking.home import tickerflow_home
from tickerflow.tracking.models import input_columns, version_tags
from tickerflow.tracking.models import load_model as load_registered_model
from tickerflow.tracking.registry import champion_universes
from tickerflow_model.atomic_io import write_bytes_atomic, write_file_atomic
from tickerflow_model.baselines import BaselineForecaster
from tickerflow_model.calibration import apply_scales
from tickerflow_model.config import ForecastConfig
from tickerflow_model.errors import ModelInputError, ModelNotFound
from tickerflow_model.forecaster import forecast_columns
from tickerflow_model.live import LEVELS_COLUMN, adaptive_log_factors
from tickerflow_model.names import CHAMPION_ALIAS
from tickerflow_model.quantiles import levels_text, quantile_columns
from tickerflow_model.redaction import redact_uri
from tickerflow_model.universe import UNIVERSE_TAG, Universe, serving_model
from tickerflow_model.words import counted


def output_columns(levels: tuple[float, ...]) -> list[str]:
    """A forecast file's columns: the quantile columns of the model's levels (q01 .. q99 by default), in the
    units of `price_column` (the input's close) on the base day, `base_price`."""
    return [*forecast_columns(levels), "model_version"]


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
    universe: Universe | None = None  # what the version was trained on, when its tags say

    @property
    def name(self) -> str:
        """The registered model's name; '' for a model outside the registry."""
        if not self.uri.startswith("models:/") or not self.version:
            return ""
        return self.uri[len("models:/") :].partition("@")[0].split("/")[0]

    @property
    def takes(self) -> list[str]:
        """The input columns of the model's signature: what it is handed (MLflow warns of any other)."""
        return input_columns(self.pyfunc.unwrap_python_model().forecaster)

    @property
    def reads(self) -> list[str]:
        """The columns the model cannot forecast without (`close`, which forecasts are priced in, is optional)."""
        return [c for c in self.takes if c != "close"]

    @property
    def min_rows(self) -> int:
        return self.pyfunc.unwrap_python_model().forecaster.min_rows

    @property
    def levels(self) -> tuple[float, ...]:
        """The quantile levels the model forecasts, from its own spec."""
        spec = self.pyfunc.unwrap_python_model().forecaster.spec
        return tuple(getattr(spec, "levels", None) or spec.quantiles)  # a baseline's and a blend's, or the GRU's

    @property
    def no_forecast_reason(self) -> str:
        forecaster = self.pyfunc.unwrap_python_model().forecaster
        if isinstance(forecaster, BaselineForecaster) and forecaster.spec.name == "static_quantile":
            return "not a ticker the static-quantile model was fit on"
        return f"fewer than {self.min_rows} rows with a price, the model needs {self.min_rows}"


def model_serving(prices: pd.DataFrame, source: str | None = None) -> tuple[str, str | None]:
    """`tickerflow_model.universe.serving_model` of these prices' tickers and columns, over the registry."""
    tickers = set(prices["ticker"].astype(str).unique())
    columns = {str(c) for c in prices.columns if prices[c].notna().any()}
    return serving_model(tickers, columns, champion_universes(), source)


@task(name="choose-model")
def serving_champion(prices: pd.DataFrame) -> str:
    """The champion that serves these prices: of the registered model trained on the most of their tickers,
    with columns they have; the URI of `tickerflow-gru`'s champion when none is."""
    name, why = model_serving(prices)
    if why:
        run_logger().info("%s", why)
    return f"models:/{name}@{CHAMPION_ALIAS}"


@task(name="load-model", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless(ModelNotFound))
def load_model(uri: str) -> LoadedModel:
    version, model = load_registered_model(uri)
    run_logger().info("loaded %s (version %s)", uri, version or "n/a")
    loaded = LoadedModel(uri, version, model)
    if loaded.name:
        loaded.universe = Universe.from_tag(version_tags(loaded.name, version).get(UNIVERSE_TAG))
    return loaded


def price_column_of(model, prices: pd.DataFrame, forecasts: pd.DataFrame | None = None) -> str:
    """The price the forecasts are in: the column they name (`price_column`, the input's close); for a version
    from before forecasts named it, the price it was trained on (`close` or `adj_close`), as its bundle says."""
    if forecasts is not None and "price_column" in forecasts and len(forecasts):
        return str(forecasts["price_column"].iloc[0])
    try:
        column = model.pyfunc.unwrap_python_model().forecaster.spec.price_column
    except AttributeError:  # a model without the GRU bundle (a baseline pyfunc)
        column = "close"
    return column if column in prices.columns else "close"


def forecast_batch(model: LoadedModel, prices: pd.DataFrame, dropped: dict[str, int]) -> ForecastBatch:
    """Plain function behind the task: forecast every ticker with a full window that the model was trained on;
    say why the others have none. Data without a column the model reads is refused, naming the columns."""
    missing = [c for c in model.reads if c not in prices.columns or prices[c].isna().all()]
    if missing:
        raise ModelInputError(
            f"{model.uri} (version {model.version}) reads {', '.join(missing)}, which this data lacks: forecast "
            "with a model trained on the columns it has (--model), or add them"
        )
    skipped = {t: f"{n} rows of history, the model needs {model.min_rows}" for t, n in dropped.items()}
    if model.universe is not None and model.universe.complete:
        untrained = sorted(set(prices["ticker"].astype(str)) - set(model.universe.tickers) - set(skipped))
        skipped |= {
            t: f"not among the {model.universe.count} tickers version {model.version} was trained on" for t in untrained
        }
        prices = prices[~prices["ticker"].astype(str).isin(untrained)]
    present = [c for c in model.takes if c in prices.columns]
    forecasts = model.pyfunc.predict(prices[present])
    assert isinstance(forecasts, pd.DataFrame)  # GRUPricePyfunc.predict's frame; MLflow types any model's answer
    for ticker in sorted(set(prices["ticker"].astype(str)) - set(forecasts["ticker"])):
        skipped[ticker] = model.no_forecast_reason
    # Validation refuses non-finite prices; this keeps any NaN/inf forecast out of the store all the same.
    numeric = forecasts.select_dtypes("number").drop(columns=["horizon"], errors="ignore")
    bad = ~np.isfinite(numeric.to_numpy(np.float64)).all(axis=1)
    for ticker in sorted(set(forecasts.loc[bad, "ticker"].astype(str))):
        skipped[ticker] = "the model's forecast is not a finite number (check the ticker's recent prices)"
    forecasts = forecasts[~forecasts["ticker"].astype(str).isin(list(skipped))].reset_index(drop=True)
    if "base_price" not in forecasts:  # a version from before forecasts said their base: its own price column
        column = price_column_of(model, prices, forecasts)
        last = prices.sort_values("date").groupby(prices["ticker"].astype(str))[column].last()
        forecasts = forecasts.assign(base_price=forecasts["ticker"].astype(str).map(last), price_column=column)
    forecasts["model_version"] = model.version
    levels = model.levels
    return ForecastBatch(forecasts[output_columns(levels)], skipped, levels)


@task(name="forecast")
def forecast_prices(model: LoadedModel, prices: pd.DataFrame, dropped: dict[str, int] | None = None) -> ForecastBatch:
    batch = forecast_batch(model, prices, dropped or {})
    logger = run_logger()
    for line in skipped_lines(batch.skipped):
        logger.warning("%s", line)
    logger.info(
        "forecast %s for %s", counted(len(batch.frame), "row"), counted(batch.frame["ticker"].nunique(), "ticker")
    )
    return batch


def adapted_batch(batch: ForecastBatch, served: pd.DataFrame, model: LoadedModel, gamma: float) -> ForecastBatch:
    """The batch with adaptive conformal margins (`live.adaptive_log_factors`): each ticker's and step's
    central intervals stretched about the median by the factor the misses of the model version's served
    forecasts (`served`: `live.realized_rows`) call for. Unchanged with `gamma` 0, a model outside the
    registry or no outcome yet."""
    if gamma == 0 or not model.name or batch.frame.empty or served.empty:
        return batch
    levels = batch.levels
    mine = served[
        (served["model_name"] == model.name)
        & (served["model_version"].astype(str) == str(model.version))
        & (served[LEVELS_COLUMN].astype(str) == levels_text(levels))
    ]
    factors = adaptive_log_factors(mine, levels, gamma)
    if factors.empty:
        return batch
    columns = [c for c in factors.columns if c not in ("ticker", "horizon")]
    frame = batch.frame.merge(factors, on=["ticker", "horizon"], how="left")
    scales = np.exp(frame[columns].fillna(0.0).to_numpy(np.float64))  # (N, P), widest interval first
    qcols = quantile_columns(levels)
    base = frame["base_price"].to_numpy(np.float64)[:, None]
    stretched = apply_scales(np.log(frame[qcols].to_numpy(np.float64) / base), scales, levels)
    frame[qcols] = base * np.exp(stretched)
    adapted = ForecastBatch(frame[batch.frame.columns], batch.skipped, levels)
    run_logger().info(
        "adaptive conformal margins (gamma %g) from %s with outcomes: interval factors %.2f to %.2f",
        gamma,
        counted(len(mine), "served forecast"),
        float(scales.min()),
        float(scales.max()),
    )
    return adapted


@task(name="adaptive-margins")
def adapt_intervals(batch: ForecastBatch, served: pd.DataFrame, model: LoadedModel, gamma: float) -> ForecastBatch:
    return adapted_batch(batch, served, model, gamma)


def skipped_lines(skipped: dict[str, str], shown: int = 8) -> list[str]:
    """One line per reason: `skipped 2 tickers (FB, TSLA): not among the 4 tickers version 3 was trained on`."""
    by_reason: dict[str, list[str]] = {}
    for ticker, why in skipped.items():
        by_reason.setdefault(why, []).append(ticker)
    lines = []
    for why, tickers in by_reason.items():
        more = f" and {len(tickers) - shown} more" if len(tickers) > shown else ""
        lines.append(f"skipped {counted(len(tickers), 'ticker')} ({', '.join(sorted(tickers)[:shown])}{more}): {why}")
    return lines


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
