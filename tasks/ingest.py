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

import csv
import glob as globlib
import gzip
import hashlib
import io
import re
import zlib
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
from pydantic import Field, field_validator

from tickerflow_model.config import Config
from tickerflow_model.errors import TickerflowError
from tickerflow.tasks.redaction import redact_text, redact_uri, reveal
from tickerflow.tasks.retries import retry_unless
from tickerflow.tasks.storage import home_subdir
from tickerflow_model.atomic_io import atomic_directory

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


# Generous limits: a 5,000-ticker wide file of 20 years of days is ~25M canonical rows and ~0.5 GB of CSV.
MAX_ROWS = 100_000_000
MAX_BYTES = 8 * 2**30


class SourceUnavailable(TickerflowError, OSError):
    """The source could not be reached this time (network, throttling, a server error); retried."""


class IngestConfig(Config):
    source: str = Field(
        "data/sample/stocks_daily_2000_2013.csv.gz", description="A file, folder, glob or fsspec URI of price files."
    )
    ticker: str | None = Field(
        None, description="Ticker of single-ticker files (no ticker column); unset: the file name, AAPL.csv -> AAPL."
    )
    max_rows: int = Field(MAX_ROWS, ge=1, description="Most canonical rows (ticker-days) over all files.")
    max_bytes: int = Field(MAX_BYTES, ge=1, description="Most bytes per file once decompressed.")

    @field_validator("source")
    @classmethod
    def _source_given(cls, source: str) -> str:
        if not source.strip():
            raise ValueError("ingest source must be a file, folder, glob or URI, got an empty string")
        return source

    @field_validator("ticker")
    @classmethod
    def _ticker_given(cls, ticker: str | None) -> str | None:
        if ticker is not None and not ticker.strip():
            raise ValueError(f"ticker must be a non-empty symbol or None, got {ticker!r}")
        return ticker


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
    protocol = source.split("://", 1)[0].lower()
    if protocol in ("http", "https"):
        return [source]  # one file: a web server lists no folders, and '?' starts a query, not a glob
    try:
        fs, _, paths = fsspec.get_fs_token_paths(source)
        files = []
        for p in paths:
            if fs.isdir(p):
                files += [f for f in fs.find(p) if f.lower().endswith(SUFFIXES)]
            elif fs.exists(p):
                files.append(p)
    except (ImportError, ValueError) as exc:  # unknown protocol, missing fsspec driver
        raise IngestError(f"cannot open {redact_uri(source)}: {redact_text(exc)}") from exc
    if not files:
        raise IngestError(f"no CSV, CSV.gz or Parquet files at {redact_uri(source)}")
    return sorted(f if "://" in f else f"{protocol}://{f}" for f in files)


def _suffix_of(path: str) -> str:
    """The file's suffix, ignoring an http query (`prices.csv?X-Amz-Signature=...`)."""
    name = path.split("?", 1)[0].lower() if path.lower().startswith(("http://", "https://")) else path.lower()
    return next((x for x in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(x)), "")


def _read_limited(path: str, max_bytes: int) -> bytes:
    """The file's stored bytes, refusing a file larger than `max_bytes` without reading past it."""
    shown = redact_uri(path)
    try:
        with fsspec.open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError as exc:
        status = getattr(exc.__cause__, "status", None)  # fsspec's http reports any refused request as not found
        if isinstance(status, int) and status != 404:
            reason = getattr(exc.__cause__, "message", "") or ""
            raise IngestError(f"cannot read {shown}: HTTP {status} {reason}".rstrip()) from exc
        raise IngestError(f"data source not found: {shown}") from exc
    except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own types
        status = getattr(exc, "status", None) or getattr(exc, "code", None)
        if isinstance(exc, (PermissionError, IsADirectoryError)) or (isinstance(status, int) and 400 <= status < 500):
            raise IngestError(f"cannot read {shown}: {redact_text(exc)}") from exc
        # a connection reset, a timeout, a 5xx: worth the task's retries
        raise SourceUnavailable(f"cannot read {shown} (will retry): {type(exc).__name__}: {redact_text(exc)}") from exc
    if len(raw) > max_bytes:
        raise IngestError(f"{shown}: the file is larger than ingest.max_bytes ({max_bytes:,} bytes); raise the limit if it is genuine")
    return raw


class _CappedStream(io.RawIOBase):
    """A read-only stream that fails once more than `limit` bytes have come through it.

    The CSV parser reads a gzip file through it, so the file is never inflated into memory as a whole,
    and a gzip bomb stops at the limit.
    """

    def __init__(self, inner, limit: int, shown: str) -> None:
        self.inner, self.limit, self.shown, self.seen = inner, limit, shown, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            chunk = self.inner.read(len(buffer))
        except (OSError, EOFError, zlib.error) as exc:
            raise IngestError(f"{self.shown}: not a valid gzip file ({exc})") from exc
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise IngestError(
                f"{self.shown}: decompresses to more than ingest.max_bytes ({self.limit:,} bytes); "
                "raise the limit if it is genuine"
            )
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _gzip_stream(raw: bytes, shown: str, max_bytes: int) -> io.BufferedReader:
    return io.BufferedReader(_CappedStream(gzip.GzipFile(fileobj=io.BytesIO(raw)), max_bytes, shown))


def _csv_header(data: bytes, shown: str) -> tuple[list[str], str]:
    """The header's column names and the delimiter (comma, or semicolon / tab / pipe when the header has no comma)."""
    head = data
    if b"\x00" in head:
        raise IngestError(f"{shown}: binary content, not a CSV text file (expected CSV, CSV.gz or Parquet)")
    try:
        first = head.decode("utf-8-sig").splitlines()[0] if head.strip() else ""
    except UnicodeDecodeError as exc:
        raise IngestError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the CSV as UTF-8") from exc
    if not first.strip():
        raise IngestError(f"{shown}: the file is empty (no header line)")
    sep = "," if "," in first else next((d for d in (";", "\t", "|") if d in first), ",")
    names = [n.strip() for n in next(csv.reader([first], delimiter=sep))]
    return names, sep


def _refuse_duplicates(names: list, shown: str) -> None:
    seen: dict[str, int] = {}
    for n in names:
        seen[str(n)] = seen.get(str(n), 0) + 1
    dupes = [n for n, k in seen.items() if k > 1]
    if dupes:
        raise IngestError(
            f"{shown}: column(s) {', '.join(repr(d) for d in dupes[:5])} appear more than once in the header; "
            "each column (each ticker of a wide file) must appear once"
        )


def read_file(path: str, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS) -> tuple[pd.DataFrame, bytes]:
    """Read one file and return its frame and raw bytes (the bytes feed the content hash)."""
    shown = redact_uri(path)
    raw = _read_limited(path, max_bytes)
    suffix = _suffix_of(path)
    if suffix in (".parquet", ".pq"):
        frame = _read_parquet(raw, shown, max_bytes, max_rows)
    else:
        gzipped = suffix == ".csv.gz" or raw[:2] == b"\x1f\x8b"

        def stream():
            return _gzip_stream(raw, shown, max_bytes) if gzipped else io.BytesIO(raw)

        with stream() as head:
            names, sep = _csv_header(head.read(65536), shown)
        _refuse_duplicates(names, shown)
        try:
            with stream() as body:
                frame = pd.read_csv(body, sep=sep, nrows=max_rows + 1, encoding="utf-8-sig")
        except IngestError:
            raise
        except Exception as exc:  # pandas raises many types for a corrupt file
            raise IngestError(f"cannot read {shown}: {redact_text(exc)}") from exc
    if len(frame) > max_rows:
        raise IngestError(f"{shown}: more than ingest.max_rows ({max_rows:,}) rows; raise the limit if the file is genuine")
    if frame.empty:
        raise IngestError(f"{shown}: the file has no rows (columns found: {list(frame.columns)})")
    return frame, raw


def _read_parquet(raw: bytes, shown: str, max_bytes: int, max_rows: int) -> pd.DataFrame:
    try:
        parquet = pq.ParquetFile(io.BytesIO(raw))
        meta = parquet.metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if meta.num_rows > max_rows:
            raise IngestError(f"{shown}: {meta.num_rows:,} rows, more than ingest.max_rows ({max_rows:,})")
        if size > max_bytes:
            raise IngestError(f"{shown}: {size:,} bytes uncompressed, more than ingest.max_bytes ({max_bytes:,})")
        _refuse_duplicates(list(parquet.schema_arrow.names), shown)
        return parquet.read().to_pandas()
    except IngestError:
        raise
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise IngestError(f"cannot read {shown} as Parquet: {redact_text(exc)}") from exc


# ---- layouts -------------------------------------------------------------------------------------
def match_columns(columns: list) -> dict[str, object]:
    """canonical name -> the file's column, matched case-insensitively through ALIASES (first match wins)."""
    return {canon: cols[0] for canon, cols in _matches(columns).items()}


def _matches(columns: list) -> dict[str, list]:
    found: dict[str, list] = {}
    for col in columns:
        for canon, names in ALIASES.items():
            if _norm(col) in names:
                found.setdefault(canon, []).append(col)
                break
    return found


def refuse_alias_collisions(columns: list, origin: str) -> None:
    """Two columns that both mean one canonical column (`Symbol` and `Ticker`) are refused, naming both."""
    for canon, cols in _matches(columns).items():
        if len(cols) > 1:
            raise IngestError(
                f"{origin}: columns {', '.join(repr(str(c)) for c in cols)} all mean '{canon}'; "
                "keep one of them (drop or rename the others)"
            )


def detect_layout(columns: list, origin: str) -> str:
    found = match_columns(columns)
    expected = (
        "expected (any case, common aliases accepted): long = date, ticker, close or adj_close "
        "[, open, high, low, volume]; single-ticker = date, close or adj_close; "
        "wide = date and one close column per ticker"
    )
    if "date" not in found:
        raise IngestError(f"{origin}: no date column; columns found: {list(columns)[:20]}; {expected}")
    refuse_alias_collisions(columns, origin)
    has_price = any(p in found for p in PRICES)
    if "ticker" in found:
        if not has_price:
            raise IngestError(
                f"{origin}: missing required column 'close' or 'adj_close'; columns found: {list(columns)[:20]}; {expected}"
            )
        return "long"
    if has_price:
        return "single-ticker"
    others = [c for c in columns if c != found["date"]]
    if others and not any(_norm(c) in names for c in others for names in ALIASES.values()):
        return "wide"
    raise IngestError(
        f"{origin}: unknown layout, missing required column 'close' or 'adj_close' (and no ticker column); "
        f"columns found: {list(columns)[:20]}; {expected}"
    )


def wide_to_long(frame: pd.DataFrame, date_col: object) -> pd.DataFrame:
    """date + one close column per ticker -> long rows; days a ticker did not trade (empty cells) are dropped."""
    long = frame.melt(id_vars=[date_col], var_name="ticker", value_name="close")
    long = long.rename(columns={date_col: "date"})
    long["ticker"] = long["ticker"].astype(str)
    return long[long["close"].notna()]


def ticker_from_name(path: str) -> str:
    if path.lower().startswith(("http://", "https://")):
        path = path.split("?", 1)[0]
    return _strip_suffix(Path(path.split("://", 1)[-1]).name)


# A UTC offset or zone letter after a time of day: `...T00:00+09:00`, `... 16:00:00-0500`, `...Z`.
_TZ_SUFFIX = re.compile(r"(?<=\d)\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
# Integer dates: YYYYMMDD, or epoch seconds / milliseconds between 1973 and 2286.
_YYYYMMDD = (18000101, 22001231)
_EPOCH_S = (10**8, 10**10)
_EPOCH_MS = (10**11, 10**13)


def parse_dates(values: pd.Series, origin: str) -> pd.Series:
    """Dates as naive datetimes, where the day as written is the trading day.

    A time-zone-aware value keeps its wall-clock date and time (`2020-01-02T00:00+09:00` is 2020-01-02),
    integers are YYYYMMDD or epoch seconds/milliseconds, and a column mixing formats is refused.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    if pd.api.types.is_bool_dtype(values.dtype):
        raise IngestError(f"{origin}: column 'date' holds true/false values, not dates")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return _integer_dates(values, origin)
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    if present.any() and text[present].str.fullmatch(r"\d{8}").all():
        return _integer_dates(pd.to_numeric(text.where(present)), origin)
    timed = text.str.contains(":", regex=False).fillna(False)
    text = text.where(~timed, text.str.replace(_TZ_SUFFIX, "", regex=True))
    text = text.where(present)
    try:
        return pd.to_datetime(text)
    except (ValueError, TypeError, OverflowError) as exc:
        first_error = exc
    # The format pandas inferred from the first value did not fit every value: mixed formats, or not dates.
    first = text[present].iloc[0]
    as_first = pd.to_datetime(text, errors="coerce", format=None)
    misfit = text[present & as_first.isna()]
    mixed = pd.to_datetime(text[present], format="mixed", errors="coerce")
    if mixed.notna().all() and not misfit.empty:
        raise IngestError(
            f"{origin}: column 'date' mixes date formats, e.g. {first!r} and {misfit.iloc[0]!r}; "
            "write every date in one format, ideally ISO 8601 (YYYY-MM-DD)"
        )
    bad = text[present][mixed.isna()]
    example = bad.iloc[0] if not bad.empty else first
    raise IngestError(
        f"{origin}: column 'date' has values that are not dates, e.g. {example!r}"
    ) from first_error


def _integer_dates(values: pd.Series, origin: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    present = numbers.dropna()
    if present.empty:
        raise IngestError(f"{origin}: column 'date' has no values")
    if not np.all(np.isfinite(present)) or not np.all(present == np.floor(present)):
        raise IngestError(f"{origin}: column 'date' holds numbers that are not dates, e.g. {present.iloc[0]!r}")
    lo, hi = int(present.min()), int(present.max())

    def within(bounds: tuple[int, int]) -> bool:
        return bounds[0] <= lo and hi <= bounds[1]

    if within(_YYYYMMDD):
        text = numbers.astype("Int64").astype("string")
        parsed = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
        bad = text[parsed.isna() & text.notna()]
        if not bad.empty:
            raise IngestError(f"{origin}: column 'date' has integers that are not YYYYMMDD dates, e.g. {bad.iloc[0]}")
        return parsed
    for bounds, unit in ((_EPOCH_S, "s"), (_EPOCH_MS, "ms")):
        if within(bounds):
            return pd.to_datetime(numbers, unit=unit)
    raise IngestError(
        f"{origin}: column 'date' holds integers ({lo} to {hi}) that are neither YYYYMMDD dates nor epoch "
        "seconds or milliseconds; write dates as YYYY-MM-DD"
    )


def _typed(out: pd.DataFrame, origin: str) -> pd.DataFrame:
    out["date"] = parse_dates(out["date"], origin).astype("datetime64[ns]")
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


def _harmonise(frames: list[pd.DataFrame], files: list[str] | None = None) -> list[pd.DataFrame]:
    """Files may differ in optional columns; keep a column only if every file has it.

    The exception is `adj_close`: dropping it from all files because one lacks it would train on
    unadjusted closes without a word, so a mix of files with and without it is refused.
    """
    names = [redact_uri(f) for f in files] if files else [f"file {i + 1}" for i in range(len(frames))]
    with_adj = [n for n, f in zip(names, frames) if "adj_close" in f.columns]
    without = [n for n, f in zip(names, frames) if "adj_close" not in f.columns]
    if with_adj and without:
        raise IngestError(
            f"{len(with_adj)} file(s) have an adjusted close and {len(without)} do not "
            f"(with: {', '.join(with_adj[:3])}; without: {', '.join(without[:3])}); training on a mix would "
            "silently use unadjusted closes: give every file an adj_close column, or drop it from all"
        )
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


def read_prices(
    source: str, ticker: str | None = None, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES
) -> tuple[pd.DataFrame, str, list[str], list[str]]:
    files = resolve_sources(reveal(source))
    digest = hashlib.sha256()
    frames, layouts = [], []
    rows = 0
    for path in files:
        raw_frame, raw = read_file(path, max_bytes, max_rows)
        frame, layout = to_canonical(raw_frame, redact_uri(path), ticker)
        rows += len(frame)
        if rows > max_rows:
            raise IngestError(
                f"{redact_uri(source)}: more than ingest.max_rows ({max_rows:,}) ticker-days "
                f"(reached at {redact_uri(path)}, a {layout} file); raise the limit if the data is genuine"
            )
        digest.update(hashlib.sha256(raw).digest())
        if layout == "single-ticker":
            digest.update(f"ticker={frame['ticker'].iloc[0]}".encode())
        frames.append(frame)
        layouts.append(layout)
    if ticker is not None and layouts.count("single-ticker") > 1:
        unnamed = [redact_uri(f) for f, layout in zip(files, layouts) if layout == "single-ticker"]
        raise IngestError(
            f"ticker {ticker!r} was given for single-ticker files, but {len(unnamed)} files have no ticker "
            f"column ({', '.join(unnamed[:3])}...); give one file, or let each take its file name"
        )
    canonical = pd.concat(_harmonise(frames, files), ignore_index=True)
    disorder = out_of_order_rows(canonical)
    canonical = canonical.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    canonical.attrs["out_of_order"] = disorder
    return canonical, digest.hexdigest()[:16], [redact_uri(f) for f in files], layouts


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
    frame, source_hash, files, layouts = read_prices(config.source, config.ticker, config.max_rows, config.max_bytes)
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
