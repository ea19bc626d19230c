"""The canonical price frame: one price file's columns and layout -> `date, ticker, open, high, low, close,
volume, adj_close` (those the file has), typed, in file order.

A file is read in one of three layouts, detected from its columns:

- long: a date, a ticker and at least one price column (one row per ticker-day);
- single-ticker: a date and a price column but no ticker column; the ticker is given or else the
  file name;
- wide: a date column and one close column per ticker (a portfolio export).

Column names match through ALIASES in any case. Dates are the trading day as written (`parse_dates`).
Reading the files themselves (sources, formats, limits) is `price_files.py`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import TickerflowError
from .redaction import redact_uri

CANONICAL = ["date", "ticker", "open", "high", "low", "close", "volume", "adj_close"]
PRICES = ("close", "adj_close")  # a frame needs one of them, whichever the file has
PRICE_COLUMNS = ["open", "high", "low", "close", "adj_close"]

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
# The suffixes of price files; a single-ticker file's name without its suffix is its ticker.
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# Examples of out-of-order rows kept for the validation report.
ORDER_EXAMPLES = 5


class IngestError(TickerflowError, ValueError):
    """The source cannot be read as prices; the message names the file and the column."""


def _norm(name: object) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _strip_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


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
    text = wall_clock(text).where(present)
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
    raise IngestError(f"{origin}: column 'date' has values that are not dates, e.g. {example!r}") from first_error


def wall_clock(text: pd.Series) -> pd.Series:
    """Date strings without the UTC offset or zone letter after a time of day, so each keeps the day as
    written: `2020-01-02T00:00+09:00` -> `2020-01-02T00:00`, and a column of mixed offsets parses."""
    timed = text.str.contains(":", regex=False).fillna(False)
    return text.where(~timed, text.str.replace(_TZ_SUFFIX, "", regex=True))


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
    typed = _typed(out.reset_index(drop=True), origin)
    refuse_future_dates(typed, origin)
    refuse_intraday_bars(typed, origin)
    return typed, layout


def latest_valid_day(now: datetime | None = None) -> pd.Timestamp:
    """Today where it is latest (UTC+14): no market has closed a day after it."""
    now = now or datetime.now(timezone.utc)
    return pd.Timestamp((now + timedelta(hours=14)).date())


def refuse_future_dates(frame: pd.DataFrame, origin: str) -> None:
    """A date after today is a typo (2103 for 2013) or a clock gone wrong; it never reaches training."""
    latest = latest_valid_day()
    late = frame["date"].dt.normalize() > latest
    if late.any():
        row = frame.loc[late, ["ticker", "date"]].iloc[0]
        raise IngestError(
            f"{origin}: ticker {row['ticker']} has a date after today, {row['date']:%Y-%m-%d} "
            f"({int(late.sum()):,} row(s) after {latest:%Y-%m-%d}); dates must not lie in the future"
        )


def refuse_intraday_bars(frame: pd.DataFrame, origin: str) -> None:
    """Several timestamps on one day for one ticker are intraday bars; every step of the model is a day."""
    day = frame["date"].dt.normalize()
    stamps = frame.assign(day=day).groupby(["ticker", "day"], sort=False)["date"].nunique()
    several = stamps[stamps > 1]
    if not several.empty:
        (ticker, when), count = several.index[0], int(several.iloc[0])
        raise IngestError(
            f"{origin}: ticker {ticker} has {count} different timestamps on {when:%Y-%m-%d} "
            f"({len(several):,} ticker-day(s) like it); daily bars are expected, one row per ticker per day"
        )


def out_of_order_rows(frame: pd.DataFrame) -> dict:
    """Rows whose date does not increase over the previous row of the same ticker, in file order."""
    previous = frame.groupby("ticker", sort=False)["date"].shift()
    bad = frame.assign(previous_date=previous)[frame["date"] <= previous]
    examples = [
        {"ticker": r.ticker, "date": r.date.date().isoformat(), "previous_date": r.previous_date.date().isoformat()}
        for r in bad.head(ORDER_EXAMPLES).itertuples()
    ]
    return {"count": int(len(bad)), "tickers": sorted(bad["ticker"].astype(str).unique()), "examples": examples}


def harmonise(frames: list[pd.DataFrame], files: list[str] | None = None) -> list[pd.DataFrame]:
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
        raise IngestError("the files share no price column: " + "; ".join(f"{list(f.columns)}" for f in frames))
    return [f[common] for f in frames]
