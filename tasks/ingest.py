"""Ingest: read price files into the canonical frame and snapshot the raw input as Parquet."""

from __future__ import annotations

import glob as globlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.logging import get_run_logger

from tasks.storage import atomic_directory, home_subdir

CANONICAL = ["date", "ticker", "open", "high", "low", "close", "volume", "adj_close"]
REQUIRED = ["date", "ticker", "close"]
PRICE_COLUMNS = ["open", "high", "low", "close", "adj_close"]

# Lower-cased, space/underscore/dash-insensitive names people's files use, per canonical column.
ALIASES = {
    "date": {"date", "datetime", "timestamp", "time", "day", "tradedate"},
    "ticker": {"ticker", "symbol", "tic", "name", "code", "instrument"},
    "open": {"open", "openprice"},
    "high": {"high", "highprice"},
    "low": {"low", "lowprice"},
    "close": {"close", "closeprice", "last", "price"},
    "volume": {"volume", "vol"},
    "adj_close": {"adjclose", "adjustedclose", "adjusted", "adjcloseprice"},
}
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


class IngestError(ValueError):
    """The source cannot be read as prices; the message names the file and the column."""


@dataclass(frozen=True)
class IngestConfig:
    source: str = "data/sample/stocks_daily_2000_2013.csv.gz"


@dataclass(frozen=True)
class IngestResult:
    frame: pd.DataFrame
    source_hash: str
    snapshot_path: str
    files: tuple[str, ...]


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def resolve_sources(source: str) -> list[str]:
    """A file, a folder (its price files), a glob, or an fsspec URI -> the list of files to read."""
    if "://" in source:
        fs, _, paths = fsspec.get_fs_token_paths(source)
        files = [p for p in paths if not fs.isdir(p)] or [
            p for p in fs.find(paths[0]) if p.lower().endswith(SUFFIXES)
        ]
        protocol = source.split("://", 1)[0]
        return sorted(f if "://" in f else f"{protocol}://{f}" for f in files)
    path = Path(source)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.name.lower().endswith(SUFFIXES))
    elif any(ch in source for ch in "*?["):
        files = sorted(globlib.glob(source, recursive=True))
    elif path.exists():
        files = [str(path)]
    else:
        raise IngestError(f"data source not found: {source}")
    if not files:
        raise IngestError(f"no CSV, CSV.gz or Parquet files under {source}")
    return files


def read_file(path: str) -> tuple[pd.DataFrame, bytes]:
    """Read one file and return its frame and raw bytes (the bytes feed the content hash)."""
    try:
        with fsspec.open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError as exc:
        raise IngestError(f"data source not found: {path}") from exc
    import io

    lower = path.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(io.BytesIO(raw))
        else:
            frame = pd.read_csv(io.BytesIO(raw), compression="gzip" if lower.endswith(".gz") else None)
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise IngestError(f"cannot read {path}: {exc}") from exc
    return frame, raw


def to_canonical(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Map a long-format frame's columns to the canonical names and types."""
    rename, taken = {}, set()
    for col in frame.columns:
        for canon, names in ALIASES.items():
            if _norm(col) in names and canon not in taken:
                rename[col] = canon
                taken.add(canon)
                break
    missing = [c for c in REQUIRED if c not in taken]
    if missing:
        raise IngestError(
            f"{origin}: missing required column(s) {missing}; columns found: {list(frame.columns)}; "
            f"expected (any case, common aliases accepted): {CANONICAL}"
        )
    out = frame.rename(columns=rename)[[c for c in CANONICAL if c in taken]].copy()
    try:
        out["date"] = pd.to_datetime(out["date"]).astype("datetime64[ns]")
    except (ValueError, TypeError) as exc:
        raise IngestError(f"{origin}: column 'date' has values that are not dates: {exc}") from exc
    out["ticker"] = out["ticker"].astype("string").str.strip()
    for col in [c for c in PRICE_COLUMNS + ["volume"] if c in out.columns]:
        converted = pd.to_numeric(out[col], errors="coerce")
        bad = converted.isna() & out[col].notna()
        if bad.any():
            example = out.loc[bad, col].iloc[0]
            raise IngestError(f"{origin}: column '{col}' has non-numeric values, e.g. {example!r}")
        out[col] = converted.astype("float64")
    return out


def load_prices(source: str) -> tuple[pd.DataFrame, str, list[str]]:
    """Read every file of `source` -> (canonical frame sorted by ticker/date, content hash, files)."""
    files = resolve_sources(source)
    digest = hashlib.sha256()
    frames = []
    for path in files:
        frame, raw = read_file(path)
        digest.update(hashlib.sha256(raw).digest())
        frames.append(to_canonical(frame, path))
    canonical = pd.concat(frames, ignore_index=True)
    canonical = canonical.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    return canonical, digest.hexdigest()[:16], files


def write_snapshot(frame: pd.DataFrame, source_hash: str) -> Path:
    """Raw snapshot as Parquet under the home, named by the content hash (rewritten atomically)."""
    final = home_subdir("raw", source_hash)
    if (final / "prices.parquet").exists():
        return final
    with atomic_directory(final) as scratch:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), scratch / "prices.parquet")
    return final


@task(name="ingest", retries=2, retry_delay_seconds=[2, 10])
def ingest(config: IngestConfig) -> IngestResult:
    logger = get_run_logger()
    frame, source_hash, files = load_prices(config.source)
    snapshot = write_snapshot(frame, source_hash)
    logger.info(
        "ingested %d rows, %d tickers (%s) from %d file(s); source hash %s",
        len(frame), frame["ticker"].nunique(), ", ".join(sorted(frame["ticker"].unique())), len(files),
        source_hash,
    )
    return IngestResult(frame=frame, source_hash=source_hash, snapshot_path=str(snapshot), files=tuple(files))
