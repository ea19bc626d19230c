"""What the validate stage logs: every finding in the run's log, one summary line on the quiet console."""

from __future__ import annotations

import logging

import pandas as pd
from price_frames import make_prices

from tickerflow.cli.console import ChatterFilter
from tickerflow.run_log import is_detail
from tickerflow.tasks.validate import validate
from tickerflow_model.config import ValidateConfig


def _quirky_prices() -> pd.DataFrame:
    """Two full tickers, one with a one-day jump (a warning), and a ticker too young to split (dropped)."""
    frame = make_prices(n_days=120)
    jump = (frame["ticker"] == "AAA") & (frame.groupby("ticker").cumcount() >= 60)
    prices = [c for c in ("open", "high", "low", "close", "adj_close") if c in frame]
    frame.loc[jump, prices] *= 2.0
    return pd.concat([frame, make_prices(n_days=10, tickers=("YOUNG",), seed=3)], ignore_index=True)


def test_findings_go_to_the_run_log_and_the_quiet_console_gets_one_summary_line(prefect_harness, caplog):
    from prefect import flow

    @flow
    def check(frame):
        return validate(frame, ValidateConfig(), 50, "hash-log")

    with caplog.at_level(logging.INFO):
        report = check(_quirky_prices())
    records = [r for r in caplog.records if r.name == "prefect.task_runs"]
    findings = [r for r in records if r.levelno == logging.WARNING]
    # the run's log (and the Prefect UI) keeps a WARNING line per finding
    assert report.dropped_tickers == {"YOUNG": 10} and report.warnings
    assert any("dropped 1 ticker with" in r.getMessage() and "YOUNG (10 rows)" in r.getMessage() for r in findings)
    assert any("data warning: " in r.getMessage() and "ticker=AAA" in r.getMessage() for r in findings)
    assert all(is_detail(r) for r in findings)

    console = [r.getMessage() for r in records if ChatterFilter().filter(r)]
    assert len(console) == 1, console
    warnings = f"{len(report.warnings)} warning{'s' if len(report.warnings) > 1 else ''}"
    assert f"0 critical failures, {warnings}; dropped YOUNG (10 rows), fewer than 50 rows" in console[0]
    assert "Data Docs: " in console[0]


def test_a_cached_verdict_still_says_its_summary_line_with_the_dropped_tickers(prefect_harness, caplog):
    """A rerun on the same data skips the suite (Cached), not the line that says which tickers were dropped."""
    from prefect import flow

    @flow
    def check(frame):
        return validate(frame, ValidateConfig(), 50, "hash-cached-log")

    frame = _quirky_prices()
    check(frame)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        report = check(frame)
    console = [r for r in caplog.records if r.name.startswith("prefect.") and ChatterFilter().filter(r)]
    assert [r.name for r in console] == ["prefect.flow_runs"], [r.getMessage() for r in console]  # the task did not run
    (line,) = [r.getMessage() for r in console]
    assert line.startswith(f"{report.evaluated} expectations evaluated (cached: an earlier run read the same data): ")
    assert "; dropped YOUNG (10 rows), fewer than 50 rows; Data Docs: " in line
