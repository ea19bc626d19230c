"""Ingest: read price files into the canonical frame and snapshot the raw input as Parquet.

Sources are a file, a folder, a glob or an fsspec URI (`file://`, `s3://...`; S3 endpoints and
credentials come from the usual AWS / fsspec environment, never from the config, which is logged).
Each file is read in one of three layouts, detected from its columns:

- long: a date, a ticker and at least one price column (one row per ticker-day);
- single-ticker: a date and a price column but no ticker column; the ticker is `IngestConfig.ticker`
  or else the file name;
- wide: a date column and one close column per ticker (a portfolio export).
"""

from __future__ import annotations

import glob as globlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from tickerflow_model.errors import TickerflowError
from tasks.retries import retry_unless
from tasks.storage import atomic_directory, home_subdir

CANONICAL = ["date", "ticker", "open", "high", "low", "close", "volume", "adj_close"]
# A price is required too: `close` or `adj_close`, whichever the file has (see PRICES).
REQUIRED = ["date", "ticker"]
PRICES = ("close", "adj_close")
PRICE_COLUMNS = ["open", "high", "low", "close", "adj_close"]
OPTIONAL = ["open", "high", "low", "volume"]
LAYOUTS = ("long", "single-ticker", "wide")

# Lower-cased names with spaces, underscores and dashes removed, per canonical column.
ALIASES = {
    "date": {"date", "datetime", "timestamp", "time", "day", "tradedate", "tradingday"},
    "ticker": {"ticker", "symbol", "tic", "name", "code", "instrument", "security"},
    "open": {"open", "openprice"},
    "high": {"high", "highprice"},
    "low": {"low", "lowprice"},
    "close": {"close", "closeprice", "last", "price"},
    "volume": {"volume", "vol"},
    "adj_close": {"adjclose", "adjustedclose", "adjusted", "adjcloseprice", "closeadj", "adjprice"},
}
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# Examples of out-of-order rows kept for the validation report.
ORDER_EXAMPLES = 5


class IngestError(TickerflowError, ValueError):
    """The source cannot be read as prices; the message names the file and the column."""


@dataclass(frozen=True)
class IngestConfig:
    source: str = "data/sample/stocks_daily_2000_2013.csv.gz"
    # Ticker for single-ticker files (no ticker column); None: the file name, e.g. `AAPL.csv` -> AAPL.
    ticker: str | None = None

    def __post_init__(self) -> None:
        if not str(self.source).strip():
            raise ValueError("ingest source must be a file, folder, glob or URI, got an empty string")
        if self.ticker is not None and not self.ticker.strip():
            raise ValueError(f"ticker must be a non-empty symbol or None, got {self.ticker!r}")


@dataclass(frozen=True)
class IngestResult:
    frame: pd.DataFrame
    source_hash: str
    snapshot_path: str
    files: tuple[str, ...]
    layouts: tuple[str, ...] = ()


def _norm(name: object) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _strip_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


# ---- sources -------------------------------------------------------------------------------------
def resolve_sources(source: str) -> list[str]:
    """A file, a folder (its price files), a glob, or an fsspec URI -> the sorted list of files to read."""
    if "://" in source:
        return _resolve_uri(source)
    path = Path(source)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
    elif any(ch in source for ch in "*?["):
        matches = globlib.glob(source, recursive=True)
        files = sorted(p for p in matches if Path(p).is_file() and p.lower().endswith(SUFFIXES))
    elif path.exists():
        files = [str(path)]
    else:
        raise IngestError(f"data source not found: {source}")
    if not files:
        raise IngestError(f"no CSV, CSV.gz or Parquet files under {source}")
    return files


def _resolve_uri(source: str) -> list[str]:
    protocol = source.split("://", 1)[0]
    fs, _, paths = fsspec.get_fs_token_paths(source)
    files = []
    for p in paths:
        if fs.isdir(p):
            files += [f for f in fs.find(p) if f.lower().endswith(SUFFIXES)]
        elif fs.exists(p):
            files.append(p)
    if not files:
        raise IngestError(f"no CSV, CSV.gz or Parquet files at {source}")
    return sorted(f if "://" in f else f"{protocol}://{f}" for f in files)


def read_file(path: str) -> tuple[pd.DataFrame, bytes]:
    """Read one file and return its frame and raw bytes (the bytes feed the content hash)."""
    try:
        with fsspec.open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError as exc:
        raise IngestError(f"data source not found: {path}") from exc
    lower = path.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(io.BytesIO(raw))
        else:
            frame = pd.read_csv(io.BytesIO(raw), compression="gzip" if lower.endswith(".gz") else None)
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise IngestError(f"cannot read {path}: {exc}") from exc
    if frame.empty:
        raise IngestError(f"{path}: the file has no rows (columns found: {list(frame.columns)})")
    return frame, raw


# ---- layouts -------------------------------------------------------------------------------------
def match_columns(columns: list) -> dict[str, object]:
    """canonical name -> the file's column, matched case-insensitively through ALIASES (first match wins)."""
    found: dict[str, object] = {}
    for col in columns:
        for canon, names in ALIASES.items():
            if _norm(col) in names and canon not in found:
                found[canon] = col
                break
    return found


def detect_layout(columns: list, origin: str) -> str:
    found = match_columns(columns)
    expected = (
        "expected (any case, common aliases accepted): long = date, ticker, close or adj_close "
        "[, open, high, low, volume]; single-ticker = date, close or adj_close; "
        "wide = date and one close column per ticker"
    )
    if "date" not in found:
        raise IngestError(f"{origin}: no date column; columns found: {list(columns)}; {expected}")
    has_price = any(p in found for p in PRICES)
    if "ticker" in found:
        if not has_price:
            raise IngestError(
                f"{origin}: missing required column 'close' or 'adj_close'; columns found: {list(columns)}; {expected}"
            )
        return "long"
    if has_price:
        return "single-ticker"
    others = [c for c in columns if c != found["date"]]
    if others and not any(_norm(c) in names for c in others for names in ALIASES.values()):
        return "wide"
    raise IngestError(
        f"{origin}: unknown layout, missing required column 'close' or 'adj_close' (and no ticker column); "
        f"columns found: {list(columns)}; {expected}"
    )


def wide_to_long(frame: pd.DataFrame, date_col: object) -> pd.DataFrame:
    """date + one close column per ticker -> long rows; days a ticker did not trade (empty cells) are dropped."""
    long = frame.melt(id_vars=[date_col], var_name="ticker", value_name="close")
    long = long.rename(columns={date_col: "date"})
    long["ticker"] = long["ticker"].astype(str)
    return long[long["close"].notna()]


def ticker_from_name(path: str) -> str:
    return _strip_suffix(Path(path.split("://", 1)[-1]).name)


def _typed(out: pd.DataFrame, origin: str) -> pd.DataFrame:
    try:
        dates = pd.to_datetime(out["date"])
    except (ValueError, TypeError) as exc:
        raise IngestError(f"{origin}: column 'date' has values that are not dates: {exc}") from exc
    if getattr(dates.dtype, "tz", None) is not None:
        dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
    out["date"] = dates.astype("datetime64[ns]")
    # Symbols are data: kept verbatim except surrounding spaces; '' means missing (validation rejects it).
    ticker = out["ticker"].astype("string").str.strip()
    out["ticker"] = ticker.mask(ticker == "")
    for col in [c for c in PRICE_COLUMNS + ["volume"] if c in out.columns]:
        converted = pd.to_numeric(out[col], errors="coerce")
        bad = converted.isna() & out[col].notna()
        if bad.any():
            row = bad.to_numpy().nonzero()[0][0]
            raise IngestError(
                f"{origin}: column '{col}' has non-numeric values, e.g. {out[col].iloc[row]!r} "
                f"(ticker {out['ticker'].iloc[row]}, date {out['date'].iloc[row]})"
            )
        out[col] = converted.astype("float64")
    return out


def to_canonical(frame: pd.DataFrame, origin: str, ticker: str | None = None) -> tuple[pd.DataFrame, str]:
    """Map one file's frame to the canonical columns and types -> (frame in file order, layout)."""
    layout = detect_layout(list(frame.columns), origin)
    found = match_columns(list(frame.columns))
    if layout == "wide":
        out = wide_to_long(frame, found["date"])
    else:
        out = frame.rename(columns={col: canon for canon, col in found.items()})
        out = out[[c for c in CANONICAL if c in found]].copy()
        if layout == "single-ticker":
            out.insert(1, "ticker", ticker or ticker_from_name(origin))
    return _typed(out.reset_index(drop=True), origin), layout


def out_of_order_rows(frame: pd.DataFrame) -> dict:
    """Rows whose date does not increase over the previous row of the same ticker, in file order."""
    previous = frame.groupby("ticker", sort=False)["date"].shift()
    bad = frame.assign(previous_date=previous)[frame["date"] <= previous]
    examples = [
        {"ticker": r.ticker, "date": r.date.date().isoformat(), "previous_date": r.previous_date.date().isoformat()}
        for r in bad.head(ORDER_EXAMPLES).itertuples()
    ]
    return {"count": int(len(bad)), "tickers": sorted(bad["ticker"].astype(str).unique()), "examples": examples}


def _harmonise(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Files may differ in optional columns; keep a column only if every file has it."""
    common = [c for c in CANONICAL if all(c in f.columns for f in frames)]
    if not any(p in common for p in PRICES):
        raise IngestError(
            "the files share no price column: " + "; ".join(f"{list(f.columns)}" for f in frames)
        )
    return [f[common] for f in frames]


def load_prices(source: str, ticker: str | None = None) -> tuple[pd.DataFrame, str, list[str]]:
    """Read every file of `source` -> (canonical frame sorted by ticker/date, content hash, files).

    The hash covers each file's bytes and, for single-ticker files, the ticker they were given,
    so the same bytes always give the same hash wherever they are stored. Rows that arrived out of
    date order are counted before sorting, in `frame.attrs["out_of_order"]`, for validation to report.
    """
    frame, source_hash, files, _ = read_prices(source, ticker)
    return frame, source_hash, files


def read_prices(source: str, ticker: str | None = None) -> tuple[pd.DataFrame, str, list[str], list[str]]:
    files = resolve_sources(source)
    digest = hashlib.sha256()
    frames, layouts = [], []
    for path in files:
        raw_frame, raw = read_file(path)
        frame, layout = to_canonical(raw_frame, path, ticker)
        digest.update(hashlib.sha256(raw).digest())
        if layout == "single-ticker":
            digest.update(f"ticker={frame['ticker'].iloc[0]}".encode())
        frames.append(frame)
        layouts.append(layout)
    if ticker is not None and layouts.count("single-ticker") > 1:
        unnamed = [f for f, layout in zip(files, layouts) if layout == "single-ticker"]
        raise IngestError(
            f"ticker {ticker!r} was given for single-ticker files, but {len(unnamed)} files have no ticker "
            f"column ({', '.join(unnamed[:3])}...); give one file, or let each take its file name"
        )
    canonical = pd.concat(_harmonise(frames), ignore_index=True)
    disorder = out_of_order_rows(canonical)
    canonical = canonical.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    canonical.attrs["out_of_order"] = disorder
    return canonical, digest.hexdigest()[:16], files, layouts


# ---- snapshot ------------------------------------------------------------------------------------
def write_snapshot(frame: pd.DataFrame, source_hash: str) -> Path:
    """Raw snapshot under `raw/<hash>/prices.parquet`, one row group per ticker, written atomically.

    Tickers partition the file by row group, not by folder: symbols never become path fragments.
    """
    final = home_subdir("raw", source_hash)
    if (final / "prices.parquet").exists():
        return final
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    codes = pd.factorize(frame["ticker"])[0]  # the frame is sorted, so each ticker is one run of rows
    bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
    with atomic_directory(final) as scratch:
        with pq.ParquetWriter(scratch / "prices.parquet", table.schema, compression="zstd") as writer:
            for start, stop in zip(bounds[:-1], bounds[1:]):
                writer.write_table(table.slice(start, stop - start))
    return final


# ---- task ----------------------------------------------------------------------------------------
# Retry transient storage errors (network, S3 throttling); a bad file fails at once.
retry_unless_bad_input = retry_unless(IngestError)


@task(
    name="ingest",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_unless_bad_input,
)
def ingest(config: IngestConfig) -> IngestResult:
    logger = get_run_logger()
    frame, source_hash, files, layouts = read_prices(config.source, config.ticker)
    for path, layout in zip(files, layouts):
        logger.info("%s: %s layout", path, layout)
    snapshot = write_snapshot(frame, source_hash)
    logger.info(
        "ingested %d rows, %d tickers (%s) from %d file(s); columns %s; source hash %s",
        len(frame), frame["ticker"].nunique(), ", ".join(sorted(frame["ticker"].dropna().unique())), len(files),
        list(frame.columns), source_hash,
    )
    return IngestResult(
        frame=frame, source_hash=source_hash, snapshot_path=str(snapshot), files=tuple(files), layouts=tuple(layouts)
    )
