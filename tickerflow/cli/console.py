"""What the console shows: a quiet console by default, and one line when a run fails for a reason the user
can act on.

Quiet (`quiet_console`, unless `--verbose`): tickerflow's own lines and the result. Prefect's lifecycle lines
("Finished in state ..." of every run, whatever the state, "Beginning flow run", "View at" a temporary API's page,
hook chatter), MLflow's event log ("Successfully registered model", "Found extra inputs ... will be ignored", its
pickle warning, the "Downloading artifacts" bars), Python warnings and Great Expectations' INFO lines stay off
the console; the Prefect API and MLflow still get every record. A run that fails for an expected reason shows
that reason once, as the command line's last line: Prefect's "Encountered exception during execution" record of
it stays off the quiet console too, while a bug's keeps its traceback there.

Prefect's own `prefect.task_runs` / `prefect.flow_runs` loggers log a failing task or flow with its
traceback and repeat the exception's message in each "Finished in state Failed(...)" line. For an
expected failure (a `TickerflowError`, or a config that does not validate) the command line prints the
reason once, so on a console that shows those records (`--verbose`, `tickerflow serve`) they keep their
line but lose the traceback and the repeated message. The Prefect API log handler (the UI) and MLflow still
receive the full records: only the console handlers are filtered, and they see a trimmed copy. Unexpected
errors are left untouched.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
from collections.abc import Callable

from tickerflow.console_detail import is_detail
from tickerflow_model.errors import TickerflowError, storage_failure

# Prefect's last line of every task and flow run, at INFO or (a failed task) ERROR. Never the only trace of
# a failure: the command line prints an expected failure's reason, and a bug's traceback has its own record.
_STATE_LINE_START = "Finished in state "
# "Finished in state Failed('Task run encountered an exception IngestError: ...')" and the flow's
# "Failed('Flow run encountered an exception: IngestError: ...')".
# The state is shown with repr(), so the message is quoted with ' or, when it holds a ', with ".
_STATE_LINE = re.compile(
    rf"^{_STATE_LINE_START}(\w+)\([\'\"](?:Task|Flow) run encountered an exception:? ([\w.]+): ", re.S
)


_TRIMMED = "_tickerflow_console_record"


def expected_error_types() -> tuple[type[BaseException], ...]:
    """The project's own failures and a config that does not validate (pydantic wraps config errors)."""
    import pydantic

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


def _expected_names() -> set[str]:
    names: set[str] = {"ValidationError"}
    todo = [TickerflowError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


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
        if is_expected(exc):
            head = record.getMessage().split(":", 1)[0]
            self._trim(record, f"{head}: {self._named(type(exc).__name__, str(exc))}")
            return True
        message = record.getMessage()
        match = _STATE_LINE.match(message)
        if match and match.group(2).rsplit(".", 1)[-1] in _expected_names():
            reason = message[match.end() :].rstrip("')\"")
            self._trim(record, f"Finished in state {match.group(1)} ({self._named(match.group(2), reason)})")
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


# Prefect's own INFO lines about a run's lifecycle, not about what tickerflow did
_CHATTER = re.compile(
    r"^(Beginning (flow|subflow) run |View at |Created (task|flow|subflow) run "
    r"|Executing '|Running hook '|Hook '.*' finished running successfully)"
)
# the flow engine's record of the exception that failed the run, with its traceback
_EXCEPTION_LINE_START = "Encountered exception during execution"
# a tqdm bar MLflow draws while it downloads or uploads artifacts
ARTIFACT_BARS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


# loggers whose INFO lines are tickerflow's own: the run loggers its tasks and flows log through, its modules
_OWN_LINES = ("prefect.flow_runs", "prefect.task_runs", "tickerflow")


class ChatterFilter(logging.Filter):
    """Console-handler filter of the quiet console: below WARNING, only tickerflow's own lines pass (not
    Prefect's lifecycle lines, nor the INFO lines of the libraries below it, such as Great Expectations'),
    and not the detail lines at any level (`tickerflow.console_detail`: training's per-epoch lines, each
    data finding of validation, which the quiet console sees as validation's summary line). At any level,
    Prefect's "Finished in state ..." lines stay off, and so does its record of the exception that failed a
    run when that exception is an expected one (the command line prints its reason); a bug's stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if is_detail(record):  # per-epoch lines, each data finding: the run's log and --verbose
            return False
        message = record.getMessage()
        if message.startswith(_STATE_LINE_START):
            return False
        if message.startswith(_EXCEPTION_LINE_START) and record.exc_info and is_expected(record.exc_info[1]):
            return False
        if record.levelno > logging.INFO:
            return True
        return record.name.startswith(_OWN_LINES) and not _CHATTER.match(message)


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
        from tickerflow_model.redaction import redact_text

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
    from prefect.logging.configuration import ensure_logging_setup

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
