"""Failure output: expected errors read as one line with no traceback; bugs keep their traceback."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from cli_processes import RUN_TIMEOUT_S, cli_env, heavy_imports
from prefect.logging.handlers import PrefectConsoleHandler

from tickerflow.cli.console import ExpectedErrorFilter, _TrimmingFormatter, is_expected
from tickerflow.runtime import environment
from tickerflow.tasks.validate import ValidationFailed
from tickerflow_model.errors import ConfigError, TickerflowError
from tickerflow_model.price_files import IngestError
from tickerflow_model.trainer import TrainingError


def _console() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = PrefectConsoleHandler(stream=stream)
    handler.setFormatter(_TrimmingFormatter(logging.Formatter("%(levelname)s %(message)s")))
    handler.addFilter(ExpectedErrorFilter())
    logger = logging.getLogger(f"test-console-{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


def _log_failure(logger: logging.Logger, exc: Exception) -> None:
    try:
        raise exc
    except Exception as caught:
        logger.error("Encountered exception during execution: %r", caught, exc_info=True)
    logger.info("Finished in state %r", _Failed(f"Flow run encountered an exception: {type(exc).__name__}: {exc}"))


def test_expected_error_loses_its_traceback_on_the_console():
    logger, stream = _console()
    _log_failure(logger, ValidationFailed("data validation failed: 2 critical\n  - [critical] close <= 0"))
    out = stream.getvalue()
    assert "Traceback" not in out
    # the exception's record is one line naming the error; Prefect's state line shows as Prefect writes it
    assert "ERROR Encountered exception during execution: ValidationFailed\n" in out
    assert "Finished in state Failed(" in out


def test_unexpected_error_keeps_its_traceback_on_the_console():
    logger, stream = _console()
    _log_failure(logger, ValueError("a bug"))
    out = stream.getvalue()
    assert "Traceback" in out and "ValueError: a bug" in out


def test_other_handlers_still_get_the_full_record():
    logger, stream = _console()
    records: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = records.append
    logger.addHandler(capture)
    _log_failure(logger, IngestError("cannot read x.csv"))
    assert records[0].exc_info is not None and "cannot read x.csv" in records[1].getMessage()


def test_serve_keeps_the_reason_in_its_line():
    stream = io.StringIO()
    handler = PrefectConsoleHandler(stream=stream)
    handler.setFormatter(_TrimmingFormatter(logging.Formatter("%(message)s")))
    handler.addFilter(ExpectedErrorFilter(with_reason=True))
    logger = logging.getLogger("test-console-serve")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    _log_failure(logger, IngestError("cannot read x.csv"))
    assert "Traceback" not in stream.getvalue()
    assert "IngestError: cannot read x.csv" in stream.getvalue()


@pytest.mark.parametrize("exc", [IngestError("x"), ValidationFailed("x"), TrainingError("x"), ConfigError("x")])
def test_project_errors_are_expected(exc):
    assert isinstance(exc, TickerflowError) and is_expected(exc)


@pytest.mark.parametrize("exc", [ValueError("x"), OSError("x"), FileNotFoundError("x"), KeyError("x")])
def test_builtin_errors_are_bugs(exc):
    assert not is_expected(exc)


def _forecast_raising(monkeypatch, exc: Exception) -> None:
    """`tickerflow forecast` whose flow raises `exc` (no Prefect API started)."""
    from tickerflow.cli import root
    from tickerflow.flows import batch_forecast
    from tickerflow.runtime import prefect_api

    def failing(**kwargs):
        raise exc

    monkeypatch.setattr(prefect_api, "begin_prefect_api", lambda: None)
    monkeypatch.setattr(root, "prefect_api", contextlib.nullcontext)
    monkeypatch.setattr(batch_forecast, "batch_forecast", failing)


def test_a_bug_raising_valueerror_keeps_its_traceback(monkeypatch):
    """The CLI boundary re-raises what is not the project's own error type."""
    from tickerflow import cli

    _forecast_raising(monkeypatch, ValueError("an internal bug"))
    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(["forecast", "--data", "x.csv", "--out", "y.parquet"])


def test_an_expected_error_is_one_line_and_exit_1(monkeypatch, capsys):
    from tickerflow import cli

    _forecast_raising(monkeypatch, IngestError("prices.csv: no date column"))
    assert cli.main(["forecast", "--data", "x.csv", "--out", "y.parquet"]) == 1
    assert capsys.readouterr().err.strip() == "tickerflow forecast: IngestError: prices.csv: no date column"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "--epochs", "x"], "'--epochs'"),  # the option's type
        (["run", "--runner", "ray"], "'--runner'"),  # one of its choices
        (["run", "--bogus"], "--bogus"),  # no such option
        (["forecast", "--out", "y.parquet"], "'--data'"),  # a required option
        (
            ["replay", "--data", "x.csv", "--start", "2013-01-01", "--end", "2013-12-31", "--retrain-every", "1.5"],
            "'--retrain-every'",
        ),
    ],
)
def test_a_bad_option_value_is_refused_by_name_in_one_line(argv, named, capsys):
    from tickerflow.cli import main

    assert main(argv) == 2  # a usage error, before anything runs
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith(f"tickerflow {argv[0]}: ") and named in err
    assert "Traceback" not in err


def test_help_shows_the_config_models_defaults(capsys):
    from tickerflow.cli import main
    from tickerflow_model.config import ServerOptions, TrainConfig, field_default

    def help_text(command: str) -> str:
        assert main([command, "--help"]) == 0
        return " ".join(re.sub("[│╭╮╰╯─]", " ", capsys.readouterr().out).split())  # without the help's box

    assert f"(sets train.epochs; default: {field_default(TrainConfig, 'epochs')})" in help_text("run")
    assert f"[default: {field_default(ServerOptions, 'mlflow_port')}]" in help_text("ui")


def test_the_defaults_help_shows_are_the_config_modules_and_the_flows(capsys):
    """`--help` reads its defaults from the one config module (light to import), which the flows take theirs from."""
    import inspect

    from tickerflow.cli import main
    from tickerflow.flows.batch_forecast import batch_forecast
    from tickerflow.flows.replay import replay
    from tickerflow_model.config import ForecastConfig, field_default
    from tickerflow_model.names import MODEL_NAME

    def help_text(command: str) -> str:
        assert main([command, "--help"]) == 0
        return " ".join(re.sub("[│╭╮╰╯─]", " ", capsys.readouterr().out).split())

    assert f"the data's tickers; {MODEL_NAME} when none is" in help_text("forecast")
    assert inspect.signature(batch_forecast.fn).parameters["model_uri"].default == field_default(
        ForecastConfig, "model_uri"
    )
    retrain_every = inspect.signature(replay.fn).parameters["retrain_every"].default
    assert f"[default: {retrain_every}]" in help_text("replay")
    assert "[default: (every model)]" in help_text("models")
    assert f"[default: {MODEL_NAME}]" in help_text("promote")


@pytest.mark.parametrize(
    "command, flags",
    [
        ([], ["--help"]),
        (["run"], ["--json", "--help"]),
        (["forecast"], ["--json"]),
        (["gc"], ["--dry-run"]),
        (["serve"], ["--no-server"]),
    ],
)
def test_flags_read_as_flags_in_the_help(command, flags, capsys):
    from tickerflow.cli import main

    assert main([*command, "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for flag in flags:
        (line,) = [line for line in lines if line.strip().startswith(flag + " ")]
        assert "<bool>" not in line and "BOOLEAN" not in line, line  # `--json  print ...`, not `--json <bool>`
    assert not [line for line in lines if "<bool>" in line]


def test_bad_config_file_is_a_config_error(tmp_path, capsys):
    from tickerflow.cli import main

    bad = tmp_path / "c.yaml"
    bad.write_text("train: [unclosed\n")
    assert main(["run", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "ConfigError" in err and "not valid YAML" in err and "Traceback" not in err
    assert main(["run", "--config", str(tmp_path / "missing.json")]) == 1
    assert "cannot read config file" in capsys.readouterr().err


def test_bad_runner_option_is_a_config_error(capsys):
    from tickerflow.cli import main

    assert main(["run", "--runner", "thread", "--dask-workers", "2"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "RunnerConfig: n_workers sizes the temporary local Dask cluster" in err


def test_a_config_out_of_bounds_is_one_line_naming_the_field(tmp_path, capsys):
    from tickerflow.cli import main

    assert main(["run", "--epochs", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]  # one line, whatever pydantic's own message looks like
    assert err.startswith("tickerflow run: ValidationError: train")
    assert re.search(r"epochs.*(>= 1|greater than or equal to 1)", err)
    config = tmp_path / "c.json"
    config.write_text('{"window": {"lookback": 1}, "register": {"model_name": " "}}')
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "window" in err and "lookback" in err and "register" in err


def test_quantile_levels_that_scoring_cannot_use_are_refused_in_one_line_before_training(tmp_path, capsys):
    from tickerflow.cli import main

    config = tmp_path / "c.json"
    config.write_text('{"train": {"gru": {"quantiles": [0.25, 0.5, 0.75]}}}')
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert "train: gru.quantiles must include 0.05, 0.1, 0.9, 0.95" in err and "got [0.25, 0.5, 0.75]" in err


class _Failed(str):
    """Renders like Prefect's state: `Failed('message')`, the message quoted as repr() quotes it."""

    def __repr__(self) -> str:
        return f"Failed({str.__repr__(self)})"


def test_the_cli_applies_the_environment_before_prefect_or_mlflow_is_imported():
    """main() applies tickerflow.runtime.environment first; that only works while importing the CLI module (and
    `python -m tickerflow`'s package) imports neither Prefect nor MLflow."""
    import subprocess
    import sys

    code = "import sys, tickerflow, tickerflow.cli; print(sorted({'prefect', 'mlflow'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["serve", "--help"], ["models", "--help"]])
def test_the_help_imports_nothing_heavy(args):
    """The app is declared at import and each command imports what it runs: the help loads nothing heavy."""
    assert heavy_imports(args, 0)[0] == []


def test_every_command_names_what_it_imports_before_its_console_is_set_up():
    import typer

    from tickerflow.cli import app
    from tickerflow.cli.root import COMMAND_IMPORTS

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert set(commands) == set(COMMAND_IMPORTS)


def test_environment_defaults_never_override_what_is_set():
    from tickerflow.runtime import environment

    env = environment.apply({"DO_NOT_TRACK": "0"})
    assert env["DO_NOT_TRACK"] == "0" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert set(environment.DEFAULTS) <= set(env)


def test_epochs_0_is_refused_naming_epochs_in_one_line(capsys):
    from tickerflow.cli import main

    assert main(["run", "--epochs", "0"]) == 1  # the bound is TrainConfig's Field(ge=1); nothing runs
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "train.epochs" in err and "greater than or equal to 1 (got 0)" in err
    assert "Traceback" not in err


def test_no_task_hashes_its_inputs_for_a_prefect_cache_but_the_keyed_caches_stay():
    """Every task of the flows runs under NO_CACHE (an environment default): Prefect computes no cache key
    from the price frames and evaluations the tasks take. The validation and the window dataset keep
    their own keys, and importing the flows warns of nothing."""
    import importlib
    import pkgutil

    from prefect import Task
    from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy

    import tickerflow.flows
    import tickerflow.reporting
    import tickerflow.tasks

    found = {}
    for package in (tickerflow.flows, tickerflow.reporting, tickerflow.tasks):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found.update({t.name: t for t in vars(module).values() if isinstance(t, Task)})
    keyed = {"validate", "window-plan", "window-part", "window-commit"}
    assert keyed | {"evaluate", "register", "log-evaluation", "finish-mlflow-run"} <= set(found)
    assert all(isinstance(found[name].cache_policy, CacheKeyFnPolicy) for name in keyed)
    assert [name for name, t in found.items() if name not in keyed and t.cache_policy is not NO_CACHE] == []

    imported = subprocess.run(
        [sys.executable, "-c", "import tickerflow.flows.train_pipeline, tickerflow.flows.batch_forecast"],
        env=environment.apply(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert imported.returncode == 0 and "cache" not in imported.stderr.lower(), imported.stderr


EARLY_START = """
import os, sys
from tickerflow.runtime import environment
environment.apply()
from tickerflow.cli import root
from tickerflow.runtime import prefect_api as api
from tickerflow.runtime.servers import Server, ServerError
if sys.argv[1] == "fail":  # a server that exits at once, as one whose port was taken does
    real = api.temporary_prefect_api
    api.temporary_prefect_api = lambda log_dir: Server(
        **{**real(log_dir).__dict__, "command": [sys.executable, "-c", "raise SystemExit(3)"], "process": None})
api.begin_prefect_api()
import httpx
from prefect.settings import PREFECT_API_URL, get_current_settings
prepared = []

def prepare():  # the run's preparation, while the server is still starting; its errors are the run's
    prepared.append("api_url" not in api._api_start[1])
    root._prepare_training_run()
    raise RuntimeError("left to the run")

try:
    with api.prefect_api(while_starting=prepare):
        url, beats = PREFECT_API_URL.value(), get_current_settings().flows.heartbeat_frequency
except ServerError as exc:
    print("error:", exc)
    raise SystemExit(0)
print(url == os.environ["PREFECT_API_URL"] == PREFECT_API_URL.value(), httpx.get(url + "/health").status_code,
      "prefect.server.api.server" in sys.modules, beats, prepared == [True], "torch._dynamo" in sys.modules,
      os.path.exists(os.path.join(os.environ["TICKERFLOW_HOME"], "mlflow.db")), url)
"""


@pytest.mark.parametrize("outcome", ["up", "fail"])
def test_the_temporary_api_begun_before_the_imports_serves_this_process_and_stops_with_it(tmp_path, outcome):
    env = environment.apply({k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"})
    env.update(TICKERFLOW_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"))
    done = subprocess.run(
        [sys.executable, "-c", EARLY_START, outcome], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    if outcome == "fail":  # three ports tried, then one line naming the server, its exit and its log
        assert done.stdout.startswith(
            "error: Prefect's temporary API exited with code 3 before serving http://127.0.0.1:"
        )
        assert str(tmp_path / "home" / "logs" / "prefect-temporary-api.log") in done.stdout
        return
    same, status, imported_server_code, heartbeats, *prepared, url = done.stdout.split()
    # Prefect's settings in this process point at it, it answered, its code was never imported here, and
    # the flow runs on it send no heartbeats
    assert (same, status, imported_server_code, heartbeats) == ("True", "200", "False", "None")
    # the run's preparation was done once, while the server (on a new database) was still starting:
    # torch's compiler package imported and the MLflow store created; its error did not escape
    assert prepared == ["True", "True", "True"]
    with pytest.raises(httpx.HTTPError):  # the server went with the process
        httpx.get(url + "/health", timeout=5)


class _Begun(Exception):
    pass


@pytest.mark.parametrize(
    "args, begins",
    [
        (["run"], True),  # begun once the options are checked, before the command's imports
        (["replay", "--data", "x.csv", "--start", "2013-01-02", "--end", "2013-01-03"], True),
        (["run", "--epochs", "0"], False),  # a bad option is refused before anything starts
        (["forecast", "--help"], False),
        (["models", "--help"], False),
    ],
)
def test_main_begins_the_server_start_only_for_commands_that_run_a_flow(monkeypatch, args, begins):
    from tickerflow import cli
    from tickerflow.cli import root
    from tickerflow.runtime import prefect_api

    calls = []

    def begin() -> None:
        calls.append(args[0])
        raise _Begun  # stops the command here: nothing after the start is run

    monkeypatch.setattr(prefect_api, "begin_prefect_api", begin)
    monkeypatch.setattr(root, "COMMAND_IMPORTS", {name: () for name in root.COMMAND_IMPORTS})
    if begins:
        with pytest.raises(_Begun):
            cli.main(args)
    else:
        cli.main(args)
    assert calls == ([args[0]] if begins else [])


def test_the_console_script_exits_with_mains_code_and_keeps_its_output():
    """`python -m tickerflow` (the console script's `entry`) skips the interpreter's teardown: the exit
    code and everything printed still arrive."""
    env = environment.apply(dict(os.environ))
    ok = subprocess.run(
        [sys.executable, "-m", "tickerflow", "run", "--help"], env=env, capture_output=True, text=True, timeout=300
    )
    assert ok.returncode == 0 and "--epochs" in ok.stdout and ok.stdout.endswith("\n")
    bad = subprocess.run(
        [sys.executable, "-m", "tickerflow", "run", "--epochs", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1  # refused before the temporary server is begun
    assert bad.stderr.strip().splitlines() == [
        "tickerflow run: ValidationError: train.epochs: Input should be greater than or equal to 1 (got 0)"
    ]


def _run_on(data: Path, tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """`tickerflow run` in its own process: Prefect's console handlers write to its stderr, as on a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "tickerflow", "run", "--data", str(data), "--epochs", "1", *options],
        env=cli_env(tmp_path / "home"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def _bad_input(case: str, tmp_path: Path, small_sample_csv: Path) -> tuple[Path, str]:
    """(the --data of the case, words its reason must hold)"""
    if case == "no_close.csv":  # ingest refuses it: no price column
        path = tmp_path / case
        pd.read_csv(small_sample_csv).drop(columns=["Close", "Adj Close"]).to_csv(path, index=False)
        return path, "missing required column 'close'"
    return tmp_path / case, "data source not found"  # a file that does not exist


def _reason_once(done: subprocess.CompletedProcess, words: str) -> None:
    console = done.stdout + done.stderr
    assert done.returncode != 0, console[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("tickerflow run: IngestError: ")]
    assert len(said) == 1 and words in said[0], console[-3000:]
    assert console.count(said[0].split(": ", 2)[-1]) == 1, console[-3000:]
    assert "Traceback" not in console, console[-3000:]


@pytest.mark.parametrize("case", ["no_close.csv", "missing.csv"])
def test_a_run_on_bad_input_prints_the_reason_once_and_no_prefect_state_lines(case, tmp_path, small_sample_csv):
    data, words = _bad_input(case, tmp_path, small_sample_csv)
    done = _run_on(data, tmp_path)
    _reason_once(done, words)
    console = done.stdout + done.stderr
    assert "Finished in state" not in console and "Encountered exception" not in console, console[-3000:]


def test_a_run_on_bad_input_shows_prefects_state_lines_with_verbose(tmp_path, small_sample_csv):
    data, words = _bad_input("no_close.csv", tmp_path, small_sample_csv)
    done = _run_on(data, tmp_path, "--verbose")
    said = [line for line in done.stderr.splitlines() if line.startswith("tickerflow run: IngestError: ")]
    assert done.returncode == 1 and len(said) == 1 and words in said[0], done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == said[0] and "Traceback" not in done.stderr, done.stderr[-3000:]
    # Prefect's own lines, as Prefect writes them: its record of the exception, one line; its state lines
    assert "Encountered exception during execution: IngestError\n" in done.stderr, done.stderr[-3000:]
    assert "Finished in state Failed(" in done.stderr, done.stderr[-3000:]


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--config", "{bad}"],
        ["run", "--epochs", "0"],
        ["replay", "--data", "x.csv", "--start", "2013-01-02", "--end", "2013-01-03", "--config", "{bad}"],
        ["forecast", "--data", "x.csv", "--out", "y.parquet", "--model", "a/b"],
    ],
)
def test_a_bad_config_or_option_is_refused_before_anything_heavy_is_imported(args, tmp_path):
    """What makes `tickerflow run --config bad.yaml` answer as fast as `--help`: the config is checked before
    the command imports Prefect, MLflow, torch or pandas (and before Prefect's API starts)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: -3\n")
    imported, stderr = heavy_imports([a.replace("{bad}", str(bad)) for a in args], 1)
    assert imported == []
    (line,) = stderr.strip().splitlines()  # one line naming the problem
    assert "ValidationError" in line and ("epochs" in line or "model_name" in line), line
