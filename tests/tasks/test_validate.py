"""Validate: each critical expectation stops a crafted bad file; warnings are reported and the run goes on."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from price_frames import make_prices

from tickerflow.tasks.validate import WARNING, ValidationFailed, require_valid, run_suite
from tickerflow_model.config import ValidateConfig
from tickerflow_model.price_files import load_prices

MIN_ROWS = 252


def _bad_file(tmp_path, mutate) -> pd.DataFrame:
    """A clean two-ticker file, broken by `mutate`, written as CSV and read back through ingest."""
    frame = make_prices(300, tickers=("AAA", "BBB"))
    frame["ticker"] = frame["ticker"].astype(object)
    frame = mutate(frame)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    loaded, _, _ = load_prices(str(path))
    return loaded


def _row(frame, ticker="BBB", i=100):
    return frame.index[frame["ticker"] == ticker][i]


def _set(column, value, ticker="BBB", i=100):
    def mutate(frame):
        frame.loc[_row(frame, ticker, i), column] = value
        return frame

    return mutate


def _scale(column, factor):
    def mutate(frame):
        row = _row(frame)
        frame.loc[row, column] = frame.loc[row, "close"] * factor
        return frame

    return mutate


def _duplicate(frame):
    return pd.concat([frame, frame.loc[[_row(frame)]]], ignore_index=True)


def _too_short(frame):
    return frame.groupby("ticker").head(200)


CRITICAL_CASES = {
    # case: (mutation, failing expectation, its column, a row it must show as an example)
    "null close": (_set("close", np.nan), "expect_column_values_to_not_be_null", "close", ("BBB", 100)),
    "price not positive": (_set("open", 0.0), "expect_column_values_to_be_between", "open", ("BBB", 100)),
    "high below close": (
        _scale("high", 0.98),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "high+close",
        ("BBB", 100),
    ),
    "low above close": (
        _scale("low", 1.02),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "close+low",
        ("BBB", 100),
    ),
    "negative volume": (_set("volume", -5.0), "expect_column_values_to_be_between", "volume", ("BBB", 100)),
    "duplicate ticker-date": (_duplicate, "expect_compound_columns_to_be_unique", "ticker+date", ("BBB", 100)),
    "path-like ticker": (
        _set("ticker", "../../x", "BBB", slice(None)),
        "expect_column_values_to_match_regex",
        "ticker",
        None,
    ),
    "slash ticker": (_set("ticker", "A/B", "AAA", slice(None)), "expect_column_values_to_match_regex", "ticker", None),
    "empty ticker": (_set("ticker", " ", "BBB", 100), "expect_column_values_to_not_be_null", "ticker", None),
    "too little history": (_too_short, "enough_history", "ticker", None),
}


@pytest.mark.parametrize("case", list(CRITICAL_CASES))
def test_each_critical_expectation_stops_a_crafted_bad_file(case, tmp_path, tf_home):
    mutate, expectation, column, example = CRITICAL_CASES[case]
    clean = make_prices(300, tickers=("AAA", "BBB"))
    frame = _bad_file(tmp_path, mutate)

    report = run_suite(frame, ValidateConfig(), MIN_ROWS, tf_home / "validation" / "docs")

    assert not report.success
    failed = {(f.expectation, f.column): f for f in report.critical}
    assert (expectation, column) in failed, report.summary()
    failure = failed[(expectation, column)]
    assert failure.unexpected_count >= 1
    if example is not None:
        ticker, i = example
        date = clean.loc[clean["ticker"] == ticker, "date"].iloc[i].date().isoformat()
        assert {"ticker": ticker, "date": date}.items() <= failure.examples[0].items()
    with pytest.raises(ValidationFailed) as err:
        require_valid.fn(report)
    assert failure.line() in str(err.value)
    # the gate writes its Data Docs and nothing else
    assert (tf_home / "validation" / "docs" / "index.html").is_file()
    assert [p.name for p in tf_home.iterdir()] == ["validation"]


def test_missing_price_and_wrong_types_are_critical(tf_home):
    frame = make_prices(300).drop(columns=["close"]).assign(volume=lambda f: f["volume"].astype(str))
    report = run_suite(frame, ValidateConfig(), MIN_ROWS, tf_home / "docs")
    failed = {(f.expectation, f.column) for f in report.critical}
    assert ("expect_column_to_exist", "close") in failed
    assert ("expect_column_values_to_be_in_type_list", "volume") in failed


def test_clean_frame_with_only_the_required_columns_passes(tf_home):
    frame = make_prices(300)[["date", "ticker", "close"]]
    report = run_suite(frame, ValidateConfig(), MIN_ROWS, tf_home / "docs")
    assert report.success and report.failures == [], report.summary()
    assert (tf_home / "docs" / "index.html").is_file()
    pd.testing.assert_frame_equal(require_valid.fn(report), frame)


def test_warnings_are_reported_with_examples_and_the_run_continues(tmp_path, tf_home):
    def mutate(frame):
        bbb = frame.index[frame["ticker"] == "BBB"]
        frame.loc[bbb[50:57], ["open", "high", "low", "close"]] = frame.loc[bbb[50], "close"]  # 7 identical: stale
        frame.loc[bbb[120] :, ["open", "high", "low", "close"]] *= 0.5  # unadjusted 2:1 split
        frame = frame.drop(index=bbb[200:210])  # two weeks missing
        aaa = frame.index[frame["ticker"] == "AAA"]
        return frame.loc[[aaa[1], aaa[0]] + list(frame.index.drop([aaa[0], aaa[1]]))]  # arrived out of order

    clean = make_prices(300, tickers=("AAA", "BBB"))
    bbb_dates = clean.loc[clean["ticker"] == "BBB", "date"].dt.date.astype(str).tolist()
    frame = _bad_file(tmp_path, mutate)

    report = run_suite(frame, ValidateConfig(), MIN_ROWS, tf_home / "docs")

    assert report.success, report.summary()
    assert report.critical == []
    warned = {f.column: f for f in report.warnings}
    assert set(warned) == {
        "check_abs_log_return_close",
        "check_identical_run",
        "check_missing_business_days",
        "ticker+date",
    }
    assert warned["check_abs_log_return_close"].examples[0]["date"] == bbb_dates[120]
    assert warned["check_identical_run"].unexpected_count == 7 - ValidateConfig().max_identical_run
    assert warned["check_missing_business_days"].examples[0]["date"] == bbb_dates[210]
    assert warned["ticker+date"].examples[0]["ticker"] == "AAA"
    assert all(f.severity == WARNING for f in report.warnings)
    assert "[warning]" in report.summary() and "data validation passed" in report.summary()
    assert len(require_valid.fn(report)) == len(frame)


def test_short_tickers_are_dropped_and_named(tf_home):
    frame = pd.concat(
        [make_prices(300, tickers=("AAA",)), make_prices(196, tickers=("FB",), seed=1)], ignore_index=True
    )
    report = run_suite(frame, ValidateConfig(), MIN_ROWS, tf_home / "docs")
    assert report.success
    assert report.dropped_tickers == {"FB": 196}
    assert set(report.frame["ticker"]) == {"AAA"}
    assert "FB (196 rows)" in report.markdown()


def test_config_rejects_bad_thresholds():
    with pytest.raises(ValueError, match=r"max_abs_log_return\n +Input should be greater than 0 .*input_value=-1"):
        ValidateConfig(max_abs_log_return=-1)
    with pytest.raises(
        ValueError, match=r"max_identical_run\n +Input should be greater than or equal to 1 .*input_value=0"
    ):
        ValidateConfig(max_identical_run=0)
    with pytest.raises(ValueError, match=r"max_gap_business_days\n +Input should be greater than or equal to 0"):
        ValidateConfig(max_gap_business_days=-1)


def test_cli_run_on_a_bad_file_exits_nonzero_with_the_summary_and_writes_nothing(
    prefect_harness, mlflow_store, tf_home, tmp_path, capsys
):
    from tickerflow.cli import main

    bad = make_prices(300, tickers=("AAA", "BBB"))
    row = bad.index[bad["ticker"] == "BBB"][100]
    bad.loc[row, "high"] = bad.loc[row, "close"] * 0.9
    path = tmp_path / "bad_high.csv"
    bad.to_csv(path, index=False)

    code = main(["run", "--data", str(path), "--epochs", "1"])

    err = capsys.readouterr().err
    assert code != 0
    assert "ValidationFailed" in err and "Traceback" not in err
    day = bad.loc[row, "date"].date().isoformat()
    assert f"expect_column_pair_values_a_to_be_greater_than_b(high+close): 1 row e.g. ticker=BBB, date={day}" in err
    assert not (tf_home / "windows").exists()
    client = mlflow.MlflowClient(mlflow_store)
    assert client.search_registered_models() == []
    (run,) = client.search_runs([client.get_experiment_by_name("tickerflow").experiment_id])
    assert run.info.status == "FAILED"
    docs = [a.path for a in client.list_artifacts(run.info.run_id, "validation/data_docs")]
    assert "validation/data_docs/index.html" in docs

    # the same validation again: its Data Docs are not copied into MLflow a second time
    assert main(["run", "--data", str(path), "--epochs", "1"]) != 0
    second = [r for r in client.search_runs([run.info.experiment_id]) if r.info.run_id != run.info.run_id][0]
    assert client.list_artifacts(second.info.run_id, "validation/data_docs") == []
    assert second.data.tags["validation.data_docs_run"] == run.info.run_id
    assert [a.path for a in client.list_artifacts(second.info.run_id, "validation")] == ["validation/summary.txt"]
