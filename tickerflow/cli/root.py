"""`tickerflow`: one Typer app. Train (`run`), forecast, replay and tidy the home (`gc`); run the
deployments (`serve`) and the UIs (`ui`); read and move the champion (`models`, `promote`, `rollback`).

The app is declared at import, and importing it imports neither Prefect, MLflow, torch nor pandas: a
command imports what it runs when it runs, so `tickerflow --help` is quick and `main` can apply the
environment defaults before anything reads them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from tickerflow.cli import registry, servers, settings
from tickerflow.cli.config_file import CONFIG_OPTIONS, error_message, load_config, read_config_file, shown_default
from tickerflow.cli.console import configure_console
from tickerflow.runtime import prefect_api as prefect_api_module
from tickerflow.runtime import reachability
from tickerflow.runtime.prefect_api import prefect_api
from tickerflow_model.config import (
    LOCAL_WORKERS,
    REPLAY_RETRAIN_EVERY,
    ForecastStoreConfig,
    IngestConfig,
    RegisterConfig,
    RetentionConfig,
    RunnerConfig,
    RunnerKind,
    SplitPolicy,
    field_default,
)
from tickerflow_model.errors import ConfigError
from tickerflow_model.names import CHAMPION_ALIAS, MODEL_NAME
from tickerflow_model.redaction import hold

FLOW_COMMANDS = {"run", "forecast", "replay"}  # the commands that run a flow on Prefect's API
LONG_RUNNING = {"serve"}  # keeps an expected failure's reason in its console log; the others print it last
VERBOSE = "--verbose"  # Prefect's and MLflow's own lines on the console too (run, forecast, replay)


# What each command runs, imported before its console is set up: Prefect, MLflow, torch and Great
# Expectations add their log handlers (and MLflow resets its logger) on import, and the console's filters
# go on every handler that exists when it is set up.
COMMAND_IMPORTS: dict[str, tuple[str, ...]] = {
    "run": ("tickerflow.flows.train_pipeline",),
    "forecast": ("tickerflow.flows.batch_forecast",),
    "replay": ("tickerflow.flows.replay",),
    "serve": ("tickerflow.flows.train_pipeline", "tickerflow.flows.batch_forecast"),
    "ui": ("tickerflow.tracking.store",),
    "models": ("tickerflow.tracking.registry",),
    "promote": ("tickerflow.tracking.registry",),
    "rollback": ("tickerflow.tracking.registry",),
    "gc": ("tickerflow.tasks.retention",),
    "config": (),
}

# The servers each command talks to when they are configured: (MLflow, Prefect). Probed before the command
# starts its work, so a server that is down is one line naming it, not minutes of retries and a traceback.
SERVERS_USED: dict[str, tuple[bool, bool]] = {
    "run": (True, True),
    "forecast": (True, True),
    "replay": (True, True),
    "serve": (True, True),
    "gc": (True, True),
    "models": (True, False),
    "promote": (True, False),
    "rollback": (True, False),
}


def check_config(params: dict[str, Any]) -> None:
    """Validate the PipelineConfig a command's `--config` and options make (ConfigError or pydantic's
    ValidationError, one line each), with nothing heavier imported than the config module."""
    if "config" in params:
        load_config(params["config"], **{o: params[o] for o in CONFIG_OPTIONS if o in params})
    if params.get("model"):
        RegisterConfig(model_name=params["model"])  # a name a model URI can carry


class ConsoleCommand(TyperCommand):
    """A command that imports what it runs, then sets up the console (redaction, the quiet console, one line
    per expected error), once its options are parsed: `--help` and a usage error import and set up nothing.
    The quiet console is undone when the command returns."""

    # the base names the Context of typer's private copy of click, which typer exports only as this subclass
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        check_config(ctx.params)  # a bad config or option is refused before the command's imports (seconds)
        uses_mlflow, uses_prefect = SERVERS_USED.get(self.name or "", (False, False))
        # httpx only, before the imports (tens of seconds on busy cores) of a command that cannot work anyway
        reachability.check_servers(mlflow=uses_mlflow, prefect=uses_prefect)
        if self.name in FLOW_COMMANDS:
            prefect_api_module.begin_prefect_api()  # its boot overlaps the imports the command makes
        for module in COMMAND_IMPORTS[self.name or ""]:
            importlib.import_module(module)
        # a Prefect API set in Prefect's profile rather than the environment: its settings are imported now
        reachability.check_servers(mlflow=False, prefect=False, prefect_profile=uses_prefect)
        verbose = bool((ctx.find_root().obj or {}).get("verbose"))
        undo = configure_console(
            quiet=self.name in FLOW_COMMANDS and not verbose, with_reason=self.name in LONG_RUNNING
        )
        try:
            return super().invoke(ctx)
        finally:
            undo()


app = typer.Typer(
    name="tickerflow",
    help=__doc__.split("\n\n")[0],
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a bug's traceback stays a plain one
    # click's plain help: a flag reads `--json`, where Typer's rich panels print `--json <bool>`
    rich_markup_mode=None,
)


def command(name: str | None = None):
    return app.command(name, cls=ConsoleCommand)


def sets(option: str, text: str):
    """An option that sets a PipelineConfig field: not given, the field keeps its default or --config's value."""
    # The option's own default is None (not given: --config's value or the field's default stands), so the
    # field's default goes into the help text rather than show_default, which click would put in parentheses.
    return typer.Option(
        f"--{option}",
        help=f"{text} (sets {CONFIG_OPTIONS[option]}; default: {shown_default(option)})",
        show_default=False,
    )


Data = Annotated[str | None, sets("data", "file, folder, glob or fsspec URI of prices")]
Ticker = Annotated[str | None, sets("ticker", "ticker of a single-ticker file without a ticker column")]
Epochs = Annotated[int | None, sets("epochs", "training epochs")]
Seed = Annotated[int | None, sets("seed", "random seed of the training run")]
TrainModel = Annotated[str | None, sets("model", "registered model the run competes in")]
ConfigFile = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="JSON or YAML file with a PipelineConfig: sections "
        "ingest, validate, window, train, evaluate, register, backtest",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line of stdout")]


@app.callback()
def options(
    verbose: Annotated[
        bool,
        typer.Option(
            VERBOSE,
            help="run, forecast, replay: show Prefect's and MLflow's own "
            "log lines and warnings too (given anywhere on the line)",
        ),
    ] = False,
) -> None:
    """`--verbose` is taken off the line by main(); declared here so that --help lists it."""


def _prepare_training_run() -> None:
    """What a training run does anyway on its way to its first epoch, but that does not need Prefect's
    API: import torch's compiler package (the optimizer's first use imports it: over a second), create
    the local MLflow store (the first run on a home migrates its SQLite database), import matplotlib's
    Figure (the report's charts)."""
    importlib.import_module("torch._dynamo")
    from tickerflow.tracking.store import initialise_store, tracking_uri  # (MLflow: only in a run)

    initialise_store(tracking_uri())
    importlib.import_module("matplotlib.figure")


@command()
def run(
    data: Data = None,
    config: ConfigFile = None,
    ticker: Ticker = None,
    epochs: Epochs = None,
    seed: Seed = None,
    model: TrainModel = None,
    runner: Annotated[
        RunnerKind,
        typer.Option(
            help="task runner of the per-ticker fan-out: a thread pool or Dask", rich_help_panel="Task runner"
        ),
    ] = field_default(RunnerConfig, "kind"),
    dask_address: Annotated[
        str | None,
        typer.Option(help="scheduler of a running Dask cluster, e.g. tcp://HOST:8786", rich_help_panel="Task runner"),
    ] = None,
    dask_workers: Annotated[
        int | None,
        typer.Option(
            help=f"workers of a temporary local Dask cluster (default: {LOCAL_WORKERS})",
            show_default=False,
            rich_help_panel="Task runner",
        ),
    ] = None,
    json_summary: Json = False,
) -> int:
    """Run the training pipeline once: ingest, validate, window, train, evaluate, register."""
    # what the command runs, imported when it runs: `--help` stays light (ConsoleCommand imported them already)
    from tickerflow.cli.metrics_table import format_metrics
    from tickerflow.flows.train_pipeline import train_pipeline
    from tickerflow.runtime.task_runners import build_task_runner

    task_runner = build_task_runner(RunnerConfig(kind=runner, address=dask_address, n_workers=dask_workers))
    pipeline_config = load_config(config, data=data, ticker=ticker, epochs=epochs, seed=seed, model=model)
    with prefect_api(while_starting=_prepare_training_run):
        summary = train_pipeline.with_options(task_runner=task_runner)(pipeline_config)
    print(format_metrics(summary.metrics, summary.per_ticker))
    print("\n" + "\n".join(summary.versus))
    print(
        f"skill vs naive: {summary.skill_vs_naive:+.4f}   registered {summary.model_name} "
        f"v{summary.model_version} (gru)   promoted: {summary.promoted}\n"
        f"champion: v{summary.champion_version} ({summary.champion_forecaster}): {summary.reason}\n"
        f"MLflow run: {summary.mlflow_run_url}"
    )
    if json_summary:
        print(summary.to_json())
    return 0


@command()
def forecast(
    data: Annotated[str, typer.Option(help="recent prices: file, folder, glob or fsspec URI")],
    out: Annotated[str, typer.Option(help="output Parquet file (relative to this folder) or fsspec URI")],
    model: Annotated[
        str | None,
        typer.Option(
            help="registered model whose champion forecasts",
            show_default=f"the one trained on the most of the data's tickers; {MODEL_NAME} when none is",
        ),
    ] = None,
    model_uri: Annotated[
        str | None, typer.Option(help="any model URI to forecast with instead (models:/NAME/3, runs:/...)")
    ] = None,
    splits: Annotated[
        SplitPolicy,
        typer.Option(
            help="a probable unadjusted split in data without an adjusted close: refuse, adjust or keep "
            "(as ingest.splits of the training run)"
        ),
    ] = field_default(IngestConfig, "splits"),
    json_summary: Json = False,
) -> int:
    """Forecast the next days from a registered model."""
    from tickerflow.flows import batch_forecast  # (what the command runs: `--help` stays light)
    from tickerflow.tasks.forecast import skipped_lines  # (imported with the flow)

    if model and model_uri:
        raise ConfigError("give --model or --model-uri, not both")
    if model:
        model_uri = f"models:/{model}@{CHAMPION_ALIAS}"

    # `--out` is relative to the user's folder; an fsspec URI (s3://...) is written through fsspec.
    target = out if "://" in out else str(Path(out).expanduser().resolve())
    with prefect_api():
        result = batch_forecast.batch_forecast(data=hold(data), out=target, model_uri=model_uri, splits=splits)
    written = result.written
    print(f"wrote {written.rows} forecasts from {written.model_uri} (version {written.model_version}) to {written.out}")
    for line in skipped_lines(written.skipped):
        print(line)
    if json_summary:
        print(result.to_json())
    return 0


command("serve")(servers.serve)
command("ui")(servers.ui)
command("models")(registry.models)
command("config")(settings.config)
command("promote")(registry.promote)
command("rollback")(registry.rollback)


@command()
def replay(
    data: Annotated[str, typer.Option(help="prices covering the range (and the history before it)")],
    start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="last day, YYYY-MM-DD")],
    retrain_every: Annotated[
        int, typer.Option(help="train every N trading days (0: only when there is no champion)")
    ] = REPLAY_RETRAIN_EVERY,
    config: ConfigFile = None,
    ticker: Ticker = None,
    epochs: Epochs = None,
    seed: Seed = None,
    model: TrainModel = None,
    json_summary: Json = False,
) -> int:
    """Run the daily forecast flow as of each trading day of a date range."""
    # what the command runs, imported when it runs: `--help` stays light
    import pandas as pd

    from tickerflow.flows.replay import replay as replay_flow

    for name, value in (("start", start), ("end", end)):
        try:
            pd.Timestamp(value)
        except ValueError:
            raise ConfigError(f"--{name} must be a date (YYYY-MM-DD), got {value!r}") from None
    if retrain_every < 0:
        raise ConfigError(f"--retrain-every must be >= 0 (0: never), got {retrain_every}")
    pipeline_config = load_config(config, data=data, ticker=ticker, epochs=epochs, seed=seed, model=model)
    with prefect_api():
        result = replay_flow(
            data=pipeline_config.ingest.source,
            start=start,
            end=end,
            retrain_every=retrain_every,
            config=pipeline_config,
        )
    for day in result.days:
        print(
            f"{day.day}  champion v{day.model_version}  scored {day.scored_forecasts:>6}  "
            f"days past a threshold {day.degraded_days}"
        )
    print(
        f"\n{len(result.days)} days replayed, {len(result.retrains)} training run(s), "
        f"{len(result.degraded_events)} degradation event(s)"
    )
    for event in result.degraded_events:
        print(f"degraded on {event.day}: v{event.model_version}: {event.reasons}")
    if json_summary:
        print(result.to_json())
    return 0


@command()
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would be removed and what is kept, remove nothing")
    ] = False,
    config: Annotated[
        str | None, typer.Option("--config", help="JSON or YAML file with `retention` (and `forecast_store`) sections")
    ] = None,
) -> int:
    """Remove what no model version, recent run or running flow needs from the home."""
    from tickerflow.tasks.retention import run_gc  # (what the command runs: `--help` stays light)

    raw = read_config_file(config) if config else {}
    try:
        retention, store = (
            RetentionConfig(**raw.get("retention", {})),
            ForecastStoreConfig(**raw.get("forecast_store", {})),
        )
    except (TypeError, ValueError) as exc:  # an unknown key, or a value out of bounds
        raise ConfigError(f"{config}: {error_message(exc)}") from None
    plan = run_gc(retention, store, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for removal in plan.removals:
        print(f"{verb} {removal.path} ({removal.bytes / 1e6:.2f} MB): {removal.reason}")
    if dry_run:
        for path, why in plan.kept.items():
            print(f"keep {path}: {why}")
    print(
        f"{verb} {len(plan.removals)} item(s), {plan.bytes / 1e6:.2f} MB; {len(plan.forecast_runs)} batch-forecast MLflow run(s)"
    )
    return 0
