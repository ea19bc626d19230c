"""The ingest stage: the CLI's --ticker reaches its config, the raw snapshot, retries of a flaky read but
not of a bad file, the config's checks. Reading files is the core's (tests/core/test_price_files.py)."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect.states import Failed

from tickerflow.tasks.ingest import ingest, retry_unless_bad_input, write_snapshot
from tickerflow_model.config import IngestConfig
from tickerflow_model.price_files import IngestError, load_prices


def test_cli_ticker_flag_reaches_the_ingest_config(monkeypatch, small_sample_csv):
    import tickerflow.flows.train_pipeline as pipeline
    from tickerflow.cli import main

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
    from prefect import flow

    import tickerflow_model.price_files as ingest_mod

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
