"""`tickerflow` command line: run the pipeline, forecast from the registry."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "data" / "sample" / "stocks_daily_2000_2013.csv.gz"
EXIT_FAILED = 1


def _quiet_telemetry() -> None:
    # Both try the network on start-up; a pipeline on an air-gapped box must not.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def _read_config_file(path: str) -> dict:
    """A JSON or YAML mapping; a missing file or bad syntax is a ConfigError naming the file."""
    from tickerflow_model.errors import ConfigError

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    import yaml

    is_yaml = path.endswith((".yaml", ".yml"))
    try:
        raw = (yaml.safe_load(text) or {}) if is_yaml else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {'YAML' if is_yaml else 'JSON'}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of stage -> settings, got {type(raw).__name__}")
    return raw


def start_prefect_api() -> None:
    """Without PREFECT_API_URL, start Prefect's temporary server now, under a lock on PREFECT_HOME.

    Its first start migrates `$PREFECT_HOME/prefect.db`; two processes migrating one new database at
    once fail in alembic ("Online migration expected to match one row"). Started here, one at a time,
    the flows of this process then use the same server.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from filelock import FileLock
    from prefect.server.api.server import SubprocessASGIServer

    home = Path(PREFECT_HOME.value()).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home / ".tickerflow-server-start.lock"), timeout=600):
        SubprocessASGIServer().start()


def load_config(path: str | None, data: str | None, epochs: int | None, seed: int | None):
    from tickerflow.flows.train_pipeline import PipelineConfig

    raw: dict = {}
    if path:
        raw = _read_config_file(path)
    raw.setdefault("ingest", {})
    raw["ingest"].setdefault("source", str(SAMPLE_DATA))
    if data:
        raw["ingest"]["source"] = data
    from tickerflow.tasks.redaction import hold

    # Credentials in the URI stay in this process: the flow's parameter (stored by Prefect, logged to
    # MLflow) is the redacted form, and ingest asks for the full one back.
    raw["ingest"]["source"] = hold(str(raw["ingest"]["source"]))
    if epochs is not None:
        raw.setdefault("train", {})["epochs"] = epochs
    if seed is not None:
        raw.setdefault("train", {})["seed"] = seed
    return PipelineConfig.model_validate(raw)


POINT_COLUMNS = ["rmse", "mae", "mape", "smape", "mase", "directional_accuracy", "skill"]
DISTRIBUTION_COLUMNS = ["pinball", "coverage_80", "coverage_90", "width_80", "width_90", "winkler_80", "winkler_90"]
TICKERS_SHOWN = 5  # per-ticker rows: every ticker up to 2 * this many, else the best and the worst this many


def shown_tickers(per_ticker: dict) -> list[str]:
    """Tickers ranked by the model's pinball skill vs static_quantile (or RMSE skill): all, or the best and worst."""
    def skill(by: dict) -> float:
        model, static = by.get("model", {}), by.get("static_quantile", {})
        if "pinball" in model and static.get("pinball", 0) > 0:
            return 1.0 - model["pinball"] / static["pinball"]
        return model.get("skill", 0.0)

    ranked = sorted(per_ticker, key=lambda t: -skill(per_ticker[t]))
    if len(ranked) <= 2 * TICKERS_SHOWN:
        return sorted(ranked)
    return ranked[:TICKERS_SHOWN] + ranked[-TICKERS_SHOWN:]


def format_metrics(summary: dict) -> str:
    """Overall and per-ticker metrics: point metrics in price units, distribution scores in % log return."""
    metrics = summary["metrics"]
    names = [c for c in POINT_COLUMNS + DISTRIBUTION_COLUMNS if any(c in m for m in metrics.values())]
    per_ticker = summary.get("per_ticker", {})
    tickers = shown_tickers(per_ticker)
    rows = [("all", k, v) for k, v in metrics.items()]
    rows += [(t, k, v) for t in tickers for k, v in per_ticker[t].items()]
    scope_w = max([len("scope")] + [len(r[0]) for r in rows])
    name_w = max([len("forecaster")] + [len(r[1]) for r in rows])
    width = {n: max(len(n), 9) for n in names}
    lines = [f"{'scope':<{scope_w}}  {'forecaster':<{name_w}}  " + "  ".join(f"{n:>{width[n]}}" for n in names)]
    for scope, name, m in rows:
        cells = [f"{m[n]:>{width[n]}.4f}" if n in m else f"{'-':>{width[n]}}" for n in names]
        lines.append(f"{scope:<{scope_w}}  {name:<{name_w}}  " + "  ".join(cells))
    if len(tickers) < len(per_ticker):
        lines.append(f"(the {TICKERS_SHOWN} best and {TICKERS_SHOWN} worst of {len(per_ticker)} tickers by the model's skill; "
                     "all of them: evaluation/metrics_per_ticker.csv in the MLflow run)")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.data, args.epochs, args.seed)
    if args.ticker:  # the symbol of a single-ticker file (one without a ticker column)
        config = config.model_copy(update={"ingest": config.ingest.updated(ticker=args.ticker)})
    from tickerflow.flows.runners import runner_from_args
    from tickerflow.flows.train_pipeline import train_pipeline

    start_prefect_api()
    summary = train_pipeline.with_options(task_runner=runner_from_args(args))(config)
    print(format_metrics(summary))
    print(
        f"\nskill vs naive: {summary['skill_vs_naive']:+.4f}   registered {summary['model_name']} "
        f"v{summary['model_version']} (gru)   promoted: {summary['promoted']}\n"
        f"champion: v{summary['champion_version']} ({summary['champion_forecaster']}): {summary['reason']}\n"
        f"MLflow run: {summary['mlflow_run_url']}"
    )
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from tickerflow.flows.batch_forecast import batch_forecast

    from tickerflow.tasks.redaction import hold

    # `--out` is relative to the user's folder; an fsspec URI (s3://...) is written through fsspec.
    out = args.out if "://" in args.out else str(Path(args.out).expanduser().resolve())
    kwargs = {"data": hold(args.data), "out": out}
    if args.model_uri:
        kwargs["model_uri"] = args.model_uri
    start_prefect_api()
    result = batch_forecast(**kwargs)
    print(f"wrote {result['rows']} forecasts from {result['model_uri']} (version {result['model_version']}) to {result['out']}")
    for ticker, why in result.get("skipped", {}).items():
        print(f"skipped {ticker}: {why}")
    if args.json:
        print(json.dumps(result, default=str))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import pandas as pd

    from tickerflow_model.errors import ConfigError

    from tickerflow.flows.replay import replay

    for name in ("start", "end"):
        try:
            pd.Timestamp(getattr(args, name))
        except ValueError:
            raise ConfigError(f"--{name} must be a date (YYYY-MM-DD), got {getattr(args, name)!r}") from None
    if args.retrain_every < 0:
        raise ConfigError(f"--retrain-every must be >= 0 (0: never), got {args.retrain_every}")

    config = load_config(args.config, args.data, args.epochs, args.seed)
    if args.ticker:
        config = config.model_copy(update={"ingest": config.ingest.updated(ticker=args.ticker)})
    start_prefect_api()
    result = replay(data=config.ingest.source, start=args.start, end=args.end, retrain_every=args.retrain_every, config=config)
    for day in result["days"]:
        print(f"{day['day']}  champion v{day['model_version']}  scored {day['scored_forecasts']:>6}  "
              f"days past a threshold {day['degraded_days']}")
    print(f"\n{len(result['days'])} days replayed, {len(result['retrains'])} training run(s), "
          f"{len(result['degraded_events'])} degradation event(s)")
    for event in result["degraded_events"]:
        print(f"degraded on {event['day']}: v{event['model_version']}: {event['reasons']}")
    if args.json:
        print(json.dumps(result, default=str))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from tickerflow_model.errors import ConfigError
    from tickerflow.tasks.forecast_store import ForecastStoreConfig
    from tickerflow.tasks.retention import RetentionConfig, run_gc

    raw = _read_config_file(args.config) if args.config else {}
    try:
        retention, store = RetentionConfig(**raw.get("retention", {})), ForecastStoreConfig(**raw.get("forecast_store", {}))
    except (TypeError, ValueError) as exc:  # an unknown key, or a value out of bounds
        raise ConfigError(f"{args.config}: {exc}") from None
    plan = run_gc(retention, store, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for removal in plan.removals:
        print(f"{verb} {removal.path} ({removal.bytes / 1e6:.2f} MB): {removal.reason}")
    if args.dry_run:
        for path, why in plan.kept.items():
            print(f"keep {path}: {why}")
    print(f"{verb} {len(plan.removals)} item(s), {plan.bytes / 1e6:.2f} MB; {len(plan.forecast_runs)} batch-forecast MLflow run(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tickerflow.flows.ops_cli import add_parsers
    from tickerflow.flows.runners import add_runner_arguments

    parser = argparse.ArgumentParser(prog="tickerflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the training pipeline once")
    run.add_argument("--data", help="file, folder, glob or fsspec URI of prices (default: bundled sample)")
    run.add_argument("--config", help="JSON or YAML file with a PipelineConfig")
    run.add_argument("--ticker", help="ticker of a single-ticker file without a ticker column (default: file name)")
    run.add_argument("--epochs", type=int, help="override train.epochs")
    run.add_argument("--seed", type=int, help="override train.seed")
    run.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    add_runner_arguments(run)
    run.set_defaults(func=cmd_run)

    fc = sub.add_parser("forecast", help="forecast the next days from a registered model")
    fc.add_argument("--data", required=True, help="recent prices: file, folder, glob or fsspec URI")
    fc.add_argument("--model-uri", help="default: models:/tickerflow-gru@champion")
    fc.add_argument("--out", required=True, help="output Parquet file")
    fc.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    fc.set_defaults(func=cmd_forecast)

    rp = sub.add_parser("replay", help="run the daily forecast flow as of each trading day of a date range")
    rp.add_argument("--data", required=True, help="prices covering the range (and the history before it)")
    rp.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    rp.add_argument("--end", required=True, help="last day, YYYY-MM-DD")
    rp.add_argument("--retrain-every", type=int, default=0, help="train every N trading days (default 0: only when there is no champion)")
    rp.add_argument("--config", help="JSON or YAML file with a PipelineConfig for the training runs")
    rp.add_argument("--ticker", help="ticker of a single-ticker file without a ticker column")
    rp.add_argument("--epochs", type=int, help="override train.epochs")
    rp.add_argument("--seed", type=int, help="override train.seed")
    rp.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    rp.set_defaults(func=cmd_replay)

    gc = sub.add_parser("gc", help="remove what no model version, recent run or running flow needs from the home")
    gc.add_argument("--dry-run", action="store_true", help="list what would be removed and what is kept, remove nothing")
    gc.add_argument("--config", help="JSON or YAML file with `retention` (and `forecast_store`) sections")
    gc.set_defaults(func=cmd_gc)

    add_parsers(sub)  # serve, ui
    from tickerflow.flows import registry_cli

    registry_cli.add_parsers(sub)  # promote, rollback, models
    return parser


def expected_errors() -> tuple[type[BaseException], ...]:
    """Failures a user can act on: reported in one line (or the validation summary), no traceback.

    Only the project's own error types (and pydantic's, for a config that does not validate): a bug that
    raises ValueError or OSError keeps its traceback.
    """
    from tickerflow.flows.console_logging import expected_error_types

    return expected_error_types()


# A long-running command keeps an expected failure's reason in its console log; the others print it last.
LONG_RUNNING = {"serve"}


def main(argv: list[str] | None = None) -> int:
    _quiet_telemetry()
    args = build_parser().parse_args(argv)
    from tickerflow.flows.console_logging import is_expected, quiet_expected_errors_on_console

    quiet_expected_errors_on_console(with_reason=args.command in LONG_RUNNING)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("tickerflow: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary turns errors into exit codes
        if is_expected(exc):
            print(f"tickerflow {args.command}: {type(exc).__name__}: {error_message(exc)}", file=sys.stderr)
            return EXIT_FAILED
        raise


def error_message(exc: BaseException) -> str:
    """The reason to print; a config that does not validate is one line naming each bad field."""
    import pydantic

    if isinstance(exc, pydantic.ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'config') or 'config'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
