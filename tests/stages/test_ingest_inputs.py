"""Inputs that used to fool ingest: time zones, integer dates, aliases, duplicate headers, size limits."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from tickerflow.tasks.ingest import IngestConfig, IngestError, parse_dates, read_prices


def _csv(tmp_path, text: str, name: str = "p.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "written, day",
    [
        ("2020-01-02T00:00+09:00", "2020-01-02"),  # Tokyo midnight is still the 2nd, not 2020-01-01 15:00 UTC
        ("2020-01-02 16:00:00-05:00", "2020-01-02"),
        ("2020-01-02T23:30Z", "2020-01-02"),
        ("20200102", "2020-01-02"),
        ("2020-01-02", "2020-01-02"),
    ],
)
def test_the_day_as_written_is_the_trading_day(written, day):
    parsed = parse_dates(pd.Series([written]), "f.csv")
    assert parsed.dt.strftime("%Y-%m-%d").tolist() == [day]


def test_mixed_offsets_in_one_column_keep_each_written_day():
    parsed = parse_dates(pd.Series(["2020-01-02T00:00+09:00", "2020-01-03T00:00-05:00"]), "f.csv")
    assert parsed.dt.strftime("%Y-%m-%d").tolist() == ["2020-01-02", "2020-01-03"]


def test_tz_aware_datetimes_keep_their_local_day():
    values = pd.Series(pd.to_datetime(["2020-01-02 00:30"]).tz_localize("Asia/Tokyo"))
    assert parse_dates(values, "f.parquet").dt.strftime("%Y-%m-%d").tolist() == ["2020-01-02"]


@pytest.mark.parametrize(
    "values, day",
    [([20200102, 20200103], "2020-01-02"), ([1577923200, 1578009600], "2020-01-02"), ([1577923200000], "2020-01-02")],
)
def test_integer_dates_are_yyyymmdd_or_epoch(values, day):
    assert parse_dates(pd.Series(values), "f.csv").dt.strftime("%Y-%m-%d").iloc[0] == day


@pytest.mark.parametrize("values", [[12345], [20201399], [-5]])
def test_other_integers_are_refused_clearly(values):
    with pytest.raises(IngestError, match="f.csv: column 'date'"):
        parse_dates(pd.Series(values), "f.csv")


def test_mixed_formats_are_named_as_such():
    with pytest.raises(IngestError, match="mixes date formats, e.g. '2020-01-02' and '01/03/2020'"):
        parse_dates(pd.Series(["2020-01-02", "01/03/2020"]), "f.csv")


@pytest.mark.parametrize(
    "header, names", [("Date,Symbol,Ticker,Close", "'Symbol', 'Ticker'"), ("Date,Ticker,Price,Close", "'Price', 'Close'"),
                      ("Date,Ticker,Close,Vol,Volume", "'Vol', 'Volume'")],
)
def test_alias_collisions_are_refused_naming_both(tmp_path, header, names):
    row = ",".join(["2020-01-02"] + ["1"] * (header.count(",")))
    with pytest.raises(IngestError, match=names):
        read_prices(_csv(tmp_path, f"{header}\n{row}\n"))


def test_a_wide_file_with_a_ticker_twice_is_refused(tmp_path):
    with pytest.raises(IngestError, match="'AAPL' appear more than once"):
        read_prices(_csv(tmp_path, "Date,AAPL,MSFT,AAPL\n2020-01-02,1,2,3\n"))


def test_semicolon_files_are_read(tmp_path):
    frame, _, _, _ = read_prices(_csv(tmp_path, "Date;Ticker;Close\n2020-01-02;AAA;1.5\n"))
    assert frame["close"].tolist() == [1.5]


def test_an_adj_close_mix_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("Date,Ticker,Close,Adj Close\n2020-01-02,AAA,1,1\n")
    (tmp_path / "d" / "b.csv").write_text("Date,Ticker,Close\n2020-01-02,BBB,1\n")
    with pytest.raises(IngestError, match=r"with: .*a\.csv; without: .*b\.csv"):
        read_prices(str(tmp_path / "d"))


def test_a_gzip_bomb_is_refused_while_inflating(tmp_path):
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb") as gz:
        gz.write(b"Date,Ticker,Close\n" + b"0" * (4 * 2**20))
    with pytest.raises(IngestError, match="decompresses to more than ingest.max_bytes"):
        read_prices(str(path), max_bytes=2**20)


def test_row_limit_counts_ticker_days_of_a_wide_file(tmp_path):
    wide = pd.DataFrame(np.ones((50, 30)), columns=[f"T{i}" for i in range(30)])
    wide.insert(0, "Date", pd.bdate_range("2020-01-01", periods=50).strftime("%Y-%m-%d"))
    wide.to_csv(tmp_path / "w.csv", index=False)
    assert len(read_prices(str(tmp_path / "w.csv"), max_rows=1500)[0]) == 1500
    with pytest.raises(IngestError, match="more than ingest.max_rows"):
        read_prices(str(tmp_path / "w.csv"), max_rows=1499)


def test_a_5000_ticker_wide_file_is_a_legitimate_universe(tmp_path):
    wide = pd.DataFrame(np.full((5, 5000), 10.0), columns=[f"T{i:04d}" for i in range(5000)])
    wide.insert(0, "Date", pd.bdate_range("2020-01-01", periods=5).strftime("%Y-%m-%d"))
    wide.to_csv(tmp_path / "w.csv", index=False)
    frame, _, _, layouts = read_prices(str(tmp_path / "w.csv"))  # default limits
    assert layouts == ["wide"] and frame["ticker"].nunique() == 5000


@pytest.mark.parametrize("field, value", [("max_rows", 0), ("max_bytes", -1)])
def test_limits_are_validated_in_the_config(field, value):
    with pytest.raises(ValueError, match=f"{field}\n +Input should be greater than or equal to 1 .*input_value={value}"):
        IngestConfig(**{field: value})


def test_inf_prices_fail_validation(tmp_path):
    from tickerflow.tasks.validate import ValidateConfig, run_suite

    frame, _, _, _ = read_prices(_csv(tmp_path, "Date,Ticker,Close\n2020-01-02,AAA,1\n2020-01-03,AAA,inf\n"))
    report = run_suite(frame, ValidateConfig(), 1, tmp_path / "docs")
    assert not report.success
    assert any(f.column == "close" and "close=inf" in f.line() for f in report.critical)
