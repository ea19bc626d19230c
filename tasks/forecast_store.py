"""The forecast store: every batch forecast, appended to a partitioned Parquet dataset.

Layout: `<root>/base_date=YYYY-MM-DD/model=<name>.v<version>.parquet`, one file per (base day, model version),
written atomically (`tickerflow_model.atomic_io.write_bytes_atomic`), so a rerun of the same day replaces its file instead of duplicating rows.
The root is `TICKERFLOW_HOME/forecast_store` unless `uri` names another (any fsspec URI: s3://...).
Each row: `ticker, base_date, price_column, base_close, date, horizon, forecast_close`, the quantile columns of
the model's levels (`q05..q95` by default), `quantile_levels` (those levels as text, '' for a point forecast),
`model_name, model_version, forecaster, flow_run_id, created_at`. Ticker symbols are data, never path fragments.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import runtime, task

from tickerflow.run_log import run_logger
from tickerflow.tracking.home import home_subdir
from tickerflow_model.atomic_io import write_bytes_atomic
from tickerflow_model.config import ForecastStoreConfig
from tickerflow_model.live import LEVELS_COLUMN
from tickerflow_model.quantiles import levels_text, quantile_columns
from tickerflow_model.words import counted

# the quantile columns of the model's levels come between forecast_close and LEVELS_COLUMN
FORECAST_COLUMNS = ["ticker", "base_date", "price_column", "base_close", "date", "horizon", "forecast_close"]
META_COLUMNS = [LEVELS_COLUMN, "model_name", "model_version", "forecaster", "flow_run_id", "created_at"]


def store_columns(levels: tuple[float, ...] = ()) -> list[str]:
    return [*FORECAST_COLUMNS, *quantile_columns(levels), *META_COLUMNS]


_PARTITION = re.compile(r"base_date=(\d{4}-\d{2}-\d{2})$")


def store_location(config: ForecastStoreConfig) -> tuple[fsspec.AbstractFileSystem, str]:
    uri = config.uri or str(home_subdir("forecast_store"))
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path.rstrip("/")


def store_rows(
    forecasts: pd.DataFrame,
    prices: pd.DataFrame,
    model_name: str,
    model_version: str,
    forecaster: str,
    price_column: str = "close",
    levels: tuple[float, ...] = (),
) -> pd.DataFrame:
    """Forecast rows with what scoring needs later: the base day, the price the model forecasts
    (`close` or `adj_close`), its value on the base day (the naive forecast) and the model's quantile
    `levels` (the forecasts carry their columns; () for a point forecast)."""
    closes = prices.assign(ticker=prices["ticker"].astype(str)).sort_values("date")
    last = closes.dropna(subset=[price_column]).groupby("ticker").tail(1)[["ticker", "date", price_column]]
    last = last.rename(columns={"date": "base_date", price_column: "base_close"})
    out = forecasts.assign(ticker=forecasts["ticker"].astype(str)).merge(last, on="ticker", how="left")
    out["price_column"] = price_column
    out["model_name"] = model_name
    out["model_version"] = str(model_version)
    out["forecaster"] = forecaster
    out["flow_run_id"] = str(runtime.flow_run.id or "")
    out["created_at"] = pd.Timestamp(datetime.now(timezone.utc)).tz_localize(None)
    missing = [c for c in quantile_columns(levels) if c not in out.columns]
    if missing:
        raise ValueError(f"forecasts at levels {list(levels)} lack the column(s) {missing}")
    out[LEVELS_COLUMN] = levels_text(levels)
    return out[store_columns(levels)]


def append_rows(rows: pd.DataFrame, config: ForecastStoreConfig) -> list[str]:
    """Write one file per base day; returns the paths written."""
    fs, root = store_location(config)
    written = []
    for base_date, part in rows.groupby(rows["base_date"].dt.strftime("%Y-%m-%d"), sort=True):
        folder = f"{root}/base_date={base_date}"
        fs.makedirs(folder, exist_ok=True)
        model = f"{part['model_name'].iloc[0]}.v{part['model_version'].iloc[0] or 'none'}"
        version = re.sub(r"[^0-9A-Za-z_.-]", "_", model)
        final = f"{folder}/model={version}.parquet"
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), buffer)
        write_bytes_atomic(fs, final, buffer.getvalue().to_pybytes())
        written.append(final)
    return written


def read_store(config: ForecastStoreConfig, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Every stored forecast (with base day on or after `since`), `store_columns` of each model's levels
    (a model without a level has NaN in its column); empty when none."""
    fs, root = store_location(config)
    files = []
    if fs.exists(root):
        for folder in fs.ls(root, detail=False):
            m = _PARTITION.search(folder.rstrip("/"))
            if m and (since is None or pd.Timestamp(m.group(1)) >= since):
                files += [f for f in fs.ls(folder, detail=False) if f.rsplit("/", 1)[-1].startswith("model=")]
    if not files:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in store_columns()})
    frames = []
    for f in sorted(files):
        with fs.open(f, "rb") as fh:
            frames.append(pq.read_table(fh).to_pandas())
    return pd.concat(frames, ignore_index=True)


def partitions(config: ForecastStoreConfig) -> list[tuple[pd.Timestamp, str]]:
    """(base day, folder) of every partition, oldest first."""
    fs, root = store_location(config)
    if not fs.exists(root):
        return []
    out = []
    for folder in fs.ls(root, detail=False):
        m = _PARTITION.search(folder.rstrip("/"))
        if m:
            out.append((pd.Timestamp(m.group(1)), folder))
    return sorted(out)


@task(name="append-to-forecast-store")
def append_forecasts(
    forecasts: pd.DataFrame,
    prices: pd.DataFrame,
    model_name: str,
    model_version: str,
    forecaster: str,
    price_column: str,
    levels: tuple[float, ...],
    config: ForecastStoreConfig,
) -> list[str]:
    rows = store_rows(forecasts, prices, model_name, model_version, forecaster, price_column, levels)
    written = append_rows(rows, config)
    run_logger().info("appended %s to the forecast store (%s)", counted(len(rows), "forecast"), ", ".join(written))
    return written
