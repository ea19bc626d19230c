"""The window dataset: per-ticker sliding windows, split by date, written as Parquet parts plus a manifest.

The split is the calendar cut of `splits.py`; the scaler is fit on training-period rows only.
Windows are built and written one ticker at a time, so memory stays bounded by the largest ticker.
Layout of a dataset (its folder name is the dataset id, a hash of the source hash and the window
config; tickers never become path fragments, parts are numbered):

    <dataset_id>/train/part-00000.parquet ...   a few whole tickers per part, in ticker order,
                                                one row group (or more) per ticker
    <dataset_id>/val/...  <dataset_id>/test/...
    <dataset_id>/manifest.json                  written last: a dataset without it is incomplete

Parts are written into a hidden scratch folder that is renamed into place only once the manifest is
in it, so a crash mid-write never leaves a dataset a later reader would take for complete.

Writing is three steps, `plan_window_dataset` -> `write_part` (once per part) -> `commit_window_dataset`.
`build_window_dataset` runs them in one process; a Prefect flow runs the same three functions as
tasks (one per part), so both write the same bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic_io import commit_directory, scratch_directory, stable_hash
from .config import WindowConfig, WindowSpec
from .features import auto_features, compute_features, market_features, market_on
from .splits import SplitDates, WindowError, assign_splits, split_dates, training_rows
from .windows import Scaler, ScalerAccumulator, make_windows

SCHEMA_VERSION = 3
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


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

    @property
    def split_dates(self) -> SplitDates:
        return SplitDates.from_dict(self.manifest["split_dates"])


@dataclass(frozen=True)
class TickerRows:
    """One ticker's days in date order, as arrays (views into the canonical frame, not copies)."""

    ticker: str
    dates: np.ndarray  # (T,) datetime64[ns]
    prices: np.ndarray  # (T,) float64, the chosen price column
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # (T,) float64 each: what the features read
    market: np.ndarray | None = None  # (T, 2) the market features on these days, when configured

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
    market: pd.DataFrame | None = None  # per date: the universe's market features, when configured


# ---- numerics ---------------------------------------------------------------------------------------
def choose_price_column(frame: pd.DataFrame, price: str) -> str:
    if price == "auto":
        # Unadjusted closes jump at stock splits; the adjusted series is what a model should see.
        return "adj_close" if "adj_close" in frame.columns else "close"
    if price not in frame.columns:
        raise WindowError(f"price column {price!r} requested but the data has only {list(frame.columns)}")
    return price


def _features(rows: TickerRows, spec: WindowSpec) -> np.ndarray:
    return compute_features(rows.prices, spec.resolved_features, rows.columns, rows.market)  # (T-1, F)


def fit_window_scaler(slices: list[TickerRows], spec: WindowSpec, cut: SplitDates) -> Scaler:
    """Standardization fit on training-period feature rows of every ticker, and nothing later."""
    acc = ScalerAccumulator(spec.n_features)
    for rows in slices:
        feats = _features(rows, spec)
        # feature row j describes day j+1 (and day j); both are in the training period for j+1 < n_train
        acc.add(feats[: max(training_rows(rows.dates, cut) - 1, 0)])
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


def ticker_windows(rows: TickerRows, spec: WindowSpec, scaler: Scaler, cut: SplitDates) -> dict[str, pa.Table]:
    """One ticker's windows, as an Arrow table per split."""
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


# ---- slicing the canonical frame by ticker ------------------------------------------------------------
def _date(value) -> str | None:
    return None if value is None else str(np.datetime64(value, "D"))


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


def ticker_slices(
    frame: pd.DataFrame, price_col: str, config: WindowConfig, market: pd.DataFrame | None = None
) -> list[TickerRows]:
    """Every ticker with enough history, in ticker order, as array views into the frame.

    The canonical frame is already sorted by (ticker, date), so each ticker is a contiguous slice
    (a view, not a copy): memory stays bounded by one ticker's windows, not the whole input.
    `market`: the frame's `market_features`, when the features read them.
    """
    needed = ["date", "ticker", price_col, *config.columns]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise WindowError(f"the frame has no column(s) {missing} (columns: {list(frame.columns)})")
    runs = _runs(frame)
    if not _is_canonical_order(frame, runs):
        frame = frame.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
        runs = _runs(frame)
    dates = frame["date"].to_numpy("datetime64[ns]")
    prices = frame[price_col].to_numpy(np.float64)
    columns = {c: frame[c].to_numpy(np.float64) for c in config.columns}
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
        own_market = None if market is None else market_on(market, dates[span])
        out.append(TickerRows(ticker, dates[span], prices[span], {c: v[span] for c, v in columns.items()}, own_market))
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


# ---- the three steps: plan, write each part, commit ----------------------------------------------------
def dataset_id(source_hash: str, config: WindowConfig) -> str:
    return stable_hash({"source": source_hash, "window": config.to_dict(), "schema": SCHEMA_VERSION})


def part_name(index: int) -> str:
    """Parts are numbered in ticker order; the symbol itself never reaches the filesystem."""
    return f"part-{index:05d}.parquet"


def plan_window_dataset(frame: pd.DataFrame, config: WindowConfig, source_hash: str, root: Path) -> WindowPlan:
    """Choose the price and the features, cut the calendar, fit the scaler on training rows, group tickers
    into parts; then open the scratch folder the parts are written into.

    The dataset id is the one of `config` as given (`auto` features included: the data, named by its
    hash, decides them); the plan and the manifest carry the features resolved against the data.
    """
    ds_id = dataset_id(source_hash, config)
    if config.features == "auto":
        config = config.updated(features=auto_features(frame))
    price_col = choose_price_column(frame, config.price)
    market = market_features(frame, price_col) if config.uses_market else None
    slices = ticker_slices(frame, price_col, config, market)
    if not slices:
        raise WindowError(f"no ticker has the {config.min_rows} rows of history windowing needs")
    cut = split_dates(trading_days(slices), config.train_fraction, config.val_fraction, config.purge_gap)
    scaler = fit_window_scaler(slices, config.spec, cut)
    final = Path(root) / ds_id
    parts = group_parts(slices, config.part_rows)
    scratch = scratch_directory(final)  # only once the plan stands
    return WindowPlan(ds_id, str(final), str(scratch), source_hash, config, price_col, cut, scaler, parts, market)


def part_groups(frame: pd.DataFrame, plan: WindowPlan) -> list[list[TickerRows]]:
    """The tickers of each part of `plan`, as array views into `frame`."""
    by_ticker = {rows.ticker: rows for rows in ticker_slices(frame, plan.price_column, plan.config, plan.market)}
    return [[by_ticker[t] for t in part] for part in plan.parts]


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
    spec = config.spec
    schema = _schema(spec)
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
            tables = ticker_windows(rows, spec, plan.scaler, plan.split_dates)
            for split, table in tables.items():
                if table.num_rows:
                    writers[split].write_table(table, row_group_size=config.row_group_size)
            infos.append(_ticker_info(rows, name, tables))
            del tables  # else the next ticker's windows are built while these are still alive: 2x the peak
        return infos
    finally:
        for writer in writers.values():
            writer.close()


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


def commit_window_dataset(plan: WindowPlan, parts: list[list[dict]]) -> WindowDataset:
    """Manifest into the scratch folder, then one rename: the dataset appears complete or not at all."""
    manifest = make_manifest(plan, [info for part in parts for info in part])
    write_manifest(Path(plan.scratch), manifest)
    commit_directory(Path(plan.scratch), Path(plan.final))
    return WindowDataset(plan.final, plan.dataset_id, manifest)


def load_window_dataset(folder: Path) -> WindowDataset | None:
    """The complete dataset at `folder`, or None when there is none (no manifest = never finished)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        return None
    manifest = json.loads((folder / MANIFEST).read_text())
    return WindowDataset(str(folder), manifest["dataset_id"], manifest)


def build_window_dataset(frame: pd.DataFrame, config: WindowConfig, source_hash: str, root: Path) -> WindowDataset:
    """Write (or reuse) the dataset under `root/<dataset_id>` in this process: plan, every part, commit."""
    existing = load_window_dataset(Path(root) / dataset_id(source_hash, config))
    if existing is not None:
        return existing
    plan = plan_window_dataset(frame, config, source_hash, Path(root))
    try:
        parts = [write_part(group, i, plan) for i, group in enumerate(part_groups(frame, plan))]
        return commit_window_dataset(plan, parts)
    except BaseException:
        shutil.rmtree(plan.scratch, ignore_errors=True)
        raise


INDEX_COLUMNS = ["ticker", "base_date", "base_price"]


def read_split(
    dataset: WindowDataset, split: str, *, with_index: bool = True
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    """-> x (N, L, F) float32, y (N, H) float32 scaled targets, and the index frame (ticker, base_date,
    base_price), or None without `with_index`.

    x and y are allocated once, from the manifest's counts, and each part's values are copied straight
    into place: the peak is the arrays plus one part's Arrow table. (Reading every part, combining the
    chunks and converting to a writable array held ~4x the split's x at once.) The index columns are
    read only when asked for: training needs none.
    """
    spec = dataset.spec
    n = int(dataset.manifest["counts"][split])
    x = np.empty((n, spec.lookback, spec.n_features), np.float32)
    y = np.empty((n, spec.horizon), np.float32)
    flat = {"x": x.reshape(n, -1), "y": y.reshape(n, -1)}  # (N, L*F), (N, H) views
    index_tables = []
    at = 0
    for path in dataset.part_files(split):
        table = pq.read_table(path, columns=["x", "y", *(INDEX_COLUMNS if with_index else [])])
        if at + table.num_rows > n:
            raise WindowError(
                f"the {split} parts of dataset {dataset.dataset_id} hold more windows than its manifest, {n}"
            )
        for name, out in flat.items():
            row = at
            for chunk in table.column(name).chunks:  # (k,) fixed-size lists -> (k, width) values
                values = chunk.flatten().to_numpy(zero_copy_only=False)  # a view of the Arrow buffer
                out[row : row + len(chunk)] = values.reshape(len(chunk), out.shape[1])
                row += len(chunk)
        if with_index:
            index_tables.append(table.select(INDEX_COLUMNS))
        at += table.num_rows
        del table
    if at != n:
        raise WindowError(f"the {split} parts of dataset {dataset.dataset_id} hold {at} windows, its manifest {n}")
    index = None
    if with_index:
        tables = index_tables or [_schema(spec).empty_table().select(INDEX_COLUMNS)]
        index = pa.concat_tables(tables).to_pandas()
        del index_tables
    # Arrow's pool (mimalloc) keeps freed buffers for reuse; hand them back before training allocates its own.
    pa.default_memory_pool().release_unused()
    return x, y, index
