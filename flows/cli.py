"""`tickerflow`: one Typer app. Train (`run`), forecast, replay and tidy the home (`gc`); run the
deployments (`serve`) and the UIs (`ui`); read and move the champion (`models`, `promote`, `rollback`).

Nothing heavy is imported here at module level: `main` first applies the environment defaults (telemetry
off) and only then builds the app, whose option defaults are read from the config models.
"""

import atexit
import json
import math
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Literal

import typer

from tickerflow import environment

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "data" / "sample" / "stocks_daily_2000_2013.csv.gz"
EXIT_FAILED = 1

# CLI option -> the PipelineConfig field it sets (dotted, by the names a --config file uses). The one place
# to change when a stage config changes shape; the option's help shows that field's default.
CONFIG_OPTIONS: dict[str, str] = {
    "data": "ingest.source",
    "ticker": "ingest.ticker",
    "epochs": "train.epochs",
    "seed": "train.seed",
}


def _read_config_file(path: str) -> dict:
    """A JSON or YAML mapping; a missing file or bad syntax is a ConfigError naming the file."""
    from tickerflow_model.errors import ConfigError

    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES:,} bytes; a config is a few settings")
    text = decode_text(data, f"config file {path}")
    import yaml

    is_yaml = path.endswith((".yaml", ".yml"))
    try:
        raw = (yaml.safe_load(text) or {}) if is_yaml else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {'YAML' if is_yaml else 'JSON'}: {str(exc)[:4 * QUOTED_CHARS]}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of stage -> settings, got {type(raw).__name__}")
    return raw


MAX_CONFIG_BYTES = 1_000_000
QUOTED_CHARS = 120  # the most of a user's value an error message repeats
ERRORS_SHOWN = 4  # a config with more problems than this is named by its first few


def decode_text(data: bytes, what: str) -> str:
    """UTF-8 (with or without a BOM), or UTF-16 with its BOM; anything else is a ConfigError naming `what`."""
    from tickerflow_model.errors import ConfigError

    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} is not {encoding.upper().removesuffix('-SIG')} text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None


def quoted(value: Any, limit: int = QUOTED_CHARS) -> str:
    """repr(value), bounded: a YAML of a few hundred bytes can expand (aliases) into megabytes."""
    import reprlib

    short = reprlib.Repr()  # (Python 3.11's takes no keyword arguments)
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple, short.maxset = 3, 8, 8, 8, 8
    short.maxstring, short.maxother, short.maxlong = limit, limit, 40
    text = short.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _set_field(raw: dict, dotted: str, value: Any) -> None:
    from tickerflow_model.errors import ConfigError

    *sections, name = dotted.split(".")
    for section in sections:
        raw = raw.setdefault(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"config section {section} must be a mapping of settings, got {type(raw).__name__}")
    raw[name] = value


def _lookup(raw: dict, dotted: str) -> Any:
    """The value at `dotted` in a nested mapping, None when any part of the path is missing."""
    for name in dotted.split("."):
        if not isinstance(raw, dict) or name not in raw:
            return None
        raw = raw[name]
    return raw


def load_config(path: str | None = None, **options: Any):
    """The PipelineConfig of a `--config` file (optional) with the CLI options that were given (not None)
    set on top; `options` are keys of CONFIG_OPTIONS. Bounds are checked by the config models."""
    from tickerflow.flows.train_pipeline import PipelineConfig
    from tickerflow_model.redaction import hold

    raw = _read_config_file(path) if path else {}
    source = CONFIG_OPTIONS["data"]
    if options.get("data") is None and _lookup(raw, source) is None:
        options["data"] = str(SAMPLE_DATA)  # the bundled sample, whichever folder the command runs from
    for option, value in options.items():
        if value is not None:
            _set_field(raw, CONFIG_OPTIONS[option], value)
    # Credentials in the URI stay in this process: the flow's parameter (stored by Prefect, logged to
    # MLflow) is the redacted form, and ingest asks for the full one back.
    _set_field(raw, source, hold(str(_lookup(raw, source))))
    return PipelineConfig.model_validate(raw)


FLOW_COMMANDS = {"run", "forecast", "replay"}  # the commands that run a flow on Prefect's API
_api_start: list = []  # [thread, outcome] of the start begun by begin_prefect_api, until it is waited for
SERVER_START_ATTEMPTS = 3  # a free port can be taken by another process before the server binds it


def _needs_temporary_server() -> bool:
    """No Prefect API configured (PREFECT_API_URL, from the environment or the active profile)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED.value())


def _migration_lock():
    """Two processes that start a server on one new `$PREFECT_HOME/prefect.db` at once both migrate it,
    and one fails in alembic ("Online migration expected to match one row"): one start at a time."""
    from filelock import FileLock
    from prefect.settings import PREFECT_HOME

    home = Path(PREFECT_HOME.value()).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return FileLock(str(home / ".tickerflow-server-start.lock"), timeout=600)


def _start_temporary_server() -> None:
    """Prefect's own start of its temporary server (this process then uses it), under the migration lock."""
    from prefect.server.api.server import SubprocessASGIServer

    with _migration_lock():
        SubprocessASGIServer().start()


def begin_prefect_api() -> None:
    """In a fresh process about to run a flow, with no Prefect API configured: begin starting Prefect's
    temporary API server in a background thread. `prefect_api` waits for it.

    It is the server Prefect starts for itself on first use (`ops_cli.temporary_prefect_api`), begun before
    the pipeline's imports rather than after them: its boot (a subprocess: imports, and the migrations
    of a new database) on one core overlaps those imports on the other, and this process never imports
    Prefect's server code. A process that has imported Prefect already keeps Prefect's own start.
    """
    if _api_start or "prefect" in sys.modules or not _needs_temporary_server():
        return
    import threading

    from tickerflow.flows.ops_cli import ServerError, temporary_prefect_api
    from tickerflow.tasks.storage import home_subdir
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    timeout = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    outcome: dict = {}

    def start() -> None:
        try:
            with _migration_lock():
                for attempt in range(1, SERVER_START_ATTEMPTS + 1):
                    server = temporary_prefect_api(home_subdir("logs")).start()
                    atexit.register(server.stop)
                    try:
                        server.wait_healthy(timeout)
                    except ServerError:
                        if server.running() or attempt == SERVER_START_ATTEMPTS:
                            raise
                        continue  # it exited at once: its port was taken meanwhile, so try another
                    outcome["api_url"] = f"{server.url}/api"
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to prefect_api, which raises it
            outcome["error"] = exc

    thread = threading.Thread(target=start, name="tickerflow-prefect-api-start", daemon=True)
    thread.start()
    _api_start[:] = [thread, outcome]


def _prepare_training_run() -> None:
    """What a training run does anyway on its way to its first epoch, but that does not need Prefect's
    API: import torch's compiler package (the optimizer's first use imports it: over a second), create
    the local MLflow store (the first run on a home migrates its SQLite database), import matplotlib's
    Figure (the report's charts)."""
    import importlib

    importlib.import_module("torch._dynamo")
    from tickerflow.tasks.tracking import initialise_store, tracking_uri

    initialise_store(tracking_uri())
    importlib.import_module("matplotlib.figure")


@contextmanager
def prefect_api(while_starting: Callable[[], None] | None = None) -> Iterator[None]:
    """A Prefect API for the flows run in the block. When none is configured: the server that
    `begin_prefect_api` began (waited for; this process, and the processes it starts, such as Dask
    workers, are pointed at it), or else the temporary server Prefect starts for itself, now.

    `while_starting` is called when that server is still starting once this process is ready to run
    the flow: on a new home the server's database migrations outlast this process's imports, and the
    wait can do the run's own preparation. It is only a head start: the run meets any error it hits
    again, in its own task, where the flow reports it.

    The flow runs on the server begun here send no heartbeats: that server lives only as long as this
    process, so nothing could act on a missed heartbeat, and the heartbeat thread's one-second sleeps
    held the end of every flow run by up to a second.
    """
    if not _api_start:
        if _needs_temporary_server():
            _start_temporary_server()
        yield
        return
    thread, outcome = _api_start
    if while_starting is not None and thread.is_alive():
        try:
            while_starting()
        except Exception:  # noqa: BLE001 - reported by the run itself, see above
            pass
    thread.join()
    _api_start.clear()
    if "error" in outcome:
        raise outcome["error"]
    from prefect.context import refresh_global_settings_context
    from prefect.settings import temporary_settings

    os.environ["PREFECT_API_URL"] = outcome["api_url"]
    refresh_global_settings_context()  # Prefect read its settings at import: read them again
    with temporary_settings(updates={"api.url": outcome["api_url"], "flows.heartbeat_frequency": None}):
        yield


TICKERS_SHOWN = 5  # per-ticker rows: every ticker up to 2 * this many, else the best and the worst this many


def shown_tickers(per_ticker: dict) -> list[str]:
    """Tickers ranked by the model's skill (as the evaluation ranks them): all, or the best and the worst."""
    from tickerflow_model.evaluation import rank_tickers

    ranked = list(rank_tickers(per_ticker).index)
    if len(ranked) <= 2 * TICKERS_SHOWN:
        return sorted(ranked)
    return ranked[:TICKERS_SHOWN] + ranked[-TICKERS_SHOWN:]


def metric_text(value: float) -> str:
    """Four decimals, or four significant digits where decimals would hide the value (prices around
    1e-300 have errors that small; a 0.0000 would read as a perfect score)."""
    return f"{value:.4f}" if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e9 else f"{value:.4g}"


def format_metrics(summary: dict) -> str:
    """Overall and per-ticker metrics: point metrics in price units, distribution scores in % log return."""
    from tickerflow_model.metrics import METRIC_KEYS

    metrics = summary["metrics"]
    names = [c for c in METRIC_KEYS if any(c in m for m in metrics.values())]
    per_ticker = summary.get("per_ticker", {})
    tickers = shown_tickers(per_ticker)
    rows = [("all", k, v) for k, v in metrics.items()]
    rows += [(t, k, v) for t in tickers for k, v in per_ticker[t].items()]
    scope_w = max([len("scope")] + [len(r[0]) for r in rows])
    name_w = max([len("forecaster")] + [len(r[1]) for r in rows])
    width = {n: max(len(n), 9) for n in names}
    lines = [f"{'scope':<{scope_w}}  {'forecaster':<{name_w}}  " + "  ".join(f"{n:>{width[n]}}" for n in names)]
    for scope, name, m in rows:
        cells = [f"{metric_text(m[n]):>{width[n]}}" if n in m else f"{'-':>{width[n]}}" for n in names]
        lines.append(f"{scope:<{scope_w}}  {name:<{name_w}}  " + "  ".join(cells))
    if len(tickers) < len(per_ticker):
        lines.append(f"(the {TICKERS_SHOWN} best and {TICKERS_SHOWN} worst of {len(per_ticker)} tickers by the model's skill; "
                     "all of them: evaluation/metrics_per_ticker.csv in the MLflow run)")
    return "\n".join(lines)


def build_app() -> typer.Typer:
    """The `tickerflow` app. Option defaults and bounds come from the config models, so building it imports
    the flows (and with them Prefect and MLflow): call it after `environment.apply()`."""
    import inspect

    from tickerflow.config_values import field_default
    from tickerflow.flows import ops_cli, registry_cli
    from tickerflow.flows.replay import replay as replay_flow
    from tickerflow.flows.runners import LOCAL_WORKERS, RUNNER_KINDS, RunnerConfig
    from tickerflow.flows.train_pipeline import PipelineConfig
    from tickerflow.tasks.forecast import ForecastConfig

    defaults = PipelineConfig().model_dump(by_alias=True)

    def sets(option: str, text: str, shown: str | None = None):
        """An option that sets a PipelineConfig field: not given, the field keeps its default or --config's value."""
        dotted = CONFIG_OPTIONS[option]
        default = shown if shown is not None else _lookup(defaults, dotted)
        # The option's own default is None (not given: --config's value or the field's default stands), so the
        # field's default goes into the help text rather than show_default, which click would put in parentheses.
        return typer.Option(f"--{option}", help=f"{text} (sets {dotted}; default: {default})", show_default=False)

    Data = Annotated[str | None, sets("data", "file, folder, glob or fsspec URI of prices", "the bundled sample")]
    Ticker = Annotated[str | None, sets("ticker", "ticker of a single-ticker file without a ticker column", "the file name")]
    Epochs = Annotated[int | None, sets("epochs", "training epochs")]
    Seed = Annotated[int | None, sets("seed", "random seed of the training run")]
    ConfigFile = Annotated[str | None, typer.Option("--config", help="JSON or YAML file with a PipelineConfig: sections "
                                                     "ingest, validate, window, train, evaluate, register, backtest")]
    Json = Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line of stdout")]

    app = typer.Typer(
        name="tickerflow", help=__doc__.split("\n\n")[0], no_args_is_help=True, add_completion=False,
        pretty_exceptions_enable=False,  # a bug's traceback stays a plain one
        # click's plain help: a flag reads `--json`, where Typer's rich panels print `--json <bool>`
        rich_markup_mode=None,
    )

    @app.callback()
    def options(
        verbose: Annotated[bool, typer.Option(VERBOSE, help="run, forecast, replay: show Prefect's and MLflow's own "
                                              "log lines and warnings too (given anywhere on the line)")] = False,
    ) -> None:
        """`--verbose` is taken off the line by main(); declared here so that --help lists it."""

    @app.command()
    def run(
        data: Data = None, config: ConfigFile = None, ticker: Ticker = None, epochs: Epochs = None, seed: Seed = None,
        runner: Annotated[Literal[RUNNER_KINDS], typer.Option(
            help="task runner of the per-ticker fan-out: a thread pool or Dask", rich_help_panel="Task runner")
        ] = field_default(RunnerConfig, "kind"),
        dask_address: Annotated[str | None, typer.Option(
            help="scheduler of a running Dask cluster, e.g. tcp://HOST:8786", rich_help_panel="Task runner")] = None,
        dask_workers: Annotated[int | None, typer.Option(
            help=f"workers of a temporary local Dask cluster (default: {LOCAL_WORKERS})", show_default=False, rich_help_panel="Task runner")
        ] = None,
        json_summary: Json = False,
    ) -> int:
        """Run the training pipeline once: ingest, validate, window, train, evaluate, register."""
        from tickerflow.flows.runners import build_task_runner
        from tickerflow.flows.train_pipeline import train_pipeline

        task_runner = build_task_runner(RunnerConfig(kind=runner, address=dask_address, n_workers=dask_workers))
        pipeline_config = load_config(config, data=data, ticker=ticker, epochs=epochs, seed=seed)
        with prefect_api(while_starting=_prepare_training_run):
            summary = train_pipeline.with_options(task_runner=task_runner)(pipeline_config)
        print(format_metrics(summary))
        print("\n" + "\n".join(summary["versus"]))
        print(
            f"skill vs naive: {summary['skill_vs_naive']:+.4f}   registered {summary['model_name']} "
            f"v{summary['model_version']} (gru)   promoted: {summary['promoted']}\n"
            f"champion: v{summary['champion_version']} ({summary['champion_forecaster']}): {summary['reason']}\n"
            f"MLflow run: {summary['mlflow_run_url']}"
        )
        if json_summary:
            print(json.dumps(summary, default=str))
        return 0

    @app.command()
    def forecast(
        data: Annotated[str, typer.Option(help="recent prices: file, folder, glob or fsspec URI")],
        out: Annotated[str, typer.Option(help="output Parquet file (relative to this folder) or fsspec URI")],
        model_uri: Annotated[str | None, typer.Option(
            help="registered model to forecast with", show_default=field_default(ForecastConfig, "model_uri"))] = None,
        json_summary: Json = False,
    ) -> int:
        """Forecast the next days from a registered model."""
        from tickerflow.flows.batch_forecast import batch_forecast
        from tickerflow_model.redaction import hold

        # `--out` is relative to the user's folder; an fsspec URI (s3://...) is written through fsspec.
        target = out if "://" in out else str(Path(out).expanduser().resolve())
        kwargs = {"data": hold(data), "out": target}
        if model_uri:
            kwargs["model_uri"] = model_uri
        with prefect_api():
            result = batch_forecast(**kwargs)
        print(f"wrote {result['rows']} forecasts from {result['model_uri']} (version {result['model_version']}) to {result['out']}")
        for skipped, why in result.get("skipped", {}).items():
            print(f"skipped {skipped}: {why}")
        if json_summary:
            print(json.dumps(result, default=str))
        return 0

    app.command("serve")(ops_cli.serve)
    app.command("ui")(ops_cli.ui)
    app.command("models")(registry_cli.models)
    app.command("promote")(registry_cli.promote)
    app.command("rollback")(registry_cli.rollback)

    @app.command()
    def replay(
        data: Annotated[str, typer.Option(help="prices covering the range (and the history before it)")],
        start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
        end: Annotated[str, typer.Option(help="last day, YYYY-MM-DD")],
        retrain_every: Annotated[int, typer.Option(help="train every N trading days (0: only when there is no champion)")
                                 ] = inspect.signature(replay_flow.fn).parameters["retrain_every"].default,
        config: ConfigFile = None, ticker: Ticker = None, epochs: Epochs = None, seed: Seed = None,
        json_summary: Json = False,
    ) -> int:
        """Run the daily forecast flow as of each trading day of a date range."""
        import pandas as pd

        from tickerflow_model.errors import ConfigError

        for name, value in (("start", start), ("end", end)):
            try:
                pd.Timestamp(value)
            except ValueError:
                raise ConfigError(f"--{name} must be a date (YYYY-MM-DD), got {value!r}") from None
        if retrain_every < 0:
            raise ConfigError(f"--retrain-every must be >= 0 (0: never), got {retrain_every}")
        pipeline_config = load_config(config, data=data, ticker=ticker, epochs=epochs, seed=seed)
        with prefect_api():
            result = replay_flow(data=pipeline_config.ingest.source, start=start, end=end, retrain_every=retrain_every,
                                 config=pipeline_config)
        for day in result["days"]:
            print(f"{day['day']}  champion v{day['model_version']}  scored {day['scored_forecasts']:>6}  "
                  f"days past a threshold {day['degraded_days']}")
        print(f"\n{len(result['days'])} days replayed, {len(result['retrains'])} training run(s), "
              f"{len(result['degraded_events'])} degradation event(s)")
        for event in result["degraded_events"]:
            print(f"degraded on {event['day']}: v{event['model_version']}: {event['reasons']}")
        if json_summary:
            print(json.dumps(result, default=str))
        return 0

    @app.command()
    def gc(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be removed and what is kept, remove nothing")] = False,
        config: Annotated[str | None, typer.Option("--config", help="JSON or YAML file with `retention` (and `forecast_store`) sections")] = None,
    ) -> int:
        """Remove what no model version, recent run or running flow needs from the home."""
        from tickerflow.tasks.forecast_store import ForecastStoreConfig
        from tickerflow.tasks.retention import RetentionConfig, run_gc
        from tickerflow_model.errors import ConfigError

        raw = _read_config_file(config) if config else {}
        try:
            retention, store = RetentionConfig(**raw.get("retention", {})), ForecastStoreConfig(**raw.get("forecast_store", {}))
        except (TypeError, ValueError) as exc:  # an unknown key, or a value out of bounds
            raise ConfigError(f"{config}: {error_message(exc)}") from None
        plan = run_gc(retention, store, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        for removal in plan.removals:
            print(f"{verb} {removal.path} ({removal.bytes / 1e6:.2f} MB): {removal.reason}")
        if dry_run:
            for path, why in plan.kept.items():
                print(f"keep {path}: {why}")
        print(f"{verb} {len(plan.removals)} item(s), {plan.bytes / 1e6:.2f} MB; {len(plan.forecast_runs)} batch-forecast MLflow run(s)")
        return 0

    return app


# A long-running command keeps an expected failure's reason in its console log; the others print it last.
LONG_RUNNING = {"serve"}
VERBOSE = "--verbose"  # Prefect's and MLflow's own lines on the console too (run, forecast, replay)


def main(argv: list[str] | None = None) -> int:
    """The `tickerflow` command: returns its exit code. A user's mistake is one line on stderr, no traceback."""
    environment.apply()  # before anything imports Prefect or MLflow
    args = sys.argv[1:] if argv is None else list(argv)
    verbose = VERBOSE in args  # anywhere on the line: `tickerflow run --verbose` as well as `tickerflow --verbose run`
    args = [a for a in args if a != VERBOSE]
    command = next((a for a in args if not a.startswith("-")), "")
    prefix = f"tickerflow {command}".rstrip()
    quiet = command in FLOW_COMMANDS and not verbose
    if quiet:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # read when MLflow draws a bar
    from tickerflow.flows.console_logging import (
        is_expected,
        quiet_console,
        quiet_expected_errors_on_console,
        redact_credentials_in_logs,
    )

    # The commands that run a flow stop in order on SIGTERM, and on SIGINT unless it is ignored (a background
    # job); `serve` and `ui` are stopped by these signals as their normal end, and handle them themselves.
    in_main_thread = threading.current_thread() is threading.main_thread() and command in FLOW_COMMANDS
    previous = {}
    _received.clear()
    if in_main_thread:
        previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        if command in FLOW_COMMANDS and not {"--help", "-h"} & set(args):
            begin_prefect_api()  # its boot overlaps the imports that building the app makes
        cli = typer.main.get_command(build_app())
        redact_credentials_in_logs()
        quiet_expected_errors_on_console(with_reason=command in LONG_RUNNING)
        undo_quiet = quiet_console() if quiet else None
        try:
            code = cli.main(args=args, prog_name="tickerflow", standalone_mode=False) or 0
        finally:
            if undo_quiet:
                undo_quiet()
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
            from tickerflow_model.errors import TickerflowError, storage_failure, storage_message
            from tickerflow_model.redaction import redact_text

            storage = None if isinstance(exc, TickerflowError) else storage_failure(exc)
            reason = storage_message(storage) if storage else f"{type(exc).__name__}: {error_message(exc)}"
            print(f"{prefix}: {redact_text(reason)}", file=sys.stderr)
        code = EXIT_FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if _received:  # whatever the stop unwound through (Typer turns KeyboardInterrupt into exit code 130)
        sig = _received[0]
        print(f"{prefix}: {'interrupted' if sig == signal.SIGINT else 'stopped'} by {signal.Signals(sig).name}", file=sys.stderr)
        return 128 + sig
    return code


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []  # the stop signals this command received, first first


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
    torch, MLflow, Prefect and Great Expectations one by one: seconds of every command.
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
        for sig in (signal.SIGTERM, signal.SIGINT):
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


def error_message(exc: BaseException) -> str:
    """The reason to print; a config that does not validate is one line naming each bad field."""
    import pydantic

    if isinstance(exc, pydantic.ValidationError):
        def got(e: dict) -> str:  # the value the user gave, unless it is a whole section
            return "" if isinstance(e.get("input"), dict) or "input" not in e else f" (got {quoted(e['input'])})"

        errors = exc.errors()
        shown = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'config') or exc.title}: {e['msg'].removeprefix('Value error, ')}{got(e)}"
            for e in errors[:ERRORS_SHOWN]
        )
        return shown + (f"; and {len(errors) - ERRORS_SHOWN} more" if len(errors) > ERRORS_SHOWN else "")
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
