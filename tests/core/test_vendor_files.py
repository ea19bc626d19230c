"""Files as data vendors write them: days without data and dividend/split lines are set aside with a line
naming them, tickers that differ only in case are refused, and a one-day move near a split ratio in data
without an adjusted close is refused, adjusted or kept as `ingest.splits` says."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from tickerflow_model.canonical_prices import event_lines
from tickerflow_model.price_files import IngestError, read_prices

DATES = pd.bdate_range("2020-01-01", periods=60)
SPLIT_DAY = 30  # index into DATES of the day a split takes effect
YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def _read(path, splits="refuse"):
    notes: list[str] = []
    frame, source_hash, _, layouts = read_prices(str(path), splits=splits, on_note=notes.append)
    return frame, notes, source_hash, layouts


def _yahoo_row(day: pd.Timestamp, close: float) -> str:
    return f"{day:%Y-%m-%d},{close},{close * 1.01},{close * 0.99},{close},{close},1000"


def _closes(new: int = 1, old: int = 1, own_move: float = 0.0, at: int = SPLIT_DAY, seed: int = 0) -> np.ndarray:
    """60 closes of a 1%-a-day random walk; from day `at` on, a new:old split (the price times old/new) on a
    day the stock itself moved `own_move`."""
    steps = np.random.default_rng(seed).normal(0, 0.01, len(DATES))
    steps[0] = 0.0
    steps[at] = np.log(old / new) + np.log1p(own_move)
    return 100 * np.exp(np.cumsum(steps))


def _write(tmp_path, layout: str, closes: np.ndarray):
    """AAA's closes (and a quiet BBB beside it) as a close-only file in `layout`."""
    other = _closes(seed=1)
    days = DATES.strftime("%Y-%m-%d")
    if layout == "single-ticker":
        path = tmp_path / "AAA.csv"
        pd.DataFrame({"Date": days, "Close": closes}).to_csv(path, index=False)
    elif layout == "long":
        path = tmp_path / "prices.csv"
        long = pd.concat(
            [
                pd.DataFrame({"Date": days, "Ticker": "BBB", "Close": other}),
                pd.DataFrame({"Date": days, "Ticker": "AAA", "Close": closes}),
            ]
        )
        long.to_csv(path, index=False)
    else:
        path = tmp_path / "portfolio.csv"
        pd.DataFrame({"Date": days, "BBB": other, "AAA": closes}).to_csv(path, index=False)
    return path


# ---- rows without a price ------------------------------------------------------------------------
@pytest.mark.parametrize("word", ["null", "", "NaN", "-", "N/A", "."])
def test_days_without_data_are_dropped_and_named(tmp_path, word):
    empty_days = [DATES[3], DATES[5], DATES[9]]
    lines = [YAHOO_HEADER]
    for day in DATES[:12]:
        lines.append(f"{day:%Y-%m-%d}" + f",{word}" * 6 if day in empty_days else _yahoo_row(day, 75.0))
    path = tmp_path / "AAPL.csv"
    path.write_text("\n".join(lines) + "\n")

    frame, notes, _, _ = _read(path)

    assert len(frame) == 9 and not frame["date"].isin(empty_days).any()
    assert not frame[["open", "high", "low", "close", "adj_close"]].isna().any().any()
    assert notes == [
        f"{path}: dropped 3 rows with no price (null, empty, NaN or '-' in every price column): "
        "2020-01-06, 2020-01-08, 2020-01-14"
    ]


def test_many_days_without_data_name_a_few_and_count_the_rest(tmp_path):
    rows = [f"{day:%Y-%m-%d},AAA,null" if i % 5 == 0 else f"{day:%Y-%m-%d},AAA,10" for i, day in enumerate(DATES)]
    path = tmp_path / "p.csv"
    path.write_text("Date,Ticker,Close\n" + "\n".join(rows) + "\n")

    frame, notes, _, _ = _read(path)

    assert len(frame) == 48
    listed = ", ".join(f"{d:%Y-%m-%d}" for d in DATES[0:25:5])
    assert notes == [
        f"{path}: dropped 12 rows with no price (null, empty, NaN or '-' in every price column): {listed} and 7 more"
    ]


def test_in_a_long_file_the_rows_dropped_are_named_with_their_ticker(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("Date,Ticker,Close\n2020-01-02,AAA,1\n2020-01-03,BBB,null\n2020-01-03,AAA,1\n2020-01-02,BBB,2\n")
    frame, notes, _, _ = _read(path)
    assert len(frame) == 3
    assert notes[0].endswith(
        "dropped 1 row with no price (null, empty, NaN or '-' in every price column): BBB 2020-01-03"
    )


def test_a_row_missing_only_some_prices_is_kept_for_validation_to_refuse(tmp_path):
    path = tmp_path / "AAPL.csv"
    path.write_text(f"{YAHOO_HEADER}\n{_yahoo_row(DATES[0], 75.0)}\n2020-01-02,75,76,74,null,75,1000\n")
    frame, notes, _, _ = _read(path)
    assert notes == [] and len(frame) == 2 and frame["close"].isna().sum() == 1


def test_a_wide_files_empty_cells_are_the_days_a_ticker_did_not_trade(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("Date,AAA,BBB\n2020-01-02,1,null\n2020-01-03,1,-\n2020-01-06,1,2\n")
    frame, notes, _, _ = _read(path)
    assert notes == []  # a ticker listed later is no news
    assert frame.groupby("ticker").size().to_dict() == {"AAA": 3, "BBB": 1}


# ---- dividend and split lines --------------------------------------------------------------------
def test_dividend_and_split_lines_are_set_aside_and_named(tmp_path):
    lines = [YAHOO_HEADER] + [_yahoo_row(day, 75.0) for day in DATES[:10]]
    lines.insert(5, f"{DATES[3]:%Y-%m-%d},0.08 Dividend")  # on a trading day, as Yahoo writes it
    lines.insert(9, f"{DATES[7]:%Y-%m-%d},4:1 Stock Split")
    path = tmp_path / "AAPL.csv"
    path.write_text("\n".join(lines) + "\n")

    frame, notes, _, _ = _read(path)

    assert frame["date"].tolist() == list(DATES[:10])  # one row a day: no duplicate from the event lines
    assert (frame["close"] == 75.0).all()
    assert notes == [
        f"{path}: set aside 2 dividend/split lines, which are not prices: "
        "2020-01-06 (0.08 Dividend), 2020-01-10 (4:1 Stock Split)"
    ]


@pytest.mark.parametrize(
    "text, event",
    [
        ("0.08 Dividend", True),
        ("4:1 Stock Split", True),
        ("1:10 Stock Splits", True),
        ("2-for-1 split", True),
        ("Dividend", True),
        ("0.5 Capital Gain", True),
        ("$0.22 dividend", True),
        ("12,5 USD", False),
        ("n/a?", False),
        ("Dividend paid in shares of X", False),
    ],
)
def test_event_lines_are_recognised_by_their_words(text, event):
    assert event_lines(pd.Series([text], dtype="string")).tolist() == [event]


def test_other_text_in_a_price_column_is_still_refused_naming_column_value_and_row(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('Date,Ticker,Close\n2020-01-01,AAA,1\n2020-01-02,AAA,"12,5 USD"\n')
    with pytest.raises(
        IngestError,
        match=r"p\.csv: column 'close' has non-numeric values, e\.g\. '12,5 USD' \(ticker AAA, date 2020-01-02",
    ):
        _read(path)


def test_event_text_beside_prices_is_not_an_event_line(tmp_path):
    path = tmp_path / "AAPL.csv"
    path.write_text(f"{YAHOO_HEADER}\n{_yahoo_row(DATES[0], 75.0)}\n2020-01-02,0.08 Dividend,76,74,75,75,1000\n")
    with pytest.raises(IngestError, match=r"column 'open' has non-numeric values, e\.g\. '0\.08 Dividend'"):
        _read(path)


# ---- tickers that differ only in case ------------------------------------------------------------
def test_tickers_differing_only_in_case_in_one_file_are_refused_naming_both(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("Date,Ticker,Close\n2020-01-02,AAPL,1\n2020-01-02,aapl,1\n2020-01-03,AAPL,1\n")
    with pytest.raises(IngestError, match="^" + re.escape(f"{path}: tickers 'AAPL' and 'aapl' differ only in case; ")):
        _read(path)


def test_tickers_differing_only_in_case_across_files_are_refused_naming_both_files(tmp_path):
    for name in ("AAPL.csv", "aapl.csv"):
        (tmp_path / name).write_text("Date,Close\n2020-01-02,1\n2020-01-03,1\n")
    with pytest.raises(
        IngestError,
        match=re.escape(f"tickers 'AAPL' ({tmp_path}/AAPL.csv) and 'aapl' ({tmp_path}/aapl.csv) differ only in case"),
    ):
        _read(tmp_path)


def test_a_wide_file_with_case_variant_columns_is_refused(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("Date,MSFT,msft\n2020-01-02,1,2\n")
    with pytest.raises(IngestError, match="tickers 'MSFT' and 'msft' differ only in case"):
        _read(path)


# ---- unadjusted splits ---------------------------------------------------------------------------
SPLITS = [
    *[(k, 1) for k in (2, 3, 4, 5, 7, 8, 10, 15, 20, 25, 50, 100)],  # forward k:1
    (3, 2),
    (5, 2),
    *[(1, k) for k in (2, 5, 10, 20, 50, 100)],  # reverse 1:k
    (2, 3),
]


@pytest.mark.parametrize("layout", ["single-ticker", "long", "wide"])
@pytest.mark.parametrize("new, old", SPLITS, ids=lambda v: str(v))
def test_every_split_ratio_is_refused_in_close_only_data_of_every_layout(tmp_path, layout, new, old):
    closes = _closes(new, old)
    path = _write(tmp_path, layout, closes)
    with pytest.raises(IngestError) as err:
        _read(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ticker AAA goes from {closes[SPLIT_DAY - 1]:.6g} to {closes[SPLIT_DAY]:.6g} ")
    assert f"on {DATES[SPLIT_DAY]:%Y-%m-%d} (ratio {closes[SPLIT_DAY] / closes[SPLIT_DAY - 1]:.3g}, " in message
    assert f"near a {new}:{old} " in message
    assert "add an adjusted close column" in message
    assert "ingest.splits: adjust" in message and "ingest.splits: keep" in message


@pytest.mark.parametrize("new, old", [(2, 1), (4, 1), (10, 1), (1, 10)])
@pytest.mark.parametrize("own_move", [0.03, -0.04])
def test_a_split_on_a_day_the_stock_also_moved_is_still_refused(tmp_path, new, old, own_move):
    closes = _closes(new, old, own_move)
    with pytest.raises(IngestError, match=rf"ticker AAA .* on {DATES[SPLIT_DAY]:%Y-%m-%d} .*near a {new}:{old} "):
        _read(_write(tmp_path, "long", closes))


def test_a_split_day_that_opened_at_the_new_level_is_refused_though_its_close_moved_10_percent(tmp_path):
    # Apple's 2:1 of 2000-06-21: opened at 0.499 of the previous close, closed at 0.549
    closes = _closes(2, 1, own_move=0.10)
    opens = np.r_[closes[0], closes[:-1]]
    opens[SPLIT_DAY] = closes[SPLIT_DAY - 1] / 2
    frame = pd.DataFrame(
        {
            "Date": DATES,
            "Open": opens,
            "High": np.maximum(opens, closes),
            "Low": np.minimum(opens, closes),
            "Close": closes,
        }
    )
    frame.to_csv(tmp_path / "AAA.csv", index=False)
    with pytest.raises(IngestError, match=r"\(ratio 0\.55; it opened at [\d.]+, ratio 0\.5, near a 2:1 split's 0\.5\)"):
        _read(tmp_path / "AAA.csv")
    # the close alone is 10% off the ratio: beyond the tolerance
    frame.drop(columns=["Open", "High", "Low"]).to_csv(tmp_path / "AAA.csv", index=False)
    assert len(_read(tmp_path / "AAA.csv")[0]) == len(DATES)


@pytest.mark.parametrize("factor", [0.25, 4.0, 0.5, 0.1])
def test_a_bad_print_that_comes_back_the_next_day_is_not_a_split(tmp_path, factor):
    closes = _closes()
    closes[SPLIT_DAY] *= factor  # one wrong day: validation's outlier warning, not a split
    frame, notes, _, _ = _read(_write(tmp_path, "long", closes))
    np.testing.assert_allclose(frame.loc[frame["ticker"] == "AAA", "close"], closes)
    assert notes == []


@pytest.mark.parametrize("move", [-0.35, -0.20, -0.55, -0.70, 0.40, 0.80])
def test_ordinary_large_moves_away_from_split_ratios_are_not_refused(tmp_path, move):
    closes = _closes(own_move=move)  # the new level holds: a crash or a jump, not a bad print
    frame, notes, _, _ = _read(_write(tmp_path, "single-ticker", closes))
    np.testing.assert_allclose(frame["close"], closes)
    assert notes == []


def test_data_with_an_adjusted_close_is_not_checked(tmp_path):
    closes = _closes(4, 1)
    adjusted = _closes()  # the vendor's adjusted series: no jump
    path = tmp_path / "AAA.csv"
    pd.DataFrame({"Date": DATES, "Close": closes, "Adj Close": adjusted}).to_csv(path, index=False)
    frame, notes, _, _ = _read(path)
    np.testing.assert_allclose(frame["close"], closes)
    assert notes == []


def test_without_a_policy_the_reader_does_not_check(tmp_path):
    path = _write(tmp_path, "long", _closes(4, 1))
    frame, _, _, _ = read_prices(str(path))  # what the stage's ingest.splits decides is not the reader's
    assert len(frame) == 2 * len(DATES)


def _ohlcv(tmp_path, closes: np.ndarray):
    rng = np.random.default_rng(3)
    volume = rng.integers(1_000, 2_000, len(closes)).astype(float)
    frame = pd.DataFrame(
        {
            "Date": DATES,
            "Ticker": "AAA",
            "Open": closes * 0.999,
            "High": closes * 1.01,
            "Low": closes * 0.99,
            "Close": closes,
            "Volume": volume,
        }
    )
    quiet = frame.assign(Ticker="BBB", Close=_closes(seed=1)).assign(
        Open=lambda f: f["Close"], High=lambda f: f["Close"], Low=lambda f: f["Close"]
    )
    path = tmp_path / "prices.csv"
    pd.concat([frame, quiet]).to_csv(path, index=False)
    return path, frame


@pytest.mark.parametrize("new, old", [(4, 1), (3, 2), (1, 10)])
def test_adjust_scales_the_earlier_prices_and_volume_so_the_series_has_no_jump(tmp_path, new, old):
    closes = _closes(new, old, own_move=0.01)
    path, written = _ohlcv(tmp_path, closes)
    kept, _, kept_hash, _ = _read(path, "keep")

    frame, notes, adjusted_hash, _ = _read(path, "adjust")

    aaa = frame[frame["ticker"] == "AAA"].reset_index(drop=True)
    ratio = old / new
    before = np.arange(len(DATES)) < SPLIT_DAY
    for col in ("Open", "High", "Low", "Close"):
        expected = np.where(before, written[col] * ratio, written[col])
        np.testing.assert_allclose(aaa[col.lower()], expected, rtol=1e-12)
    np.testing.assert_allclose(aaa["volume"], np.where(before, written["Volume"] / ratio, written["Volume"]))
    assert np.abs(np.diff(np.log(aaa["close"]))).max() < 0.05  # the split day keeps only its own 1% move
    pd.testing.assert_frame_equal(frame[frame["ticker"] == "BBB"], kept[kept["ticker"] == "BBB"])
    assert notes == [
        f"adjusted 1 probable unadjusted split (ingest.splits: adjust): AAA {new}:{old} on "
        f"{DATES[SPLIT_DAY]:%Y-%m-%d} (ratio {closes[SPLIT_DAY] / closes[SPLIT_DAY - 1]:.3g}); the prices "
        "before each were scaled by its ratio and their volume by its inverse"
    ]
    # a frame the rules changed is not the bytes' frame: no cached validation or windows are shared
    assert adjusted_hash != kept_hash


def test_adjust_compounds_two_splits_of_one_ticker(tmp_path):
    steps = np.random.default_rng(0).normal(0, 0.01, len(DATES))
    steps[0] = 0.0
    steps[20] += np.log(1 / 2)
    steps[40] += np.log(1 / 3)
    closes = 100 * np.exp(np.cumsum(steps))
    frame, notes, _, _ = _read(_write(tmp_path, "single-ticker", closes), "adjust")
    scale = np.where(np.arange(60) < 20, 1 / 6, np.where(np.arange(60) < 40, 1 / 3, 1.0))
    np.testing.assert_allclose(frame["close"], closes * scale, rtol=1e-12)
    assert f"AAA 2:1 on {DATES[20]:%Y-%m-%d}" in notes[0] and f"AAA 3:1 on {DATES[40]:%Y-%m-%d}" in notes[0]


def test_keep_keeps_the_data_as_written_and_says_so(tmp_path):
    closes = _closes(own_move=-0.50)  # a real -50% day reads as a 2:1 split: the known false positive
    path = _write(tmp_path, "single-ticker", closes)
    with pytest.raises(IngestError, match="near a 2:1 split's 0.5"):
        _read(path)

    frame, notes, _, _ = _read(path, "keep")

    np.testing.assert_allclose(frame["close"], closes)
    assert notes == [
        f"kept 1 probable unadjusted split as written (ingest.splits: keep): AAA 2:1 on "
        f"{DATES[SPLIT_DAY]:%Y-%m-%d} (ratio {closes[SPLIT_DAY] / closes[SPLIT_DAY - 1]:.3g})"
    ]


def test_several_splits_are_refused_in_one_line_naming_the_others(tmp_path):
    path = tmp_path / "prices.csv"
    days = DATES.strftime("%Y-%m-%d")
    pd.concat(
        [
            pd.DataFrame({"Date": days, "Ticker": "AAA", "Close": _closes(4, 1)}),
            pd.DataFrame({"Date": days, "Ticker": "BBB", "Close": _closes(1, 10, at=40, seed=2)}),
        ]
    ).to_csv(path, index=False)
    with pytest.raises(IngestError) as err:
        _read(path)
    message = str(err.value)
    assert "ticker AAA" in message and f"(and 1 more: BBB {DATES[40]:%Y-%m-%d} (1:10))" in message
    assert "\n" not in message


def test_the_split_policy_is_one_of_three_words():
    from tickerflow_model.config import IngestConfig

    assert IngestConfig().splits == "refuse"
    with pytest.raises(ValueError, match=r"splits\n +Input should be 'refuse', 'adjust' or 'keep' .*input_value='fix'"):
        IngestConfig(splits="fix")
