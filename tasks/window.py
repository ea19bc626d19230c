"""Window: per-ticker sliding windows, chronological split with a purge gap, Parquet per split.

The scaler is fit on training-period rows only. Windows are built and written one ticker at a time,
so memory stays bounded by the largest ticker. The dataset is identified by a hash of the source hash
and this config, written atomically, and reused when it already exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.logging import get_run_logger

from tasks.storage import atomic_directory, home_subdir, stable_hash
from tickerflow_model.windows import (
    FEATURES,
    Scaler,
    ScalerAccumulator,
    WindowSpec,
    compute_features,
    make_windows,
)

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


class WindowError(ValueError):
    """No ticker has enough history to window."""


@dataclass(frozen=True)
class WindowConfig:
    lookback: int = 60
    horizon: int = 1
    features: tuple[str, ...] = ("log_return",)
    price: str = "auto"  # "close", "adj_close", or "auto": adj_close when the source has it
    train_fraction: float = 0.70
    val_fraction: float = 0.15
    purge_gap: int = 5  # business days between splits that no window's target may fall in
    min_history: int = 252  # rows a ticker needs (about a year of trading days)
    compression: str = "zstd"

    def __post_init__(self) -> None:
        self.spec  # validates lookback, horizon, features
        if self.price not in ("auto", "close", "adj_close"):
            raise ValueError(f"price must be 'auto', 'close' or 'adj_close', got {self.price!r}")
        if not (0 < self.train_fraction < 1 and 0 < self.val_fraction < 1 and self.train_fraction + self.val_fraction < 1):
            raise ValueError(
                f"train_fraction and val_fraction must be in (0, 1) and sum below 1, got "
                f"{self.train_fraction} and {self.val_fraction}"
            )
        if self.purge_gap < 0:
            raise ValueError(f"purge_gap must be >= 0, got {self.purge_gap}")

    @property
    def spec(self) -> WindowSpec:
        return WindowSpec(lookback=self.lookback, horizon=self.horizon, features=tuple(self.features))

    @property
    def min_rows(self) -> int:
        """Rows a ticker needs: the configured minimum, and never fewer than one window per split."""
        per_split = self.horizon + self.purge_gap + 1
        structural = max(
            math.ceil((self.lookback + self.horizon + 1) / self.train_fraction),
            math.ceil(per_split / self.val_fraction),
            math.ceil(per_split / (1 - self.train_fraction - self.val_fraction)),
        )
        return max(self.min_history, structural)

    def to_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features)}


@dataclass(frozen=True)
class WindowDataset:
    path: str
    dataset_id: str
    manifest: dict = field(repr=False)

    def split_path(self, split: str) -> Path:
        return Path(self.path) / f"{split}.parquet"

    @property
    def spec(self) -> WindowSpec:
        return WindowSpec.from_dict(self.manifest["window_spec"])

    @property
    def scaler(self) -> Scaler:
        return Scaler.from_dict(self.manifest["scaler"])

    @property
    def price_column(self) -> str:
        return self.manifest["price_column"]


def choose_price_column(frame: pd.DataFrame, price: str) -> str:
    if price == "auto":
        # Unadjusted closes jump at stock splits; the adjusted series is what a model should see.
        return "adj_close" if "adj_close" in frame.columns else "close"
    if price not in frame.columns:
        raise WindowError(f"price column {price!r} requested but the data has only {list(frame.columns)}")
    return price


def split_bounds(n_rows: int, config: WindowConfig) -> tuple[int, int]:
    """Last row index of the train and of the validation period for a ticker with `n_rows` rows."""
    n_train = int(n_rows * config.train_fraction)
    n_val = int(n_rows * config.val_fraction)
    return n_train - 1, n_train + n_val - 1


def assign_splits(base_index: np.ndarray, n_rows: int, config: WindowConfig) -> dict[str, np.ndarray]:
    """Boolean masks over windows (by the index of their last input day).

    train: every input and target day is in the train period. val/test: targets lie entirely in
    that period, at least `purge_gap` days after the previous period ends.
    """
    train_end, val_end = split_bounds(n_rows, config)
    first_target = base_index + 1
    last_target = base_index + config.horizon
    return {
        "train": last_target <= train_end,
        "val": (first_target > train_end + config.purge_gap) & (last_target <= val_end),
        "test": first_target > val_end + config.purge_gap,
    }


def _ticker_arrays(g: pd.DataFrame, price_col: str, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    prices = g[price_col].to_numpy(np.float64)
    volume = g["volume"].to_numpy(np.float64) if "log_volume_change" in spec.features else None
    return prices, compute_features(prices, volume, spec.features)


def fit_window_scaler(frame: pd.DataFrame, config: WindowConfig, price_col: str) -> Scaler:
    """Standardization fit on training-period feature rows of every ticker, and nothing later."""
    spec = config.spec
    acc = ScalerAccumulator(spec.n_features)
    for _, g in frame.groupby("ticker", sort=True):
        train_end, _ = split_bounds(len(g), config)
        _, feats = _ticker_arrays(g, price_col, spec)
        acc.add(feats[:train_end])  # feature row j is day j+1: days 1..train_end
    return acc.finish()


def _schema(spec: WindowSpec) -> pa.Schema:
    return pa.schema(
        [
            ("ticker", pa.string()),
            ("base_date", pa.timestamp("ns")),
            ("base_price", pa.float64()),
            ("x", pa.list_(pa.float32(), spec.lookback * spec.n_features)),
            ("y", pa.list_(pa.float32(), spec.horizon)),
        ]
    )


def ticker_windows(
    g: pd.DataFrame, config: WindowConfig, price_col: str, scaler: Scaler
) -> dict[str, pa.Table]:
    """One ticker's windows, as an Arrow table per split."""
    spec = config.spec
    prices, feats = _ticker_arrays(g, price_col, spec)
    x, y, base_index = make_windows(prices, scaler.transform(feats), spec.lookback, spec.horizon)
    masks = assign_splits(base_index, len(prices), config)
    dates = g["date"].to_numpy("datetime64[ns]")
    schema = _schema(spec)
    y_scaled = (y / scaler.target_scale).astype(np.float32)  # (N, H)
    out = {}
    for split, mask in masks.items():
        n = int(mask.sum())
        xs = np.ascontiguousarray(x[mask], dtype=np.float32).reshape(-1)  # (n*L*F,)
        ys = np.ascontiguousarray(y_scaled[mask]).reshape(-1)  # (n*H,)
        out[split] = pa.table(
            [
                pa.array([str(g["ticker"].iloc[0])] * n, pa.string()),
                pa.array(dates[base_index[mask]], pa.timestamp("ns")),
                pa.array(prices[base_index[mask]], pa.float64()),
                pa.FixedSizeListArray.from_arrays(pa.array(xs), spec.lookback * spec.n_features),
                pa.FixedSizeListArray.from_arrays(pa.array(ys), spec.horizon),
            ],
            schema=schema,
        )
    return out


def dataset_id(source_hash: str, config: WindowConfig) -> str:
    return stable_hash({"source": source_hash, "window": config.to_dict(), "schema": SCHEMA_VERSION})


def build_window_dataset(frame: pd.DataFrame, config: WindowConfig, source_hash: str, root: Path) -> WindowDataset:
    """Plain function behind the task: write (or reuse) the dataset under `root/<dataset_id>`."""
    ds_id = dataset_id(source_hash, config)
    final = root / ds_id
    if (final / MANIFEST).exists():
        return WindowDataset(str(final), ds_id, json.loads((final / MANIFEST).read_text()))
    price_col = choose_price_column(frame, config.price)
    frame = frame.dropna(subset=[price_col])
    usable = frame.groupby("ticker").filter(lambda g: len(g) >= config.min_rows)
    if usable.empty:
        raise WindowError(f"no ticker has the {config.min_rows} rows of history windowing needs")
    scaler = fit_window_scaler(usable, config, price_col)
    spec = config.spec
    per_ticker: dict[str, dict] = {}
    counts = dict.fromkeys(SPLITS, 0)
    with atomic_directory(final) as scratch:
        writers = {
            s: pq.ParquetWriter(scratch / f"{s}.parquet", _schema(spec), compression=config.compression)
            for s in SPLITS
        }
        try:
            for ticker, g in usable.groupby("ticker", sort=True):
                tables = ticker_windows(g, config, price_col, scaler)
                info = {}
                for split, table in tables.items():
                    writers[split].write_table(table)  # one row group per ticker and split
                    counts[split] += table.num_rows
                    dates = table.column("base_date")
                    info[split] = {
                        "windows": table.num_rows,
                        "first_base_date": str(pa.compute.min(dates).as_py()) if table.num_rows else None,
                        "last_base_date": str(pa.compute.max(dates).as_py()) if table.num_rows else None,
                    }
                per_ticker[str(ticker)] = {
                    "rows": len(g),
                    "first_date": str(g["date"].iloc[0].date()),
                    "last_date": str(g["date"].iloc[-1].date()),
                    "splits": info,
                }
        finally:
            for w in writers.values():
                w.close()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "dataset_id": ds_id,
            "source_hash": source_hash,
            "config": config.to_dict(),
            "window_spec": spec.to_dict(),
            "price_column": price_col,
            "scaler": scaler.to_dict(),
            "counts": counts,
            "tickers": per_ticker,
        }
        # The manifest is written last: its presence marks the dataset complete.
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return WindowDataset(str(final), ds_id, manifest)


def read_split(dataset: WindowDataset, split: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """-> x (N, L, F) float32, y (N, H) float32 scaled targets, and the index frame (ticker, base_date, base_price)."""
    spec = dataset.spec
    table = pq.read_table(dataset.split_path(split))
    n = table.num_rows
    x = table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False, writable=True).reshape(n, spec.lookback, spec.n_features)
    y = table.column("y").combine_chunks().flatten().to_numpy(zero_copy_only=False, writable=True).reshape(n, spec.horizon)
    index = table.select(["ticker", "base_date", "base_price"]).to_pandas()
    return x, y, index


@task(name="window")
def window(frame: pd.DataFrame, config: WindowConfig, source_hash: str) -> WindowDataset:
    logger = get_run_logger()
    dataset = build_window_dataset(frame, config, source_hash, home_subdir("windows"))
    c = dataset.manifest["counts"]
    logger.info(
        "window dataset %s: %d train / %d val / %d test windows over %d tickers (price column %s) at %s",
        dataset.dataset_id, c["train"], c["val"], c["test"], len(dataset.manifest["tickers"]),
        dataset.price_column, dataset.path,
    )
    return dataset


__all__ = ["FEATURES", "WindowConfig", "WindowDataset", "window", "read_split", "build_window_dataset"]
