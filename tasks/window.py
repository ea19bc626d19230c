"""Window: per-ticker sliding windows, chronological split with a purge gap, Parquet per split.

The split is by date, the same for every ticker: the first `train_fraction` of the trading days
is the training period, the next `val_fraction` validation, the rest test. No training window's
input or target day lies after the training period, a validation window's targets start more
than `purge_gap` business days after it and end inside the validation period, and the same
holds between validation and test. The scaler is fit on training-period rows only.

Windows are built and written one ticker at a time, so memory stays bounded by the largest
ticker. Layout of a dataset (its folder name is the dataset id, a hash of the source hash and
this config; tickers never become path fragments, parts are numbered):

    <dataset_id>/train/part-00000.parquet ...   a few whole tickers per part, in ticker order,
                                                one row group (or more) per ticker
    <dataset_id>/val/...  <dataset_id>/test/...
    <dataset_id>/manifest.json                  written last: a dataset without it is incomplete

Parts are written into a hidden scratch folder that is renamed into place only once the manifest
is in it, so a crash mid-write never leaves a dataset a later run would read as complete.

Two ways to run it, producing the same bytes: `build_window_dataset` (a plain function: one
process, used by the benchmark) and `window` (called from a flow: one Prefect task per part via
`.map`, so a Dask task runner can spread them; every task is cached on the dataset id).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task, unmapped
from prefect.logging import get_run_logger

from tickerflow_model.errors import TickerflowError
from tickerflow.tasks.storage import atomic_directory, commit_directory, home_subdir, scratch_directory, stable_hash, tickerflow_home
from tickerflow_model.windows import (
    FEATURES,
    Scaler,
    ScalerAccumulator,
    WindowSpec,
    compute_features,
    make_windows,
)

SCHEMA_VERSION = 2
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
PRICE_CHOICES = ("auto", "close", "adj_close")
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")


class WindowError(TickerflowError, ValueError):
    """No ticker has enough history to window, or the requested price column is missing."""


@dataclass(frozen=True)
class WindowConfig:
    lookback: int = 60
    horizon: int = 1
    features: tuple[str, ...] = ("log_return",)
    # The one place the modelled price is chosen: "close", "adj_close", or "auto" (adj_close when
    # the source has it, because unadjusted closes jump at stock splits).
    price: str = "auto"
    train_fraction: float = 0.70
    val_fraction: float = 0.15
    purge_gap: int = 5  # business days between splits in which no window's target may fall
    min_history: int = 252  # rows a ticker needs (about a year of trading days)
    compression: str = "zstd"
    # Windows per Parquet row group (each ticker starts a new one). Small on purpose: the Parquet
    # writer's buffers for a list column grow to ~4x the row group it is writing, and 1,024 windows
    # keep that under the size of one ticker's windows, at about 2% more bytes and no measurable time.
    row_group_size: int = 1_024
    # Input rows per Parquet part (whole tickers, in order; a bigger ticker gets a part of its own).
    # One part is one mapped Prefect task; parts, not single tickers, because each file costs
    # milliseconds to open and close, which for 200 small tickers cost more than the windows did.
    part_rows: int = 100_000

    def __post_init__(self) -> None:
        self.spec  # validates lookback, horizon, features
        if self.price not in PRICE_CHOICES:
            raise ValueError(f"price must be one of {PRICE_CHOICES}, got {self.price!r}")
        if not (0 < self.train_fraction < 1 and 0 < self.val_fraction < 1 and self.train_fraction + self.val_fraction < 1):
            raise ValueError(
                f"train_fraction and val_fraction must be in (0, 1) and sum below 1, got "
                f"{self.train_fraction} and {self.val_fraction}"
            )
        if self.purge_gap < 0:
            raise ValueError(f"purge_gap must be >= 0, got {self.purge_gap}")
        if self.min_history < 0:
            raise ValueError(f"min_history must be >= 0, got {self.min_history}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if self.row_group_size < 1:
            raise ValueError(f"row_group_size must be >= 1, got {self.row_group_size}")
        if self.part_rows < 1:
            raise ValueError(f"part_rows must be >= 1, got {self.part_rows}")

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
class SplitDates:
    """Last day of the training and of the validation period, and the purge gap after each."""

    train_end: np.datetime64
    val_end: np.datetime64
    purge_gap: int

    def first_target_after(self, period_end: np.datetime64) -> np.datetime64:
        """Targets of the next split must fall strictly after this day."""
        day = np.datetime64(period_end, "D")
        return np.busday_offset(day, self.purge_gap, roll="forward").astype("datetime64[ns]")

    def to_dict(self) -> dict:
        return {
            "train_end": str(np.datetime64(self.train_end, "D")),
            "val_end": str(np.datetime64(self.val_end, "D")),
            "purge_gap_business_days": self.purge_gap,
        }


@dataclass(frozen=True)
class WindowDataset:
    path: str
    dataset_id: str
    manifest: dict = field(repr=False)

    def split_path(self, split: str) -> Path:
        return Path(self.path) / split

    def part_files(self, split: str) -> list[Path]:
        return [self.split_path(split) / name for name in self.manifest["parts"][split]]

    @property
    def spec(self) -> WindowSpec:
        return WindowSpec.from_dict(self.manifest["window_spec"])

    @property
    def scaler(self) -> Scaler:
        return Scaler.from_dict(self.manifest["scaler"])

    @property
    def price_column(self) -> str:
        return self.manifest["price_column"]


@dataclass(frozen=True)
class TickerRows:
    """One ticker's days in date order, as arrays (views into the canonical frame, not copies)."""

    ticker: str
    dates: np.ndarray  # (T,) datetime64[ns]
    prices: np.ndarray  # (T,) float64, the chosen price column
    volume: np.ndarray | None  # (T,) float64 when a volume feature is configured
    high: np.ndarray | None = None  # (T,) float64 when the range feature is configured
    low: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dates)


@dataclass(frozen=True)
class WindowPlan:
    """Everything the part writers share; computed once, before any window is written."""

    dataset_id: str
    final: str
    scratch: str
    source_hash: str
    config: WindowConfig
    price_column: str
    split_dates: SplitDates
    scaler: Scaler
    parts: tuple[tuple[str, ...], ...]  # tickers of each part, in order (sorted)


# ---- pure pieces -----------------------------------------------------------------------------------
def choose_price_column(frame: pd.DataFrame, price: str) -> str:
    if price == "auto":
        # Unadjusted closes jump at stock splits; the adjusted series is what a model should see.
        return "adj_close" if "adj_close" in frame.columns else "close"
    if price not in frame.columns:
        raise WindowError(f"price column {price!r} requested but the data has only {list(frame.columns)}")
    return price


def split_dates(dates: pd.Series | np.ndarray, config: WindowConfig) -> SplitDates:
    """Cut the calendar of all trading days (every ticker's) into train / val / test periods."""
    days = np.unique(np.asarray(dates, dtype="datetime64[ns]"))
    n_train = max(int(len(days) * config.train_fraction), 1)
    n_val = max(int(len(days) * config.val_fraction), 1)
    if n_train + n_val >= len(days):
        raise WindowError(f"{len(days)} trading days are too few to split into train, validation and test")
    return SplitDates(days[n_train - 1], days[n_train + n_val - 1], config.purge_gap)


def assign_splits(dates: np.ndarray, base_index: np.ndarray, horizon: int, cut: SplitDates) -> dict[str, np.ndarray]:
    """Boolean masks over windows, from the dates of their first and last target day.

    train: every target (so every input) is on or before the training period's last day.
    val: targets start after train_end + purge gap and end on or before val_end. test: likewise after val_end.
    """
    first_target = dates[base_index + 1]
    last_target = dates[base_index + horizon]
    return {
        "train": last_target <= cut.train_end,
        "val": (first_target > cut.first_target_after(cut.train_end)) & (last_target <= cut.val_end),
        "test": first_target > cut.first_target_after(cut.val_end),
    }


def _features(rows: TickerRows, spec: WindowSpec) -> np.ndarray:
    return compute_features(rows.prices, rows.volume, spec.features, rows.high, rows.low)  # (T-1, F)


def training_rows(rows: TickerRows | pd.DataFrame, cut: SplitDates) -> int:
    """How many of the ticker's days (a prefix: they are in date order) lie in the training period.

    Takes the ticker's rows as `TickerRows` or as a frame with a `date` column (evaluation uses that).
    """
    dates = rows.dates if isinstance(rows, TickerRows) else rows["date"].to_numpy("datetime64[ns]")
    return int(np.searchsorted(dates, cut.train_end, side="right"))


def fit_window_scaler(slices: list[TickerRows], config: WindowConfig, cut: SplitDates) -> Scaler:
    """Standardization fit on training-period feature rows of every ticker, and nothing later."""
    spec = config.spec
    acc = ScalerAccumulator(spec.n_features)
    for rows in slices:
        feats = _features(rows, spec)
        # feature row j describes day j+1 (and day j); both are in the training period for j+1 < n_train
        acc.add(feats[: max(training_rows(rows, cut) - 1, 0)])
    try:
        return acc.finish()
    except ValueError as exc:
        raise WindowError(f"no training-period rows before {cut.to_dict()['train_end']} to fit the scaler on") from exc


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


def ticker_windows(rows: TickerRows, config: WindowConfig, scaler: Scaler, cut: SplitDates) -> dict[str, pa.Table]:
    """One ticker's windows, as an Arrow table per split."""
    spec = config.spec
    ticker, prices, dates = rows.ticker, rows.prices, rows.dates
    x, y, base_index = make_windows(prices, scaler.transform(_features(rows, spec)), spec.lookback, spec.horizon)
    # x (N, L, F) strided view, y (N, H), base_index (N,)
    y_scaled = (y / scaler.target_scale).astype(np.float32)  # (N, H)
    schema = _schema(spec)
    out = {}
    for split, mask in assign_splits(dates, base_index, spec.horizon, cut).items():
        # target dates grow with the window index, so each split is one run of windows: slice, don't gather
        hit = np.flatnonzero(mask)
        lo, hi = (int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, 0)
        assert hi - lo == len(hit), f"{split} windows of {ticker!r} are not contiguous"
        n = hi - lo
        xs = np.ascontiguousarray(x[lo:hi], dtype=np.float32).reshape(-1)  # (n*L*F,)
        ys = np.ascontiguousarray(y_scaled[lo:hi]).reshape(-1)  # (n*H,)
        out[split] = pa.table(
            [
                pa.repeat(pa.scalar(ticker, pa.string()), n),
                pa.array(dates[base_index[lo:hi]], pa.timestamp("ns")),
                pa.array(prices[base_index[lo:hi]], pa.float64()),
                pa.FixedSizeListArray.from_arrays(pa.array(xs), spec.lookback * spec.n_features),
                pa.FixedSizeListArray.from_arrays(pa.array(ys), spec.horizon),
            ],
            schema=schema,
        )
    return out


def dataset_id(source_hash: str, config: WindowConfig) -> str:
    return stable_hash({"source": source_hash, "window": config.to_dict(), "schema": SCHEMA_VERSION})


def part_name(index: int) -> str:
    """Parts are numbered in ticker order; the symbol itself never reaches the filesystem."""
    return f"part-{index:05d}.parquet"


def _date(value) -> str | None:
    return None if value is None else str(np.datetime64(value, "D"))


def group_parts(slices: list[TickerRows], part_rows: int) -> tuple[tuple[str, ...], ...]:
    """Consecutive tickers into parts of at most `part_rows` input rows (at least one ticker each)."""
    parts: list[list[str]] = []
    n = 0
    for rows in slices:
        if not parts or n + len(rows) > part_rows:
            parts.append([])
            n = 0
        parts[-1].append(rows.ticker)
        n += len(rows)
    return tuple(tuple(p) for p in parts)


def _ticker_info(rows: TickerRows, part: str, tables: dict[str, pa.Table]) -> dict:
    splits = {}
    for split, table in tables.items():
        dates = table.column("base_date")  # in date order: first and last are min and max
        splits[split] = {
            "windows": table.num_rows,
            "first_base_date": _date(np.datetime64(dates[0].value, "ns")) if table.num_rows else None,
            "last_base_date": _date(np.datetime64(dates[-1].value, "ns")) if table.num_rows else None,
        }
    return {
        "ticker": rows.ticker,
        "part": part,
        "rows": len(rows),
        "first_date": _date(rows.dates[0]),
        "last_date": _date(rows.dates[-1]),
        "splits": splits,
    }


def write_part(group: list[TickerRows], index: int, plan: WindowPlan) -> list[dict]:
    """Write part `index` of every split into the scratch folder, one ticker at a time -> manifest entries.

    Only one ticker's windows are in memory at once; each ticker starts a new row group.
    """
    config = plan.config
    schema = _schema(config.spec)
    name = part_name(index)
    writers = {}
    try:
        for split in SPLITS:
            (Path(plan.scratch) / split).mkdir(exist_ok=True)
            # dictionary-encoding float windows only costs time: their values hardly repeat within a page
            writers[split] = pq.ParquetWriter(
                Path(plan.scratch) / split / name, schema, compression=config.compression, use_dictionary=["ticker"]
            )
        infos = []
        for rows in group:
            tables = ticker_windows(rows, config, plan.scaler, plan.split_dates)
            for split, table in tables.items():
                if table.num_rows:
                    writers[split].write_table(table, row_group_size=config.row_group_size)
            infos.append(_ticker_info(rows, name, tables))
            del tables  # else the next ticker's windows are built while these are still alive: 2x the peak
        return infos
    finally:
        for writer in writers.values():
            writer.close()


def _runs(frame: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(ticker, first row, end row) of each run of equal tickers; Arrow does it without a per-row copy."""
    arr = pa.array(frame["ticker"])  # zero-copy for pandas' Arrow-backed strings
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if arr.null_count:
        raise WindowError("the frame has rows without a ticker; validation should have stopped it")
    ree = pc.run_end_encode(arr)
    ends = ree.run_ends.to_numpy()
    starts = np.r_[0, ends[:-1]]
    return [(str(t), int(a), int(b)) for t, a, b in zip(ree.values.to_pylist(), starts, ends)]


def _is_canonical_order(frame: pd.DataFrame, runs: list[tuple[str, int, int]]) -> bool:
    names = [t for t, _, _ in runs]
    if names != sorted(set(names)):
        return False
    dates = frame["date"].to_numpy("datetime64[ns]")
    return all(bool(np.all(dates[a + 1 : b] > dates[a : b - 1])) for _, a, b in runs)


def ticker_slices(frame: pd.DataFrame, price_col: str, config: WindowConfig) -> list[TickerRows]:
    """Every ticker with enough history, in ticker order, as array views into the frame.

    The canonical frame is already sorted by (ticker, date), so each ticker is a contiguous slice
    (a view, not a copy): memory stays bounded by one ticker's windows, not the whole input.
    """
    needed = ["date", "ticker", price_col, *config.spec.columns]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise WindowError(f"the frame has no column(s) {missing} (columns: {list(frame.columns)})")
    runs = _runs(frame)
    if not _is_canonical_order(frame, runs):
        frame = frame.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
        runs = _runs(frame)
    dates = frame["date"].to_numpy("datetime64[ns]")
    prices = frame[price_col].to_numpy(np.float64)
    volume, high, low = (frame[c].to_numpy(np.float64) if c in needed else None for c in ("volume", "high", "low"))
    out = []
    for ticker, a, b in runs:
        if b - a < config.min_rows:
            continue
        bad = np.flatnonzero(~np.isfinite(prices[a:b]))
        if len(bad):
            raise WindowError(
                f"ticker {ticker!r} has no usable {price_col} on {_date(dates[a + bad[0]])}; "
                "validation should have stopped it"
            )
        span = slice(a, b)
        out.append(
            TickerRows(
                ticker, dates[span], prices[span], *(None if v is None else v[span] for v in (volume, high, low))
            )
        )
    return out


def trading_days(slices: list[TickerRows]) -> np.ndarray:
    """Every day any ticker traded, merged ticker by ticker (no sort of the whole input)."""
    days = np.empty(0, "datetime64[ns]")
    for rows in slices:
        at = np.searchsorted(days, rows.dates).clip(max=max(len(days) - 1, 0))
        if len(days) and np.array_equal(days[at], rows.dates):
            continue  # nothing new: the usual case when tickers share a calendar
        days = np.union1d(days, rows.dates)
    return days


def make_plan(
    slices: list[TickerRows], config: WindowConfig, price_col: str, source_hash: str, root: Path,
    scratch: Path | None = None,
) -> WindowPlan:
    if not slices:
        raise WindowError(f"no ticker has the {config.min_rows} rows of history windowing needs")
    cut = split_dates(trading_days(slices), config)
    scaler = fit_window_scaler(slices, config, cut)
    ds_id = dataset_id(source_hash, config)
    parts = group_parts(slices, config.part_rows)
    return WindowPlan(ds_id, str(root / ds_id), str(scratch or ""), source_hash, config, price_col, cut, scaler, parts)


def make_manifest(plan: WindowPlan, parts: list[dict]) -> dict:
    counts = {s: sum(p["splits"][s]["windows"] for p in parts) for s in SPLITS}
    if counts["train"] == 0:
        raise WindowError(
            f"no training windows: every ticker's history starts too late for the training period "
            f"(ending {plan.split_dates.to_dict()['train_end']}) to hold a lookback of {plan.config.lookback}"
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset_id": plan.dataset_id,
        "source_hash": plan.source_hash,
        "config": plan.config.to_dict(),
        "window_spec": plan.config.spec.to_dict(),
        "price_column": plan.price_column,
        "scaler": plan.scaler.to_dict(),
        "split_dates": plan.split_dates.to_dict(),
        "counts": counts,
        "parts": {s: [part_name(i) for i in range(len(plan.parts))] for s in SPLITS},
        "tickers": {p["ticker"]: {k: v for k, v in p.items() if k != "ticker"} for p in parts},
    }


def write_manifest(folder: Path, manifest: dict) -> None:
    # The manifest is written last: its presence marks the dataset complete.
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def load_window_dataset(folder: Path) -> WindowDataset | None:
    """The complete dataset at `folder`, or None when there is none (no manifest = never finished)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        return None
    manifest = json.loads((folder / MANIFEST).read_text())
    return WindowDataset(str(folder), manifest["dataset_id"], manifest)


# ---- plain-function path (one process) ---------------------------------------------------------------
def build_window_dataset(frame: pd.DataFrame, config: WindowConfig, source_hash: str, root: Path) -> WindowDataset:
    """Write (or reuse) the dataset under `root/<dataset_id>`, one ticker at a time."""
    existing = load_window_dataset(Path(root) / dataset_id(source_hash, config))
    if existing is not None:
        return existing
    price_col = choose_price_column(frame, config.price)
    slices = ticker_slices(frame, price_col, config)
    with atomic_directory(Path(root) / dataset_id(source_hash, config)) as scratch:
        plan = make_plan(slices, config, price_col, source_hash, Path(root), scratch)
        by_ticker = {rows.ticker: rows for rows in slices}
        parts = [info for i, group in enumerate(plan.parts) for info in write_part([by_ticker[t] for t in group], i, plan)]
        manifest = make_manifest(plan, parts)
        write_manifest(scratch, manifest)
    return WindowDataset(plan.final, plan.dataset_id, manifest)


def read_split(dataset: WindowDataset, split: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """-> x (N, L, F) float32, y (N, H) float32 scaled targets, and the index frame (ticker, base_date, base_price)."""
    spec = dataset.spec
    tables = [pq.read_table(path) for path in dataset.part_files(split)]
    table = pa.concat_tables(tables) if tables else _schema(spec).empty_table()
    n = table.num_rows
    x = table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False, writable=True)
    y = table.column("y").combine_chunks().flatten().to_numpy(zero_copy_only=False, writable=True)
    index = table.select(["ticker", "base_date", "base_price"]).to_pandas()
    return x.reshape(n, spec.lookback, spec.n_features), y.reshape(n, spec.horizon), index


# ---- Prefect path: plan -> one task per part (.map) -> commit ------------------------------------------
def _cache_key(task_ctx, params: dict) -> str:
    """Same dataset id, same home, same task (and part) -> same key; the flow refreshes it when the dataset is gone."""
    plan = params.get("plan")
    ds_id = plan.dataset_id if plan is not None else dataset_id(params["source_hash"], params["config"])
    home = hashlib.sha256(str(tickerflow_home()).encode()).hexdigest()[:12]
    return f"tickerflow-window-{ds_id}-{home}-{task_ctx.task.name}-{params.get('index', '')}"


@task(name="window-plan", cache_key_fn=_cache_key)
def plan_windows(frame: pd.DataFrame, config: WindowConfig, source_hash: str) -> WindowPlan:
    """Choose the price, cut the calendar, fit the scaler on training rows; open a scratch folder."""
    root = home_subdir("windows")
    price_col = choose_price_column(frame, config.price)
    plan = make_plan(ticker_slices(frame, price_col, config), config, price_col, source_hash, root)
    return replace(plan, scratch=str(scratch_directory(Path(plan.final))))  # only once the plan stands


@task(name="window-part", cache_key_fn=_cache_key)
def write_window_part(group: list[TickerRows], index: int, plan: WindowPlan) -> list[dict]:
    """One mapped task: part `index` (a few whole tickers) of every split."""
    return write_part(group, index, plan)


@task(name="window-commit", cache_key_fn=_cache_key)
def commit_windows(plan: WindowPlan, parts: list[list[dict]]) -> WindowDataset:
    """Manifest into the scratch folder, then one rename: the dataset appears complete or not at all."""
    manifest = make_manifest(plan, [info for part in parts for info in part])
    write_manifest(Path(plan.scratch), manifest)
    commit_directory(Path(plan.scratch), Path(plan.final))
    dataset = WindowDataset(plan.final, plan.dataset_id, manifest)
    c = manifest["counts"]
    get_run_logger().info(
        "window dataset %s: %d train / %d val / %d test windows over %d tickers (price column %s, split %s) at %s",
        dataset.dataset_id, c["train"], c["val"], c["test"], len(manifest["tickers"]), dataset.price_column,
        manifest["split_dates"], dataset.path,
    )
    return dataset


def window(frame: pd.DataFrame, config: WindowConfig, source_hash: str) -> WindowDataset:
    """The window stage inside a flow: plan, one mapped task per part (a few whole tickers), commit.

    Every task is cached on the dataset id (a hash of the source hash and this config), so a rerun
    with unchanged input shows Cached; when the dataset folder is missing the caches are refreshed
    instead of trusted.
    """
    missing = load_window_dataset(home_subdir("windows", dataset_id(source_hash, config))) is None
    plan = plan_windows.with_options(refresh_cache=missing)(frame, config, source_hash)
    by_ticker = {rows.ticker: rows for rows in ticker_slices(frame, plan.price_column, config)}
    groups = [[by_ticker[t] for t in part] for part in plan.parts]
    parts = write_window_part.with_options(refresh_cache=missing).map(groups, range(len(groups)), unmapped(plan))
    return commit_windows.with_options(refresh_cache=missing)(plan, parts)


__all__ = [
    "FEATURES", "WindowConfig", "WindowDataset", "WindowError", "window", "read_split", "build_window_dataset",
]
