"""The canonical frame's rules: the day as written is the trading day (time zones, integer dates, mixed
formats refused), and a missing price column is named with the file and its columns."""

from __future__ import annotations

import pandas as pd
import pytest

from tickerflow_model.canonical_prices import IngestError, detect_layout, parse_dates, wall_clock


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


def test_missing_price_names_the_file_and_columns():
    with pytest.raises(IngestError, match=r"x\.csv: missing required column 'close' or 'adj_close'.*'Open'"):
        detect_layout(["Date", "Ticker", "Open", "Volume"], "x.csv")


@pytest.mark.parametrize(
    "written, kept",
    [
        ("2020-01-02T00:00+09:00", "2020-01-02T00:00"),
        ("2020-01-02 16:00:00-0500", "2020-01-02 16:00:00"),
        ("2020-01-02T23:30Z", "2020-01-02T23:30"),
        ("2020-01-02 16:00 gmt", "2020-01-02 16:00"),
        ("2020-01-02", "2020-01-02"),  # no time of day: a trailing '-02' is the day, not an offset
    ],
)
def test_wall_clock_drops_only_an_offset_after_a_time_of_day(written, kept):
    # the registered model's date parsing uses this too, so serving keeps the same day as ingest
    assert wall_clock(pd.Series([written], dtype="string")).tolist() == [kept]
