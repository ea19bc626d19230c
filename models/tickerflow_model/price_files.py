"""Price files: where they are and how they are read, within limits, into the canonical frame.

Sources are a file, a folder, a glob or an fsspec URI (`file://`, `s3://...`; S3 endpoints and
credentials come from the usual AWS / fsspec environment, never from a config, which is logged).
Files are CSV (comma, semicolon, tab or pipe separated), gzipped CSV or Parquet; each is refused once
it passes a byte or row limit, without being read into memory past it. `read_prices` reads every
file of a source into one canonical frame (`canonical_prices.py`) and hashes the bytes it read; when
asked, it checks the frame for unadjusted splits and refuses, adjusts or keeps them.

Files are named in messages by their redacted URI: a credential in a URI never reaches a log.
"""

from __future__ import annotations

import csv
import glob as globlib
import gzip
import hashlib
import io
import zlib
from collections.abc import Callable
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow.parquet as pq

from .canonical_prices import (
    SUFFIXES,
    IngestError,
    SplitPolicy,
    adjust_for_splits,
    harmonise,
    out_of_order_rows,
    probable_splits,
    refuse_case_variants,
    refuse_splits,
    split_lines,
    to_canonical,
)
from .config import MAX_BYTES, MAX_ROWS
from .errors import TickerflowError
from .redaction import chained, exception_chain, redact_text, redact_uri, reveal

__all__ = [
    "MAX_BYTES",
    "MAX_ROWS",
    "IngestError",
    "SourceUnavailable",
    "load_prices",
    "read_file",
    "read_prices",
    "resolve_sources",
]


class SourceUnavailable(TickerflowError, OSError):
    """The source could not be reached this time (network, throttling, a server error); worth another try."""


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
        failure: BaseException | None = exc
    else:
        failure = None
    if failure is not None:
        raise chained(IngestError(f"cannot open {redact_uri(source)}: {redact_text(failure)}"), failure)
    if not files:
        raise IngestError(f"no CSV, CSV.gz or Parquet files at {redact_uri(source)}")
    return sorted(f if "://" in f else f"{protocol}://{f}" for f in files)


def _suffix_of(path: str) -> str:
    """The file's suffix, ignoring an http query (`prices.csv?X-Amz-Signature=...`)."""
    name = path.split("?", 1)[0].lower() if path.lower().startswith(("http://", "https://")) else path.lower()
    return next((x for x in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(x)), "")


def _unreachable(exc: BaseException) -> bool:
    """Whether the chain says the server could not be reached at all (refused, reset, timed out, no such
    host), as opposed to a server that answered "no": fsspec's http reports both as FileNotFoundError."""
    for e in exception_chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if any(c.__name__ in ("ClientConnectionError", "ServerTimeoutError") for c in type(e).__mro__):
            return True  # aiohttp's, without importing it here
    return False


def _read_failure(exc: BaseException, shown: str) -> TickerflowError:
    """The error of ours that a failed read of `shown` becomes: bad input (never retried) or unavailable."""
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if isinstance(exc, FileNotFoundError):
        status = getattr(exc.__cause__, "status", None)  # fsspec's http reports any refused request as not found
        if _unreachable(exc):
            return SourceUnavailable(f"cannot reach {shown} (will retry): {_reason(exc)}")
        if isinstance(status, int) and status != 404:
            reason = getattr(exc.__cause__, "message", "") or ""
            return IngestError(f"cannot read {shown}: HTTP {status} {redact_text(reason)}".rstrip())
        return IngestError(f"data source not found: {shown}")
    if isinstance(exc, (PermissionError, IsADirectoryError)) or (isinstance(status, int) and 400 <= status < 500):
        return IngestError(f"cannot read {shown}: {redact_text(exc)}")
    # a connection reset, a timeout, a 5xx: worth the task's retries
    return SourceUnavailable(f"cannot read {shown} (will retry): {type(exc).__name__}: {redact_text(exc)}")


def _reason(exc: BaseException) -> str:
    """The innermost cause's type and message, redacted (ConnectionRefusedError: ... for a closed port)."""
    inner = exc
    while (deeper := inner.__cause__ or (None if inner.__suppress_context__ else inner.__context__)) is not None:
        inner = deeper
    return f"{type(inner).__name__}: {redact_text(inner)}"[:300]


def _read_limited(path: str, max_bytes: int) -> bytes:
    """The file's stored bytes, refusing a file larger than `max_bytes` without reading past it."""
    shown = redact_uri(path)
    failure: BaseException | None = None
    try:
        with fsspec.open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own types
        failure = exc
    if failure is not None:
        # Raised here, outside the `except` block, so the original (whose message may quote the full URI)
        # is not chained as __context__; its redacted copy is the cause.
        raise chained(_read_failure(failure, shown), failure)
    if len(raw) > max_bytes:
        raise IngestError(
            f"{shown}: the file is larger than ingest.max_bytes ({max_bytes:,} bytes); raise the limit if it is genuine"
        )
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
        if looks_utf16(head):  # (an uncompressed UTF-16 file is decoded before it gets here)
            raise IngestError(f"{shown}: UTF-16 text inside a gzip file; save the CSV as UTF-8")
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


def looks_utf16(data: bytes) -> bool:
    """A UTF-16 byte-order mark, or ASCII text with every other byte zero (UTF-16 without a mark)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    sample = data[:256]
    if len(sample) < 8:
        return False
    for zeros, text in ((sample[1::2], sample[0::2]), (sample[0::2], sample[1::2])):  # little-, big-endian
        if zeros.count(0) == len(zeros) and 0 not in text:
            return True
    return False


def utf16_as_utf8(raw: bytes, shown: str) -> bytes:
    """UTF-16 text (Excel's "Unicode text", PowerShell's default) re-encoded as UTF-8 for the CSV reader."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    else:
        encoding = "utf-16-le" if raw[1] == 0 else "utf-16-be"
    try:
        return raw.decode(encoding).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{shown}: looks like UTF-16 text but does not decode ({exc.reason} at byte {exc.start}); save the CSV as UTF-8"
        ) from None


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
        text = raw if gzipped or not looks_utf16(raw) else utf16_as_utf8(raw, shown)

        def stream():
            return _gzip_stream(raw, shown, max_bytes) if gzipped else io.BytesIO(text)

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
        raise IngestError(
            f"{shown}: more than ingest.max_rows ({max_rows:,}) rows; raise the limit if the file is genuine"
        )
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


# ---- prices --------------------------------------------------------------------------------------
def load_prices(
    source: str, ticker: str | None = None, splits: SplitPolicy | None = None
) -> tuple[pd.DataFrame, str, list[str]]:
    """Read every file of `source` -> (canonical frame sorted by ticker/date, content hash, files).

    The hash covers each file's bytes and, for single-ticker files, the ticker they were given,
    so the same bytes always give the same hash wherever they are stored. Rows that arrived out of
    date order are counted before sorting, in `frame.attrs["out_of_order"]`, for validation to report.
    """
    frame, source_hash, files, _ = read_prices(source, ticker, splits=splits)
    return frame, source_hash, files


def read_prices(
    source: str,
    ticker: str | None = None,
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_BYTES,
    *,
    splits: SplitPolicy | None = None,
    on_note: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, str, list[str], list[str]]:
    """`load_prices` within limits, also returning each file's layout -> (frame, hash, files, layouts).

    `source` may be the redacted form of a URI held in this process (`redaction.hold`): the files are opened
    through the full one, and messages and the returned file names show them redacted.

    `splits`: what to do, in data without an adjusted close, with a one-day move near a split ratio
    (`canonical_prices.probable_splits`): refuse it, adjust the prices before it, or keep it as written;
    None reads the data without the check. `on_note` gets one line per thing set aside or adjusted (rows
    without a price, dividend and split lines, splits adjusted or kept). The hash covers what was set aside
    or adjusted as well: a frame that the reading rules changed does not share a hash (and so a cached
    validation or window dataset) with the bytes read without them.
    """
    files = resolve_sources(reveal(source))
    digest = hashlib.sha256()
    frames, layouts, notes = [], [], []
    rows = 0
    for path in files:
        raw_frame, raw = read_file(path, max_bytes, max_rows)
        frame, layout, set_aside = to_canonical(raw_frame, redact_uri(path), ticker)
        rows += len(frame)
        if rows > max_rows:
            raise IngestError(
                f"{redact_uri(source)}: more than ingest.max_rows ({max_rows:,}) ticker-days "
                f"(reached at {redact_uri(path)}, a {layout} file); raise the limit if the data is genuine"
            )
        digest.update(hashlib.sha256(raw).digest())
        if layout == "single-ticker":
            digest.update(f"ticker={frame['ticker'].iloc[0]}".encode())
        for line in set_aside:  # (each line names the rows it set aside; the hash stays path-free)
            digest.update(line.encode())
        frames.append(frame)
        layouts.append(layout)
        notes += [f"{redact_uri(path)}: {line}" for line in set_aside]
    if ticker is not None and layouts.count("single-ticker") > 1:
        unnamed = [redact_uri(f) for f, layout in zip(files, layouts) if layout == "single-ticker"]
        raise IngestError(
            f"ticker {ticker!r} was given for single-ticker files, but {len(unnamed)} files have no ticker "
            f"column ({', '.join(unnamed[:3])}...); give one file, or let each take its file name"
        )
    shown = [redact_uri(f) for f in files]
    refuse_case_variants(frames, shown)
    canonical = pd.concat(harmonise(frames, files), ignore_index=True)
    disorder = out_of_order_rows(canonical)
    canonical = canonical.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    if splits is not None and "adj_close" not in canonical.columns:
        found = probable_splits(canonical)
        if splits == "refuse" and found:
            first = found[0]
            refuse_splits(found, next(name for name, f in zip(shown, frames) if _has_day(f, first.ticker, first.date)))
        if splits == "adjust" and found:
            canonical = adjust_for_splits(canonical, found)
            for split in found:
                digest.update(f"split {split.ticker} {split.date:%Y-%m-%d} {split.ratio.name}".encode())
        notes += split_lines(found, splits)
    canonical.attrs["out_of_order"] = disorder
    if on_note is not None:
        for note in notes:
            on_note(note)
    return canonical, digest.hexdigest()[:16], shown, layouts


def _has_day(frame: pd.DataFrame, ticker: str, date: pd.Timestamp) -> bool:
    return bool(((frame["ticker"] == ticker) & (frame["date"] == date)).any())
