"""A successful run's console: tickerflow's own lines and the result; Prefect's and MLflow's chatter only with --verbose."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys

import pytest
from cli_processes import cli_env
from cli_processes import tickerflow as run_tickerflow

pytestmark = pytest.mark.slow

# what a quiet console must not show: warnings, tracebacks and Prefect's / MLflow's own event lines
CHATTER = re.compile(
    r"Warning|WARNING|Traceback|Running hook|finished running successfully|Finished in state Completed|View at "
    r"|Downloading artifacts|Found extra inputs|Successfully registered model|Created version|CloudPickle"
)


def tickerflow(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    done = run_tickerflow(args, env, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_successful_run_and_forecast_print_no_warning_or_chatter_unless_verbose(tmp_path, small_sample_csv):
    env = cli_env(tmp_path / "home")
    # one thread: on a busy machine more would earn the (right) throughput hint, a WARNING line of its own
    config = tmp_path / "one-thread.json"
    config.write_text('{"train": {"cpu_threads": 1}}')
    run = tickerflow(["run", "--data", str(small_sample_csv), "--epochs", "1", "--config", str(config)], env, tmp_path)
    assert not [line for line in run.stderr.splitlines() if CHATTER.search(line)], run.stderr
    # tickerflow's own lines stay; the per-epoch lines are the run log's detail (the progress bar on a terminal)
    assert "best epoch 1 " in run.stderr and "registered tickerflow-gru v1" in run.stderr
    assert "epoch 1/1 train_loss" not in run.stderr
    assert "skill vs naive" in run.stdout

    forecast = tickerflow(["forecast", "--data", str(small_sample_csv), "--out", "f.parquet"], env, tmp_path)
    assert not [line for line in forecast.stderr.splitlines() if CHATTER.search(line)], forecast.stderr
    assert "wrote 2 forecasts" in forecast.stdout

    verbose = tickerflow(
        ["forecast", "--data", str(small_sample_csv), "--out", "f.parquet", "--verbose"], env, tmp_path
    )
    assert "Running hook" in verbose.stderr  # Prefect's lifecycle lines: the switch is --verbose


def test_the_quiet_console_is_undone_when_the_command_returns():
    import logging

    from mlflow.utils import logging_utils

    from tickerflow.cli.console import ChatterFilter, quiet_console

    undo = quiet_console()
    assert not logging_utils.MLFLOW_LOGGING_STREAM.enabled and logging.getLogger("mlflow").level == logging.ERROR
    chatter = logging.LogRecord("prefect.task_runs", logging.INFO, "", 0, "Finished in state Completed()", (), None)
    own = logging.LogRecord("prefect.task_runs", logging.INFO, "", 0, "best epoch 1 (val_loss 0.2)", (), None)
    own.tickerflow_line = True  # logged through tickerflow.run_log.run_logger
    detail = logging.LogRecord("prefect.task_runs", logging.INFO, "", 0, "epoch 1/1 train_loss=0.2", (), None)
    detail.tickerflow_line = detail.tickerflow_detail = True  # logged with extra=tickerflow.run_log.DETAIL
    failed = logging.LogRecord("prefect.task_runs", logging.ERROR, "", 0, "Finished in state Failed('x')", (), None)
    error = logging.LogRecord("prefect.task_runs", logging.ERROR, "", 0, "cannot reach the registry", (), None)
    error.tickerflow_line = True
    library = logging.LogRecord("prefect.concurrency", logging.WARNING, "", 0, "no limit named gpu", (), None)
    quiet = logging.LogRecord("great_expectations", logging.INFO, "", 0, "Calculating Metrics", (), None)
    records = (chatter, own, detail, failed, error, library, quiet)
    # Prefect's own lines about its runs go whatever their level or wording; tickerflow's stay; a library's
    # warning stays, its INFO line goes
    assert [ChatterFilter().filter(r) for r in records] == [False, True, False, False, True, True, False]
    undo()
    assert logging_utils.MLFLOW_LOGGING_STREAM.enabled and logging.getLogger("mlflow").level != logging.ERROR


def _failure_record(exc: Exception) -> logging.LogRecord:
    """The flow engine's record of the exception that failed a run, as Prefect logs it (`logger.exception`)."""
    try:
        raise exc
    except Exception:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "prefect.flow_runs", logging.ERROR, "", 0, "Encountered exception during execution: %r", (exc,), exc_info
    )


def test_the_quiet_console_drops_an_expected_failures_exception_record_but_keeps_a_bugs():
    from tickerflow.cli.console import ChatterFilter, ExpectedErrorFilter, _TrimmingFormatter
    from tickerflow_model.price_files import IngestError

    def failures():
        return _failure_record(IngestError("data source not found: x.csv")), _failure_record(ValueError("a bug"))

    expected, bug = failures()
    assert ChatterFilter().filter(expected) is False  # the command line prints its reason, once
    assert ChatterFilter().filter(bug) is True and bug.exc_info is not None and bug.exc_info[1] is not None

    # a console handler filtered as the quiet console filters Prefect's: the bug is printed with its traceback
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    console.setFormatter(_TrimmingFormatter(logging.Formatter("%(message)s")))
    console.addFilter(ExpectedErrorFilter())
    console.addFilter(ChatterFilter())
    for record in failures():
        console.handle(record)
    out = stream.getvalue()
    assert "IngestError" not in out and "x.csv" not in out
    assert out.startswith(
        "Encountered exception during execution: ValueError('a bug')\nTraceback (most recent call last):"
    )
    assert out.rstrip().endswith("ValueError: a bug")


def test_once_a_stop_signal_arrived_a_librarys_record_of_the_unwinding_stays_off_the_console(monkeypatch):
    """SIGHUP mid-run: SQLAlchemy logs "Error closing cursor" with the traceback of a database closed under it.
    The console ends with the command's one stop line; a record of tickerflow's own still shows."""
    import signal

    from tickerflow.cli import console as console_module
    from tickerflow.cli.console import ChatterFilter, ExpectedErrorFilter, _TrimmingFormatter

    try:
        raise RuntimeError("Cannot operate on a closed database.")
    except RuntimeError:
        exc_info = sys.exc_info()
    library = logging.LogRecord(
        "sqlalchemy.pool.impl.QueuePool", logging.ERROR, "", 0, "Error closing cursor", (), exc_info
    )
    own = logging.LogRecord("tickerflow.run", logging.WARNING, "", 0, "stopping the run", (), None)
    assert ChatterFilter().filter(library) is True  # before a signal: a library's error with its traceback shows

    monkeypatch.setattr(console_module, "stop_signals", [signal.SIGHUP])
    assert ChatterFilter().filter(library) is False and ChatterFilter().filter(own) is True
    stream = io.StringIO()  # a console that shows libraries' records (--verbose): one line, no traceback
    verbose = logging.StreamHandler(stream)
    verbose.setFormatter(_TrimmingFormatter(logging.Formatter("%(message)s")))
    verbose.addFilter(ExpectedErrorFilter())
    verbose.handle(library)
    assert stream.getvalue() == "Error closing cursor: RuntimeError while stopping\n"


@pytest.mark.parametrize("verbose", [False, True])
def test_a_registry_command_draws_no_mlflow_download_bar_unless_verbose(monkeypatch, tmp_path, verbose):
    """`promote` and `rollback` load the model they move to: MLflow's tqdm bar of its files stays off a quiet
    console, as it does for `run` and `forecast`."""
    import os

    from tickerflow.cli import main

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TICKERFLOW_HOME", str(tmp_path))
    args = ["promote", "--model", "no-such-model", "--version", "1"] + (["--verbose"] if verbose else [])
    assert main(args) == 1  # refused: there is no such model; the console was set up all the same
    assert os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR") == (None if verbose else "false")
