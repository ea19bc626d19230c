"""What the console shows: a quiet console by default, and one line when a run fails for a reason the user
can act on.

Quiet (`quiet_console`, unless `--verbose`): tickerflow's own lines and the result. tickerflow's lines carry a
mark (`tickerflow.run_log.run_logger`); the records of Prefect's run loggers (`prefect.flow_runs`,
`prefect.task_runs`) without it are Prefect's own lifecycle lines (each run's start, state and end, hook
chatter, links to a temporary API's page) and stay off the console; so do MLflow's event log, Python warnings
and Great Expectations' INFO lines. The Prefect API and MLflow still get every record. A run that fails for an
expected reason shows that reason once, as the command line's last line: the record of the exception stays off
the quiet console, while a bug's keeps its traceback there.

On a console that shows Prefect's records (`--verbose`, `tickerflow serve`), the record of an expected
failure (a `TickerflowError`, or a config that does not validate) keeps one line but loses its traceback;
Prefect's own lines, its state lines among them, show as Prefect writes them (they name the error, and
quote its message). The Prefect API log handler (the UI) and MLflow still receive the full records: only the
console handlers are filtered, and they see a trimmed copy. Unexpected errors are left untouched.

No filter reads Prefect's wording: the marks, the level, the logger's name and the exception on a record are
what they go by (checked against Prefect 3.9.1, whose records carry nothing else that tells a state line from
another line).
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable

import pydantic

from tickerflow.run_log import is_detail, is_own
from tickerflow_model.errors import TickerflowError, storage_failure
from tickerflow_model.redaction import redact_text

_TRIMMED = "_tickerflow_console_record"
# The stop signals the command received, first first (`command_line._stop`). Once one arrived, a library's
# record of what the unwinding broke (a database closed under a cursor, a connection cut) stays off the
# console, which ends with the command's one stop line; the run's log and the Prefect API still get it.
stop_signals: list[int] = []


def expected_error_types() -> tuple[type[BaseException], ...]:
    """The project's own failures and a config that does not validate (pydantic wraps config errors)."""
    return (TickerflowError, pydantic.ValidationError)


def is_expected(exc: BaseException | None) -> bool:
    """A failure the user can act on. From MLflow only "no such model/version/run" counts: any other
    MlflowException may be a bug of ours and keeps its traceback."""
    if isinstance(exc, expected_error_types()) or storage_failure(exc) is not None:
        return True  # (a storage that refuses a write: disk full, read-only, a file in the way)
    if "mlflow" not in sys.modules:  # an error raised before MLflow was imported is none of MLflow's
        return False
    from tickerflow.tracking.store import is_missing  # (MLflow is imported already: this costs nothing)

    return is_missing(exc)


class ExpectedErrorFilter(logging.Filter):
    """Console-handler filter: an expected failure's record keeps one short line, no traceback.

    `with_reason=False` when the caller prints the reason itself (the one-shot commands); a long-running
    process (`tickerflow serve`) keeps the first line of the reason in the trimmed line instead.
    """

    def __init__(self, with_reason: bool = False) -> None:
        super().__init__()
        self.with_reason = with_reason

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and stop_signals and not record.name.startswith("tickerflow"):
            self._trim(record, f"{record.getMessage()}: {type(exc).__name__} while stopping")
        elif is_expected(exc):
            head = record.getMessage().split(":", 1)[0]
            self._trim(record, f"{head}: {self._named(type(exc).__name__, str(exc))}")
        return True

    def _named(self, name: str, reason: str) -> str:
        first = reason.strip().splitlines()[0] if reason.strip() else ""
        return f"{name}: {first}" if self.with_reason and first else name

    @staticmethod
    def _trim(record: logging.LogRecord, message: str) -> None:
        # Python 3.11's filters cannot hand the handler a different record, and the record itself is
        # shared with the other handlers; so the trimmed copy rides on it for _TrimmingFormatter to print.
        short = copy.copy(record)
        short.msg, short.args = message, ()
        short.exc_info, short.exc_text, short.stack_info = None, None, None
        record.__dict__[_TRIMMED] = short


class _TrimmingFormatter(logging.Formatter):
    """Formats the trimmed copy when the filter left one, else the record itself."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return self.inner.format(record.__dict__.get(_TRIMMED, record))


# a tqdm bar MLflow draws while it downloads or uploads artifacts
ARTIFACT_BARS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
# Prefect's run loggers: tickerflow's lines reach them through `run_logger`, marked; the rest are Prefect's own
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class ChatterFilter(logging.Filter):
    """Console-handler filter of the quiet console: tickerflow's own lines (marked, or of its own loggers) but
    not its detail lines; a bug's exception record with its traceback; warnings and errors of the libraries.
    Not Prefect's own lines about its runs (their states, starts and hooks, whatever their level), nor the
    record of an expected failure (the command line prints its reason), nor the INFO lines of the libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if is_detail(record):  # per-epoch lines, each data finding: the run's log and --verbose
            return False
        if is_own(record) or record.name.startswith("tickerflow"):
            return True
        if stop_signals:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            return not is_expected(record.exc_info[1])
        if record.name.startswith(RUN_LOGGERS):
            return False
        return record.levelno > logging.INFO


def quiet_console() -> Callable[[], None]:
    """The console of a one-shot command without `--verbose`: tickerflow's lines and the result only.
    Call once Prefect is imported (after `quiet_expected_errors_on_console`); returns what undoes it (the
    CLI calls it when the command returns, so a process that calls `main()` more than once, such as the
    tests, gets its logging back)."""
    from tickerflow.tracking.store import quiet_mlflow_console  # (the flow commands have imported MLflow)

    undo_mlflow = quiet_mlflow_console()
    loggers = [logging.getLogger(name) for name in ("py.warnings", "great_expectations", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    chatter = ChatterFilter()
    handlers = _prefect_console_handlers()
    for handler in handlers:
        handler.addFilter(chatter)

    def undo() -> None:
        undo_mlflow()
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        for handler in handlers:
            handler.removeFilter(chatter)

    return undo


def _prefect_console_handlers() -> list[logging.Handler]:
    # Prefect: once a command runs; `--help` imports this module
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # Prefect creates its handlers lazily, on first use
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers += getattr(logger, "handlers", [])
    return [h for h in dict.fromkeys(handlers) if isinstance(h, PrefectConsoleHandler)]


def quiet_expected_errors_on_console(with_reason: bool = False) -> None:
    """Attach the filter to every Prefect console handler (idempotent). Call once Prefect is imported."""
    for handler in _prefect_console_handlers():
        if isinstance(handler.formatter, _TrimmingFormatter):
            continue
        handler.addFilter(ExpectedErrorFilter(with_reason))
        handler.setFormatter(_TrimmingFormatter(handler.formatter))


class RedactingFilter(logging.Filter):
    """Handler filter: credentials in a record's message, traceback and chained causes are redacted
    before the handler (Prefect's API log, the console) formats it. Errors of ours are redacted where
    they are raised (`tickerflow_model.redaction.chained`); this catches what a library logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def redact_credentials_in_logs() -> None:
    """Put `RedactingFilter` first on every handler of every logger (idempotent). Call once Prefect is imported."""
    from prefect.logging.configuration import ensure_logging_setup  # (Prefect: once a command runs)

    ensure_logging_setup()
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers += getattr(logger, "handlers", [])
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.filters.insert(0, RedactingFilter())


def configure_console(quiet: bool, with_reason: bool = False) -> Callable[[], None]:
    """A command's console: credentials redacted in every log record, an expected failure one line (with its
    reason for a long-running command), and the quiet console unless `quiet` is False. Imports Prefect's
    logging. Returns what undoes the quiet console (the rest is idempotent and stays)."""
    redact_credentials_in_logs()
    quiet_expected_errors_on_console(with_reason=with_reason)
    return quiet_console() if quiet else lambda: None
