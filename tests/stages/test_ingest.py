"""Ingest: layouts, aliases, formats, sources (local and a real local S3 server), hashes, retries."""

from __future__ import annotations

import gzip
import shutil
import socket

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect.states import Failed

from tickerflow.tasks.ingest import (
    IngestConfig,
    IngestError,
    detect_layout,
    ingest,
    load_prices,
    read_prices,
    retry_unless_bad_input,
    write_snapshot,
)
from price_frames import make_prices

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


def test_cli_ticker_flag_reaches_the_ingest_config(monkeypatch, small_sample_csv):
    import tickerflow.flows.train_pipeline as pipeline
    from tickerflow.flows.cli import main

    seen = {}

    class RecordingFlow:
        def with_options(self, **_):
            return self

        def __call__(self, config):
            seen["ingest"] = config.ingest
            raise IngestError("stop here: only the config is under test")

    monkeypatch.setattr(pipeline, "train_pipeline", RecordingFlow())
    assert main(["run", "--data", str(small_sample_csv), "--ticker", "AAPL"]) == 1
    assert seen["ingest"] == IngestConfig(source=str(small_sample_csv), ticker="AAPL")


def test_unknown_layout_lists_columns_found_and_expected(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("when,what,how_much\n2020-01-02,AAA,1\n")
    with pytest.raises(IngestError) as err:
        load_prices(str(path))
    message = str(err.value)
    assert "odd.csv" in message and "['when', 'what', 'how_much']" in message and "expected" in message


def test_missing_price_names_the_file_and_columns():
    with pytest.raises(IngestError, match=r"x\.csv: missing required column 'close' or 'adj_close'.*'Open'"):
        detect_layout(["Date", "Ticker", "Open", "Volume"], "x.csv")


def test_non_numeric_value_is_named_with_file_column_and_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("date,ticker,close\n2020-01-02,AAA,1\n2020-01-03,AAA,n/a?\n")
    with pytest.raises(IngestError, match=r"bad\.csv: column 'close' has non-numeric values, e\.g\. 'n/a\?' \(ticker AAA"):
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


def test_snapshot_is_parquet_with_one_row_group_per_ticker(tf_home, small_sample_csv):
    frame, source_hash, _ = load_prices(str(small_sample_csv))
    folder = write_snapshot(frame, source_hash)

    assert folder == tf_home / "raw" / source_hash
    parquet = pq.ParquetFile(folder / "prices.parquet")
    assert parquet.metadata.num_row_groups == 2
    pd.testing.assert_frame_equal(parquet.read().to_pandas(), frame, check_dtype=False)


def test_transient_errors_are_retried_but_bad_input_is_not():
    assert ingest.retries == 3
    assert retry_unless_bad_input(ingest, None, Failed(data=OSError("connection reset"))) is True
    assert retry_unless_bad_input(ingest, None, Failed(data=IngestError("x.csv: no date column"))) is False


def test_ingest_task_retries_a_flaky_read_but_not_a_bad_file(prefect_harness, monkeypatch, small_sample_csv, tmp_path):
    import tickerflow.tasks.ingest as ingest_mod
    from prefect import flow

    real, calls = ingest_mod.read_file, []

    def flaky(path, *limits):
        calls.append(path)
        if len(calls) == 1:
            raise ConnectionResetError("connection reset by peer")  # an OSError: worth another try
        return real(path, *limits)

    monkeypatch.setattr(ingest_mod, "read_file", flaky)
    quick = ingest.with_options(retry_delay_seconds=0, retry_jitter_factor=None)

    @flow
    def run(source: str) -> tuple[str, str, list]:
        state = quick(IngestConfig(source=source), return_state=True)
        tickers = sorted(state.result().frame["ticker"].unique()) if state.is_completed() else []
        return state.type.value, state.message or "", tickers

    state_type, _, tickers = run(str(small_sample_csv))
    assert state_type == "COMPLETED" and len(calls) == 2
    assert tickers == ["AAPL", "MSFT"]

    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n2020-01-02,1\n")
    calls.clear()
    monkeypatch.setattr(ingest_mod, "read_file", lambda path, *limits: (calls.append(path), real(path, *limits))[1])
    state_type, message, _ = run(str(bad))
    assert state_type == "FAILED" and len(calls) == 1  # IngestError: no retry
    assert "no date column" in message


def test_ingest_config_rejects_an_empty_ticker():
    with pytest.raises(ValueError, match="ticker must be a non-empty symbol"):
        IngestConfig(source="x.csv", ticker=" ")


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
