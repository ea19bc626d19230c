"""The `tickerflow` command's boundary with the process: environment defaults first, exit codes, a user's
mistake as one line on stderr (never a traceback), an orderly stop on SIGTERM/SIGINT/SIGHUP, and a quick exit."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any

import typer

from tickerflow.cli.config_file import error_message
from tickerflow.cli.console import is_expected, stop_signals
from tickerflow.cli.root import FLOW_COMMANDS, VERBOSE, app
from tickerflow.runtime import environment
from tickerflow.runtime.reachability import ServerUnreachable
from tickerflow_model.errors import TickerflowError, storage_failure, storage_message
from tickerflow_model.redaction import redact_text

EXIT_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    """The `tickerflow` command: returns its exit code. A user's mistake is one line on stderr, no traceback."""
    environment.apply()  # before anything imports Prefect or MLflow
    args = sys.argv[1:] if argv is None else list(argv)
    verbose = VERBOSE in args  # anywhere on the line: `tickerflow run --verbose` as well as `tickerflow --verbose run`
    args = [a for a in args if a != VERBOSE]
    command = next((a for a in args if not a.startswith("-")), "")
    prefix = f"tickerflow {command}".rstrip()
    if not verbose:  # the quiet console: no MLflow download bar (a run, a forecast; promote loads the model)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # read when MLflow draws a bar
    # The commands that run a flow stop in order on SIGTERM, SIGHUP (their terminal closed) and SIGINT, each
    # unless it is ignored (SIGINT in a background job, SIGHUP under nohup); `serve` and `ui` are stopped by
    # these signals as their normal end, and handle them themselves (`runtime.servers.stopping_on_signals`).
    in_main_thread = threading.current_thread() is threading.main_thread() and command in FLOW_COMMANDS
    previous = {}
    _received.clear()
    if in_main_thread:
        previous = {
            sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN
        }
    try:
        cli = typer.main.get_command(app)
        code = cli.main(args=args, prog_name="tickerflow", standalone_mode=False, obj={"verbose": verbose}) or 0
    except typer.TyperException as exc:  # a usage error: an unknown option, a value of the wrong type
        message = " ".join(exc.format_message().split())
        if message and not _received:  # (none when the help was shown instead)
            print(f"{prefix}: {message}", file=sys.stderr)
        code = getattr(exc, "exit_code", EXIT_FAILED)
    except (KeyboardInterrupt, typer.Abort):
        code = 128 + signal.SIGINT
    except Exception as exc:  # noqa: BLE001 - the CLI boundary turns errors into exit codes
        if not is_expected(exc) and not _received:
            raise
        if not _received:
            storage = None if isinstance(exc, TickerflowError) else storage_failure(exc)
            if isinstance(exc, ServerUnreachable):  # the message names the server and the setting already
                reason = str(exc)
            elif storage:
                reason = storage_message(storage)
            else:
                reason = f"{type(exc).__name__}: {error_message(exc)}"
            print(f"{prefix}: {redact_text(reason)}", file=sys.stderr)
        code = EXIT_FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if _received:  # whatever the stop unwound through (Typer turns KeyboardInterrupt into exit code 130)
        signum = _received[0]
        print(
            f"{prefix}: {'interrupted' if signum == signal.SIGINT else 'stopped'} by {signal.Signals(signum).name}",
            file=sys.stderr,
        )
        return 128 + signum
    return code


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_received = stop_signals  # the stop signals this command received, first first (the console reads them too)


class Stopped(KeyboardInterrupt):
    """A stop signal received: unwound like Ctrl-C, so the flow run and its MLflow run are marked
    stopped (`train_pipeline._kill_mlflow_run`) before the command ends. During a flow run Prefect's
    own SIGTERM handler comes first (the run ends Crashed, then Cancelled by our hook) and hands the
    signal on to this one."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    _received.append(signum)
    if len(_received) == 1:  # a second signal (`timeout` signals the command, then its group) adds nothing
        raise Stopped(signum)


def entry() -> None:
    """The `tickerflow` console script and `python -m tickerflow`: `main()`, then a quick exit.

    Python's exit handlers all run: they drain Prefect's log and event workers, stop its temporary
    server and flush logging. Only the interpreter's teardown is skipped, which frees the objects of
    torch, MLflow, Prefect and Great Expectations one by one: 1.9-2.0 s of every command that ran a flow
    (a process with both flows imported, on a 2-core machine; 0.03 s with this exit).
    """
    status = {"code": EXIT_FAILED}  # an exception that escapes main() exits 1, as Python's own exit does
    atexit.register(_exit_now, status)  # registered first, so it runs after every other exit handler
    try:
        status["code"] = main()
    except SystemExit as exc:
        status["code"] = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        raise
    finally:
        # The outcome is recorded and printed: a second signal must not break the exit handlers (which
        # stop the temporary API) with a traceback.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    sys.exit(status["code"])


def _exit_now(status: dict) -> None:
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be written to it
            pass
    os._exit(status["code"])
