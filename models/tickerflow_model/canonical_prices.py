"""The canonical price frame: one price file's columns and layout -> `date, ticker, open, high, low, close,
volume, adj_close` (those the file has), typed, in file order.

A file is read in one of three layouts, detected from its columns:

- long: a date, a ticker and at least one price column (one row per ticker-day);
- single-ticker: a date and a price column but no ticker column; the ticker is given or else the
  file name;
- wide: a date column and one close column per ticker (a portfolio export).

Column names match through ALIASES in any case. Dates are the trading day as written (`parse_dates`).
Rows that hold no price are set aside with a line that names them (`set_aside_non_prices`): days a vendor
wrote without data (`null`, empty, `NaN`, `-` in every price column) and dividend or split lines inside a
history (Yahoo's `0.08 Dividend`, `4:1 Stock Split`). Over all files, tickers that differ only in case
are refused (`refuse_case_variants`), and so, in data without an adjusted close, is a one-day move whose
ratio sits near a split's (`probable_splits`), unless the run says to adjust or keep it.
Reading the files themselves (sources, formats, limits) is `price_files.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .config import SplitPolicy
from .errors import TickerflowError
from .redaction import redact_uri
from .words import counted

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
# Rows named in a set-aside or split line before "and N more".
LISTED = 5
# What vendors write in a price cell for "no data" (lower-cased, stripped): Yahoo's `null`, FRED's `.`,
# dashes, n/a. pandas reads some of them as missing already; the others would be refused as text.
NO_DATA = frozenset({"", "-", "--", ".", "null", "none", "nan", "na", "n/a", "#n/a", "nil"})
# Corporate actions written as a line of a price history: Yahoo's `0.08 Dividend`, `4:1 Stock Split`,
# `0.5 Capital Gain` in the first price column and nothing in the others.
_AMOUNT = r"\$?\d[\d.,]*(?:\s*(?::|/|-for-|\s+for\s+)\s*\d[\d.,]*)?"
_EVENT_WORD = r"(?:stock\s+)?(?:dividends?|splits?|capital\s+gains?)"
EVENT_LINE = re.compile(rf"^\s*(?:{_AMOUNT}\s*)?{_EVENT_WORD}(?:\s*{_AMOUNT})?\s*$", re.IGNORECASE)


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
    """date + one close column per ticker -> long rows, empty cells included (`set_aside_non_prices` drops
    them: in a wide file they are the days a ticker did not trade)."""
    long = frame.melt(id_vars=[date_col], var_name="ticker", value_name="close")
    long = long.rename(columns={date_col: "date"})
    long["ticker"] = long["ticker"].astype(str)
    return long


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


# ---- rows that are not prices ----------------------------------------------------------------------
def no_data(values: pd.Series) -> np.ndarray:
    """Whether each cell says "no data": missing, or a word of NO_DATA."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.isna().to_numpy(bool)
    words = values.astype("string").str.strip().str.lower()
    return (values.isna() | words.isin(NO_DATA)).to_numpy(bool)


def event_lines(values: pd.Series) -> np.ndarray:
    """Whether each cell is a dividend, split or capital-gain line (EVENT_LINE) rather than a price."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return np.zeros(len(values), bool)
    return values.astype("string").str.fullmatch(EVENT_LINE).fillna(False).to_numpy(bool)


def set_aside_non_prices(frame: pd.DataFrame, layout: str) -> tuple[pd.DataFrame, list[str]]:
    """The rows that hold a price -> (them, one line per kind of row set aside, without the file's name).

    Set aside: rows with no data in every price column (Yahoo's `null` days, empty, `NaN`, `-`), and
    dividend or split lines (a corporate action's text in one price column, the others empty). A wide
    file's empty cells are the days a ticker did not trade, dropped without a line. In the rows kept, a
    no-data word is a missing value, for validation to name; any other text is refused by `_typed`.
    """
    cols = [c for c in PRICE_COLUMNS if c in frame.columns]
    missing = {c: no_data(frame[c]) for c in cols}
    empty = np.logical_and.reduce(list(missing.values()))
    event = np.zeros(len(frame), bool)
    texts = []  # the event lines' words, from the column that holds each
    for c in [c for c in cols if not pd.api.types.is_numeric_dtype(frame[c].dtype)]:
        others = [missing[o] for o in cols if o != c]
        here = event_lines(frame[c]) & (np.logical_and.reduce(others) if others else True) & ~event
        texts.append(frame.loc[here, c].astype("string").str.strip())
        event |= here
    lines = []
    several = frame["ticker"].nunique(dropna=True) > 1
    if empty.any() and layout != "wide":
        lines.append(
            f"dropped {counted(int(empty.sum()), 'row')} with no price (null, empty, NaN or '-' in every "
            f"price column): {_listed(frame[empty], several)}"
        )
    if event.any():
        lines.append(
            f"set aside {counted(int(event.sum()), 'dividend/split line')}, which are not prices: "
            f"{_listed(frame[event], several, pd.concat(texts).sort_index())}"
        )
    dropped = empty | event
    kept = frame[~dropped].reset_index(drop=True) if dropped.any() else frame
    for c in [c for c in cols + ["volume"] if c in kept.columns]:
        if not pd.api.types.is_numeric_dtype(kept[c].dtype):
            kept[c] = kept[c].mask(no_data(kept[c]))
    return kept, lines


def _listed(rows: pd.DataFrame, with_ticker: bool, texts: pd.Series | None = None) -> str:
    """The first LISTED rows as `[TICKER ]YYYY-MM-DD[ (text)]`, then "and N more"."""
    shown = []
    for i, (ticker, date) in enumerate(zip(rows["ticker"].head(LISTED), rows["date"].head(LISTED))):
        item = "no date" if pd.isna(date) else f"{date:%Y-%m-%d}"
        item = f"{ticker} {item}" if with_ticker else item
        shown.append(f"{item} ({texts.iloc[i]})" if texts is not None else item)
    more = len(rows) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


def _typed(out: pd.DataFrame, origin: str) -> pd.DataFrame:
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


def to_canonical(frame: pd.DataFrame, origin: str, ticker: str | None = None) -> tuple[pd.DataFrame, str, list[str]]:
    """Map one file's frame to the canonical columns and types -> (frame in file order, layout, one line per
    kind of row set aside, without the file's name)."""
    layout = detect_layout(list(frame.columns), origin)
    found = match_columns(list(frame.columns))
    if layout == "wide":
        out = wide_to_long(frame, found["date"])
    else:
        out = frame.rename(columns={col: canon for canon, col in found.items()})
        out = out[[c for c in CANONICAL if c in found]].copy()
        if layout == "single-ticker":
            out.insert(1, "ticker", ticker or ticker_from_name(origin))
    out = out.reset_index(drop=True)
    out["date"] = parse_dates(out["date"], origin).astype("datetime64[ns]")
    kept, set_aside = set_aside_non_prices(out, layout)
    typed = _typed(kept, origin)
    refuse_future_dates(typed, origin)
    refuse_intraday_bars(typed, origin)
    return typed, layout, set_aside


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
            f"({counted(int(late.sum()), 'row')} after {latest:%Y-%m-%d}); dates must not lie in the future"
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
            f"({counted(len(several), 'ticker-day')} like it); daily bars are expected, one row per ticker per day"
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
            f"{counted(len(with_adj), 'file')} {'has' if len(with_adj) == 1 else 'have'} an adjusted close and {len(without)} {'does' if len(without) == 1 else 'do'} not "
            f"(with: {', '.join(with_adj[:3])}; without: {', '.join(without[:3])}); training on a mix would "
            "silently use unadjusted closes: give every file an adj_close column, or drop it from all"
        )
    common = [c for c in CANONICAL if all(c in f.columns for f in frames)]
    if not any(p in common for p in PRICES):
        raise IngestError("the files share no price column: " + "; ".join(f"{list(f.columns)}" for f in frames))
    return [f[common] for f in frames]


def refuse_case_variants(frames: list[pd.DataFrame], files: list[str]) -> None:
    """`AAPL` and `aapl` would be trained as two tickers: refused, naming both spellings and their files."""
    spellings: dict[str, dict[str, str]] = {}  # casefolded -> spelling -> the first file that has it
    for frame, name in zip(frames, files):
        for ticker in frame["ticker"].dropna().unique():
            spellings.setdefault(str(ticker).casefold(), {}).setdefault(str(ticker), name)
    clashes = [found for found in spellings.values() if len(found) > 1]
    if not clashes:
        return
    (first, first_file), (second, second_file) = list(clashes[0].items())[:2]
    where = (
        f"{first_file}: tickers {first!r} and {second!r}"
        if first_file == second_file
        else f"tickers {first!r} ({first_file}) and {second!r} ({second_file})"
    )
    more = f" ({counted(len(clashes) - 1, 'more symbol')} like it)" if len(clashes) > 1 else ""
    raise IngestError(
        f"{where} differ only in case{more}; they would be trained as two tickers: write each symbol one way"
    )


# ---- unadjusted splits -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitRatio:
    """A split of `new` shares for every `old` one: the price is multiplied by old / new (4:1 -> 0.25)."""

    new: int
    old: int
    # The largest |log(observed ratio / price_ratio)| that still reads as this split: the stock's own move
    # on the day of the split.
    tolerance: float

    @property
    def price_ratio(self) -> float:
        return self.old / self.new

    @property
    def name(self) -> str:
        return f"{self.new}:{self.old}"


# A split on a day the stock also moved up to ~7% either way is still recognised (log 0.07). Neighbouring
# ratios stay apart: the closest pair, 7:1 and 8:1, is log 0.134 apart, so the nearest ratio names it.
SPLIT_TOLERANCE = 0.07
# 3:2 and 2:3 are a 33% fall and a 50% rise, sizes that real moves (an earnings miss, a failed trial, a
# takeover) reach far more often than a 50% fall or more; a tighter window keeps a -35% day from reading as
# 3:2, at the price of missing a 3:2 split on a day the stock also moved more than 2%.
NEAR_SPLIT_TOLERANCE = 0.02
_WHOLE_SPLITS = (2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50, 100, 150, 200, 250, 500, 1000)
SPLIT_RATIOS = (
    *(SplitRatio(k, 1, SPLIT_TOLERANCE) for k in _WHOLE_SPLITS),  # forward, k:1
    *(SplitRatio(1, k, SPLIT_TOLERANCE) for k in _WHOLE_SPLITS),  # reverse, 1:k
    SplitRatio(5, 2, SPLIT_TOLERANCE),
    SplitRatio(2, 5, SPLIT_TOLERANCE),
    SplitRatio(3, 2, NEAR_SPLIT_TOLERANCE),
    SplitRatio(2, 3, NEAR_SPLIT_TOLERANCE),
)
# Days on each side of a move whose median prices say whether the new level held (a split) or the price
# came back (a bad print, validation's outlier warning): up to two bad days in five are outvoted.
LEVEL_DAYS = 5


@dataclass(frozen=True)
class ProbableSplit:
    ticker: str
    date: pd.Timestamp
    before: float  # the close the day before
    after: float  # the close on the day
    ratio: SplitRatio
    opened: float | None = None  # the open on the day, when only the open sits near the ratio

    @property
    def observed(self) -> float:
        return self.after / self.before

    def describe(self) -> str:
        kind = "split" if self.ratio.price_ratio < 1 else "reverse split"
        at_open = (
            "" if self.opened is None else f"; it opened at {self.opened:.6g}, ratio {self.opened / self.before:.3g}"
        )
        return (
            f"ticker {self.ticker} goes from {self.before:.6g} to {self.after:.6g} on {self.date:%Y-%m-%d} "
            f"(ratio {self.observed:.3g}{at_open}, near a {self.ratio.name} {kind}'s {self.ratio.price_ratio:.3g})"
        )

    def adjustment(self) -> str:
        """What `ingest.splits: adjust` does about it, in words."""
        factor = self.ratio.new / self.ratio.old
        earlier = f"{self.ticker}'s prices before {self.date:%Y-%m-%d}"
        if factor > 1:
            return f"divide {earlier} by {factor:g} (and multiply their volume by {factor:g})"
        return f"multiply {earlier} by {1 / factor:g} (and divide their volume by {1 / factor:g})"


def probable_splits(frame: pd.DataFrame) -> list[ProbableSplit]:
    """One-day moves of the close that look like an unadjusted split, in ticker and date order.

    A move is one when its ratio (close over the previous close) lies within a split's tolerance of one
    of SPLIT_RATIOS, the nearest, and the new level holds: the median of the LEVEL_DAYS closes from that
    day on is nearer the new level than the old (the median of the LEVEL_DAYS before it), in log terms.
    An ordinary large move (-35%, +40%) fails the first test, a bad print that comes back the next day
    the second. With an `open` column the day's open over the previous close counts too: a split day's
    open sits at the new level before the day's own move (Apple's 2:1 of 2000-06-21 opened at 0.499 of
    the previous close and closed at 0.549, up 10% on the day).
    """
    columns = ["ticker", "date", "close"] + (["open"] if "open" in frame.columns else [])
    rows = frame[columns].sort_values(["ticker", "date"], kind="stable")
    close = rows["close"].to_numpy(np.float64)
    usable = np.isfinite(close) & (close > 0)  # others are validation's to refuse
    rows, close = rows[usable], close[usable]
    if len(rows) < 2:
        return []
    opened = rows["open"].to_numpy(np.float64) if "open" in rows.columns else np.full(len(rows), np.nan)
    codes = pd.factorize(rows["ticker"])[0]
    starts = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]
    ends = np.r_[starts[1:], len(rows)]
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.log(close[1:] / close[:-1])  # (n - 1,) the move into row i + 1
        gap = np.log(opened[1:] / close[:-1])  # (n - 1,) NaN without an open
    logs = np.log([r.price_ratio for r in SPLIT_RATIOS])  # (R,)
    tolerance = np.array([r.tolerance for r in SPLIT_RATIOS])  # (R,)
    floor = np.min(np.abs(logs) - tolerance)
    large = (np.abs(step) >= floor) | (np.abs(gap) >= floor)  # (NaN compares False)
    found = []
    for i in np.flatnonzero((codes[1:] == codes[:-1]) & large):
        by_close = np.abs(step[i] - logs)  # (R,)
        by_open = np.abs(gap[i] - logs) if np.isfinite(gap[i]) else np.full(len(logs), np.inf)  # (R,)
        distance = np.minimum(by_close, by_open)  # (R,)
        nearest = int(np.argmin(distance))
        if distance[nearest] > tolerance[nearest]:
            continue
        day, ticker = i + 1, codes[i + 1]
        old = np.median(close[max(starts[ticker], day - LEVEL_DAYS) : day])
        new = np.median(close[day : min(ends[ticker], day + LEVEL_DAYS)])
        if abs(np.log(new / old) - logs[nearest]) >= abs(logs[nearest]) / 2:
            continue  # the price came back: a bad print, not a split
        found.append(
            ProbableSplit(
                ticker=str(rows["ticker"].iloc[day]),
                date=pd.Timestamp(rows["date"].iloc[day]),
                before=float(close[i]),
                after=float(close[day]),
                ratio=SPLIT_RATIOS[nearest],
                opened=float(opened[day]) if by_close[nearest] > tolerance[nearest] else None,
            )
        )
    return found


def refuse_splits(found: list[ProbableSplit], origin: str) -> None:
    """Raise for the first probable split (`origin`: its file), naming the others, with the ways on."""
    if not found:
        return
    first = found[0]
    more = ""
    if len(found) > 1:
        others = ", ".join(f"{s.ticker} {s.date:%Y-%m-%d} ({s.ratio.name})" for s in found[1:LISTED])
        extra = len(found) - min(len(found), LISTED)
        more = f" (and {len(found) - 1:,} more: {others}" + (f" and {extra:,} more" if extra > 0 else "") + ")"
    raise IngestError(
        f"{origin}: {first.describe()}{more}: probably an unadjusted split, in data without an adjusted close; "
        f"add an adjusted close column, or set ingest.splits: adjust (tickerflow forecast: --splits adjust) to "
        f"{first.adjustment()}, or ingest.splits: keep if the move is real"
    )


def adjust_for_splits(frame: pd.DataFrame, found: list[ProbableSplit]) -> pd.DataFrame:
    """Prices before each split multiplied by its price ratio (a 4:1 split divides them by 4) and their
    volume divided by it, so the series continues at the new level without the jump."""
    scale = np.ones(len(frame))
    for split in found:
        before = (frame["ticker"] == split.ticker).to_numpy(bool) & (frame["date"] < split.date).to_numpy(bool)
        scale[before] *= split.ratio.price_ratio
    out = frame.copy()
    for col in [c for c in PRICE_COLUMNS if c in out.columns]:
        out[col] = out[col].to_numpy(np.float64) * scale
    if "volume" in out.columns:
        out["volume"] = out["volume"].to_numpy(np.float64) / scale
    return out


def split_lines(found: list[ProbableSplit], policy: SplitPolicy) -> list[str]:
    """The one line that says what `adjust` or `keep` did with the probable splits."""
    if not found or policy == "refuse":
        return []
    listed = ", ".join(
        f"{s.ticker} {s.ratio.name} on {s.date:%Y-%m-%d} (ratio {s.observed:.3g})" for s in found[:LISTED]
    )
    extra = len(found) - min(len(found), LISTED)
    listed += f" and {extra:,} more" if extra > 0 else ""
    if policy == "adjust":
        return [
            f"adjusted {counted(len(found), 'probable unadjusted split')} (ingest.splits: adjust): {listed}; the prices "
            "before each were scaled by its ratio and their volume by its inverse"
        ]
    return [f"kept {counted(len(found), 'probable unadjusted split')} as written (ingest.splits: keep): {listed}"]
