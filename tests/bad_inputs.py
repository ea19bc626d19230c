"""A corpus of bad price files, each with the words its error message must contain.

Used by tests/test_bad_input_corpus.py; also runnable to write the corpus for trying by hand:
`python tests/bad_inputs.py OUT_DIR` writes the files and prints `name<TAB>path<TAB>expected words`.
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# Lower limits than the defaults, so the size cases stay small; passed with --config.
SMALL_LIMITS = {"ingest": {"max_rows": 5_000, "max_bytes": 1_000_000}}


@dataclass(frozen=True)
class BadInput:
    name: str
    path: Path
    expect: tuple[str, ...]  # each must appear in the output
    small_limits: bool = False  # run with SMALL_LIMITS


def _long(n: int = 30, ticker: str = "AAA", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame(
        {
            "Date": pd.bdate_range("2020-01-01", periods=n).strftime("%Y-%m-%d"),
            "Ticker": ticker,
            "Open": close,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Volume": 1000.0,
        }
    )


def write_corpus(root: Path) -> list[BadInput]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[BadInput] = []

    def text(name: str, content: str, *expect: str, small: bool = False) -> None:
        (root / name).write_text(content)
        cases.append(BadInput(name, root / name, expect, small))

    def frame(name: str, df: pd.DataFrame, *expect: str) -> None:
        df.to_csv(root / name, index=False)
        cases.append(BadInput(name, root / name, expect))

    good = _long()
    text("empty.csv", "", "empty")
    text("header_only.csv", "Date,Ticker,Close\n", "no rows")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 40)
    cases.append(BadInput("binary.csv", root / "binary.csv", ("binary",)))
    text("space_delimited.csv", "Date Ticker Close\n2020-01-02 AAA 1.0\n", "no date column")
    frame("alias_symbol_ticker.csv", good.assign(Symbol="AAA"), "'Ticker'", "'Symbol'")
    frame("alias_price_close.csv", good.assign(Price=good["Close"]), "'Close'", "'Price'")
    frame("alias_vol_volume.csv", good.assign(Vol=1.0), "'Volume'", "'Vol'")
    frame("inf_price.csv", good.assign(Close=good["Close"].where(good.index != 5, np.inf)), "close", "inf")
    frame("nan_price.csv", good.assign(Close=good["Close"].where(good.index != 5, np.nan)), "not_be_null", "close")
    frame("negative_price.csv", good.assign(Close=-good["Close"]), "be_between", "close")
    frame("high_below_low.csv", good.assign(High=good["Low"] * 0.5), "high", "low")
    frame("duplicate_days.csv", pd.concat([good, good.tail(3)]), "unique", "ticker")
    frame("path_ticker.csv", good.assign(Ticker="../../etc"), "match_regex", "ticker")
    frame(
        "text_price.csv",
        good.assign(Close=good["Close"].astype(object).where(good.index != 3, "12,5 USD")),
        "non-numeric",
        "12,5 USD",
    )
    mixed = good.copy()
    mixed.loc[10:, "Date"] = pd.to_datetime(mixed.loc[10:, "Date"]).dt.strftime("%m/%d/%Y")
    frame("mixed_date_formats.csv", mixed, "mixes date formats")
    frame("not_dates.csv", good.assign(Date=good["Date"].where(good.index != 4, "yesterday")), "not dates", "yesterday")
    frame("integer_not_dates.csv", good.assign(Date=np.arange(len(good)) + 1000), "YYYYMMDD")
    text(
        "duplicate_wide_header.csv",
        "Date,AAPL,MSFT,AAPL\n2020-01-02,1,2,3\n2020-01-03,1,2,3\n",
        "more than once",
        "AAPL",
    )
    text("no_price.csv", "Date,Ticker,Volume\n2020-01-02,AAA,5\n", "close")
    # A typo'd year among the others: refused, naming the ticker and the date (not only a gap warning).
    frame(
        "future_date.csv",
        good.assign(Date=good["Date"].where(good.index != 7, "2103-01-14")),
        "ticker AAA",
        "2103-01-14",
        "after today",
    )
    # Two bars a day (intraday data): refused, not trained as separate days.
    intraday = pd.concat([good.assign(Date=good["Date"] + " 09:30"), good.assign(Date=good["Date"] + " 16:00")])
    frame("intraday.csv", intraday, "daily bars are expected", "AAA")
    # A close-only file whose price quarters overnight: an unadjusted 4:1 split, not a 75% crash.
    split = good[["Date", "Ticker", "Close"]].assign(Close=good["Close"].where(good.index < 15, good["Close"] / 4))
    frame("unadjusted_split.csv", split, "ticker AAA", good["Date"][15], "near a 4:1 split", "ingest.splits: adjust")
    # One symbol in two cases would be trained as two tickers.
    frame("case_variant_tickers.csv", pd.concat([good, good.assign(Ticker="aaa")]), "'AAA' and 'aaa'", "only in case")
    # UTF-16 text (Excel's "Unicode text") is decoded: the error is the file's real problem, not "binary".
    (root / "utf16_no_price.csv").write_bytes("Date,Ticker,Volume\n2020-01-02,AAA,5\n".encode("utf-16"))
    cases.append(BadInput("utf16_no_price.csv", root / "utf16_no_price.csv", ("close",)))
    mix = root / "adj_close_mix"
    mix.mkdir(exist_ok=True)
    good.assign(**{"Adj Close": good["Close"]}).to_csv(mix / "a.csv", index=False)
    _long(ticker="BBB", seed=1).to_csv(mix / "b.csv", index=False)
    cases.append(BadInput("adj_close_mix", mix, ("adjusted close", "b.csv")))
    (root / "truncated.csv.gz").write_bytes(gzip.compress(good.to_csv(index=False).encode())[:120])
    cases.append(BadInput("truncated.csv.gz", root / "truncated.csv.gz", ("gzip",)))
    (root / "corrupt.parquet").write_bytes(b"PAR1" + bytes(range(200)) + b"PAR1")
    cases.append(BadInput("corrupt.parquet", root / "corrupt.parquet", ("Parquet",)))
    cases.append(BadInput("missing.csv", root / "missing.csv", ("not found",)))
    # A gzip bomb: 8 MiB of zeros after a header compresses to ~8 KiB; refused at max_bytes while inflating.
    with gzip.open(root / "gzip_bomb.csv.gz", "wb") as gz:
        gz.write(b"Date,Ticker,Close\n")
        for _ in range(8):
            gz.write(b"0" * 2**20)
    cases.append(BadInput("gzip_bomb.csv.gz", root / "gzip_bomb.csv.gz", ("max_bytes",), small_limits=True))
    # A wide file whose rows x tickers exceed max_rows.
    wide = pd.DataFrame(
        np.full((120, 60), 10.0),
        columns=[f"T{i:03d}" for i in range(60)],
        index=pd.bdate_range("2020-01-01", periods=120).strftime("%Y-%m-%d"),
    )
    wide.rename_axis("Date").to_csv(root / "oversized_wide.csv")
    cases.append(BadInput("oversized_wide.csv", root / "oversized_wide.csv", ("max_rows",), small_limits=True))
    return cases


if __name__ == "__main__":
    for case in write_corpus(Path(sys.argv[1])):
        print(f"{case.name}\t{case.path}\t{' | '.join(case.expect)}")
