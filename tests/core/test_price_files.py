"""Reading price files into the canonical frame: layouts and aliases in every format, sources (folders,
globs, a real local S3 server), content hashes, and the inputs that used to fool ingest (alias collisions,
duplicate headers, separators, size limits)."""

from __future__ import annotations

import gzip
import shutil
import socket

import numpy as np
import pandas as pd
import pytest
from price_frames import make_prices

from tickerflow_model.price_files import IngestError, load_prices, read_prices

LONG_ALIASES = [
    # (date, ticker, close, adj close, volume) as people's files spell them
    ("Date", "Ticker", "Close", "Adj Close", "Volume"),
    ("timestamp", "Symbol", "close", "adjusted", "vol"),
    ("DATE", "SYMBOL", "Close Price", "adj_close", "VOLUME"),
    ("trade_date", "instrument", "Last", "Adjusted Close", "Volume"),
]


def _write(frame: pd.DataFrame, path) -> str:
    name = str(path)
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif name.endswith(".csv.gz"):
        with gzip.open(path, "wt") as fh:
            frame.to_csv(fh, index=False)
    else:
        frame.to_csv(path, index=False)
    return name


def _long_file(columns, n_days=5) -> pd.DataFrame:
    src = make_prices(n_days, tickers=("AAA", "BBB"))
    date, ticker, close, adj, vol = columns
    return pd.DataFrame(
        {
            date: src["date"].dt.strftime("%Y-%m-%d"),
            ticker: src["ticker"].astype(str),
            close: src["close"],
            adj: src["close"] / 2,
            vol: src["volume"],
        }
    )


def _csv(tmp_path, text: str, name: str = "p.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("columns", LONG_ALIASES, ids=lambda c: "/".join(c))
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_long_layout_with_aliases_in_every_format(tmp_path, columns, suffix):
    raw = _long_file(columns)
    path = _write(raw, tmp_path / f"prices{suffix}")

    frame, _, files, layouts = read_prices(path)

    assert layouts == ["long"] and files == [path]
    assert list(frame.columns) == ["date", "ticker", "close", "volume", "adj_close"]
    assert str(frame["date"].dtype) == "datetime64[ns]"
    assert frame["ticker"].tolist() == ["AAA"] * 5 + ["BBB"] * 5
    np.testing.assert_allclose(frame["adj_close"], raw[columns[3]])


def test_only_date_ticker_and_a_price_are_required(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("Date,Symbol,Adj Close\n2020-01-02,AAA,10\n2020-01-03,AAA,11\n")
    frame, _, _ = load_prices(str(path))
    assert list(frame.columns) == ["date", "ticker", "adj_close"]


def test_wide_layout_becomes_long_and_skips_empty_cells(tmp_path):
    path = tmp_path / "portfolio.csv"
    path.write_text("Date,AAPL,BRK.B,MSFT\n2020-01-02,300,230,160\n2020-01-03,297,,158\n2020-01-06,299,231,159\n")

    frame, _, _, layouts = read_prices(str(path))

    assert layouts == ["wide"]
    assert list(frame.columns) == ["date", "ticker", "close"]
    assert frame.groupby("ticker").size().to_dict() == {"AAPL": 3, "BRK.B": 2, "MSFT": 3}
    assert frame.loc[frame["ticker"] == "MSFT", "close"].tolist() == [160, 158, 159]


def test_single_ticker_file_takes_ticker_from_name_or_config(tmp_path):
    path = tmp_path / "AAPL.csv.gz"
    _write(pd.DataFrame({"Date": ["2020-01-02", "2020-01-03"], "Open": [1, 2], "Close": [1.5, 2.5]}), path)

    by_name, hash_by_name, _, layouts = read_prices(str(path))
    by_flag, hash_by_flag, _, _ = read_prices(str(path), ticker="GOOG")

    assert layouts == ["single-ticker"]
    assert set(by_name["ticker"]) == {"AAPL"} and set(by_flag["ticker"]) == {"GOOG"}
    assert hash_by_name != hash_by_flag  # the ticker is part of what the hash identifies


def test_one_ticker_for_many_single_ticker_files_is_refused(tmp_path):
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("Date,Close\n2020-01-02,1\n")
    with pytest.raises(IngestError, match="ticker 'X' was given for single-ticker files, but 2 files"):
        load_prices(str(tmp_path), ticker="X")
    frame, _, _ = load_prices(str(tmp_path))
    assert sorted(frame["ticker"]) == ["a", "b"]


def test_unknown_layout_lists_columns_found_and_expected(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("when,what,how_much\n2020-01-02,AAA,1\n")
    with pytest.raises(IngestError) as err:
        load_prices(str(path))
    message = str(err.value)
    assert "odd.csv" in message and "['when', 'what', 'how_much']" in message and "expected" in message


def test_non_numeric_value_is_named_with_file_column_and_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("date,ticker,close\n2020-01-02,AAA,1\n2020-01-03,AAA,n/a?\n")
    with pytest.raises(
        IngestError, match=r"bad\.csv: column 'close' has non-numeric values, e\.g\. 'n/a\?' \(ticker AAA"
    ):
        load_prices(str(path))


def test_folder_and_glob_sources_read_every_file_in_order(tmp_path):
    src = make_prices(30, tickers=("AAA", "BBB", "CCC"))
    folder = tmp_path / "many"
    (folder / "sub").mkdir(parents=True)
    _write(src[src["ticker"] == "AAA"], folder / "a.csv")
    _write(src[src["ticker"] == "BBB"], folder / "b.parquet")
    _write(src[src["ticker"] == "CCC"], folder / "sub" / "c.csv.gz")
    (folder / "notes.txt").write_text("not prices")

    from_folder, hash_folder, files = load_prices(str(folder))
    from_glob, hash_glob, _ = load_prices(str(folder / "**" / "*.*"))  # notes.txt is not a price file

    assert [f.rsplit("/", 1)[-1] for f in files] == ["a.csv", "b.parquet", "c.csv.gz"]
    assert len(from_folder) == 90 and from_folder["ticker"].is_monotonic_increasing
    pd.testing.assert_frame_equal(from_folder, from_glob)
    assert hash_folder == hash_glob


def test_same_bytes_give_the_same_hash_anywhere_and_a_changed_byte_does_not(tmp_path, small_sample_csv):
    copy = tmp_path / "elsewhere" / "copy.csv"
    copy.parent.mkdir()
    shutil.copy(small_sample_csv, copy)

    _, first, _ = load_prices(str(small_sample_csv))
    _, again, _ = load_prices(str(small_sample_csv))
    _, moved, _ = load_prices(str(copy))
    copy.write_bytes(copy.read_bytes().replace(b"AAPL", b"AAPM", 1))
    _, changed, _ = load_prices(str(copy))

    assert first == again == moved
    assert changed != first


def test_out_of_order_rows_are_counted_before_sorting(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("date,ticker,close\n2020-01-03,AAA,2\n2020-01-02,AAA,1\n2020-01-06,AAA,3\n2020-01-02,BBB,5\n")
    frame, _, _ = load_prices(str(path))
    assert frame.loc[frame["ticker"] == "AAA", "date"].is_monotonic_increasing
    disorder = frame.attrs["out_of_order"]
    assert disorder["count"] == 1
    assert disorder["examples"] == [{"ticker": "AAA", "date": "2020-01-02", "previous_date": "2020-01-03"}]


@pytest.mark.parametrize(
    "header, names",
    [
        ("Date,Symbol,Ticker,Close", "'Symbol', 'Ticker'"),
        ("Date,Ticker,Price,Close", "'Price', 'Close'"),
        ("Date,Ticker,Close,Vol,Volume", "'Vol', 'Volume'"),
    ],
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


# ---- S3, against a real S3-compatible server on loopback ----------------------------------------------
@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    import boto3

    # s3fs (through botocore) finds the endpoint and credentials in the standard AWS variables
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3")
    client.create_bucket(Bucket="prices")
    yield client
    for obj in client.list_objects_v2(Bucket="prices").get("Contents", []):
        client.delete_object(Bucket="prices", Key=obj["Key"])
    client.delete_bucket(Bucket="prices")


def test_s3_folder_and_file_match_the_local_read(s3_bucket, small_sample_csv, tmp_path):
    raw = pd.read_csv(small_sample_csv)
    (tmp_path / "local").mkdir()
    aapl, msft = tmp_path / "local" / "aapl.csv", tmp_path / "local" / "msft.parquet"
    raw[raw["Ticker"] == "AAPL"].to_csv(aapl, index=False)
    raw[raw["Ticker"] == "MSFT"].to_parquet(msft, index=False)
    s3_bucket.put_object(Bucket="prices", Key="daily/aapl.csv", Body=aapl.read_bytes())
    s3_bucket.put_object(Bucket="prices", Key="daily/msft.parquet", Body=msft.read_bytes())

    remote, remote_hash, files = load_prices("s3://prices/daily/")
    local, local_hash, _ = load_prices(str(tmp_path / "local" / "*.*"))
    one, _, one_file = load_prices("s3://prices/daily/aapl.csv")

    assert files == ["s3://prices/daily/aapl.csv", "s3://prices/daily/msft.parquet"]
    pd.testing.assert_frame_equal(remote, local)
    assert remote_hash == local_hash
    assert one_file == ["s3://prices/daily/aapl.csv"] and set(one["ticker"]) == {"AAPL"}


def test_s3_missing_prefix_is_a_clear_error(s3_bucket):
    with pytest.raises(IngestError, match="no CSV, CSV.gz or Parquet files at s3://prices/nothing/"):
        load_prices("s3://prices/nothing/")
