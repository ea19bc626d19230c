"""Records of the daily forecast and its live monitoring.

The daily flow has no training run: each batch gets its own run in `tickerflow-forecasts` (with the
Parquet it wrote, and the `batch-forecast` table artifact), and each model version one run in
`tickerflow-monitoring`, a ledger its live metrics are added to day by day: `<metric>_<window>d`
(`live_rmse_20d`, `live_skill_60d`, `live_coverage_80_20d`, ...), step = the scored day as the integer
YYYYMMDD, each day once; the champion's plot goes there and its table into the `live-performance` artifact.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import fsspec
import mlflow
import pandas as pd
from prefect import runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tickerflow.reporting.charts import figure
from tickerflow.tasks.forecast import FORECAST_EXPERIMENT, ForecastBatch
from tickerflow.tasks.monitor import MONITOR_EXPERIMENT, LiveScores, version_key
from tickerflow.tasks.tracking import PREFECT_FLOW_RUN_TAG, end_run, experiment_id, run_url, use_tracking
from tickerflow_model.live import LIVE_METRICS, NOMINAL_COVERAGE
from tickerflow_model.redaction import redact_uri


def monitoring_run(client: mlflow.MlflowClient, name: str, version: str) -> str:
    """The monitoring run of one model version (created on first use)."""
    exp = experiment_id(client, MONITOR_EXPERIMENT)
    found = client.search_runs(
        [exp], filter_string=f"tags.model_name = '{name}' and tags.model_version = '{version}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        exp, run_name=f"live {name} v{version}", tags={"model_name": name, "model_version": version}
    )
    client.set_terminated(run.info.run_id, "FINISHED")  # a ledger, not a process: metrics are added day by day
    return run.info.run_id


def step_of(day: pd.Timestamp) -> int:
    """The MLflow step of a day: YYYYMMDD as an integer (sortable, readable on the axis)."""
    return int(pd.Timestamp(day).strftime("%Y%m%d"))


def log_version_metrics(client: mlflow.MlflowClient, run_id: str, metrics: pd.DataFrame) -> int:
    """Log the days not logged yet (tag `live.last_step`); returns how many metric values were logged."""
    last = int(client.get_run(run_id).data.tags.get("live.last_step", "0"))
    new = metrics[metrics["day"].map(step_of) > last]
    now = int(time.time() * 1000)
    values = [
        mlflow.entities.Metric(f"{name}_{int(row['window'])}d", float(row[name]), now, step_of(row["day"]))
        for _, row in new.iterrows()
        for name in LIVE_METRICS
        if name in row and row[name] is not None and not math.isnan(float(row[name]))
    ]
    for start in range(0, len(values), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=values[start : start + 1000])
    if len(new):
        client.set_tag(run_id, "live.last_step", str(step_of(new["day"].max())))
    return len(values)


def plot_live(metrics: pd.DataFrame, path: Path, title: str) -> Path:
    has_cov = "live_coverage_80" in metrics.columns and metrics["live_coverage_80"].notna().any()
    fig, axes = figure(9, 5 if has_cov else 3, nrows=2 if has_cov else 1, sharex=True, squeeze=False)
    for window, g in metrics.groupby("window"):
        axes[0, 0].plot(g["day"], g["live_skill"], label=f"live skill, {window} days")
        if has_cov:
            for name in NOMINAL_COVERAGE:
                axes[1, 0].plot(g["day"], g[name], label=f"{name.removeprefix('live_')}, {window} days")
    axes[0, 0].axhline(0, color="grey", lw=0.8)
    axes[0, 0].set_ylabel("skill vs naive")
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].set_title(title)
    if has_cov:
        for nominal in NOMINAL_COVERAGE.values():
            axes[1, 0].axhline(nominal, color="grey", lw=0.8, ls="--")
        axes[1, 0].set_ylabel("interval coverage")
        axes[1, 0].legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def live_markdown(metrics: pd.DataFrame, name: str, version: str, rows: int = 15) -> str:
    head = f"# Live performance: {name} v{version}\n\n"
    if metrics.empty:
        return head + "No stored forecast of this version has a realized close yet."
    cols = [c for c in LIVE_METRICS if c in metrics.columns and metrics[c].notna().any()]
    wide = metrics.pivot_table(index="day", columns="window", values=cols).sort_index().tail(rows)
    header = "| day | " + " | ".join(f"{c} ({w}d)" for c, w in wide.columns) + " |"
    lines = [header, "|" + "---|" * (len(wide.columns) + 1)]
    for day, row in wide.iterrows():
        lines.append(f"| {day:%Y-%m-%d} | " + " | ".join("" if pd.isna(v) else f"{v:.4f}" for v in row) + " |")
    return head + "\n".join(lines)


@task(name="log-live-metrics")
def log_live_metrics(scores: LiveScores, champion_name: str, champion_version: str) -> dict[str, str]:
    """Per model version: its monitoring run gets the new days; the champion's plot and a keyed artifact.

    Returns the monitoring run of each version with live metrics (`version_key` -> run id).
    """
    client = use_tracking()
    runs = {}
    for (name, version), g in scores.metrics.groupby(["model_name", "model_version"], sort=True):
        run_id = monitoring_run(client, name, version)
        log_version_metrics(client, run_id, g)
        runs[version_key(name, version)] = run_id
    mine = (
        scores.metrics[
            (scores.metrics["model_name"] == champion_name) & (scores.metrics["model_version"] == champion_version)
        ]
        if len(scores.metrics)
        else scores.metrics
    )
    link = ""
    if len(mine):
        run_id = runs[version_key(champion_name, champion_version)]
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_live(
                mine, Path(tmp) / "live_performance.png", f"{champion_name} v{champion_version}: live performance"
            )
            client.log_artifact(run_id, str(png), "live")
        link = f"\n\nPlot of live skill and coverage over time: `live/live_performance.png` in MLflow run [{run_id}]({run_url(run_id)})."
    create_markdown_artifact(
        key="live-performance",
        markdown=live_markdown(mine, champion_name, champion_version) + link,
        description=f"Live metrics of {champion_name} v{champion_version} on the closes that followed its forecasts",
    )
    return runs


@task(name="publish-forecasts")
def publish_forecasts(batch: ForecastBatch, result: dict, source: str) -> dict:
    """One MLflow run per batch (in its own experiment) holding the Parquet; a Prefect table artifact.

    Returns `result` (what `write_forecasts` wrote) with the run's id as `mlflow_run_id`.
    """
    client = use_tracking()
    run = client.create_run(
        experiment_id(client, FORECAST_EXPERIMENT),
        tags={
            PREFECT_FLOW_RUN_TAG: str(runtime.flow_run.id or ""),
            "model_uri": result["model_uri"],
            "model_version": result["model_version"],
            "data.source": redact_uri(source),
            "skipped_tickers": ", ".join(f"{t} ({why})" for t, why in batch.skipped.items())[:5000] or "none",
        },
    )
    run_id = run.info.run_id
    client.log_metric(run_id, "forecast_rows", len(batch.frame))
    client.log_metric(run_id, "tickers_forecast", len(result["tickers"]))
    client.log_metric(run_id, "tickers_skipped", len(batch.skipped))
    if "://" in result["out"]:  # a remote output: the run keeps a copy of what was written
        with tempfile.TemporaryDirectory() as tmp, fsspec.open(result["out"], "rb") as src:
            local = Path(tmp) / Path(result["out"].split("?", 1)[0]).name
            local.write_bytes(src.read())
            client.log_artifact(run_id, str(local), "forecasts")
    else:
        client.log_artifact(run_id, result["out"], "forecasts")
    end_run(run_id, failed=False)
    table = batch.frame.assign(
        date=batch.frame["date"].dt.strftime("%Y-%m-%d"), forecast_close=batch.frame["forecast_close"].round(4)
    )
    create_table_artifact(
        key="batch-forecast",
        table=table.to_dict(orient="records"),
        description=(
            f"Forecasts of {result['model_uri']} (version {result['model_version']}); MLflow run {run_url(run_id)}; "
            f"skipped: {', '.join(batch.skipped) or 'none'}"
        ),
    )
    return {**result, "mlflow_run_id": run_id}
