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
from pathlib import Path

import fsspec
import pandas as pd
from prefect import runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tickerflow.reporting.charts import figure
from tickerflow.tasks.forecast import ForecastBatch, WrittenForecasts
from tickerflow.tasks.monitor import LiveScores, version_key
from tickerflow.tracking.runs import TrackedRun
from tickerflow.tracking.store import FORECAST_EXPERIMENT, MONITOR_EXPERIMENT, PREFECT_FLOW_RUN_TAG
from tickerflow_model.live import LIVE_METRICS, NOMINAL_COVERAGE
from tickerflow_model.redaction import redact_uri


def monitoring_run(name: str, version: str) -> TrackedRun:
    """The monitoring run of one model version (created on first use)."""
    tags = {"model_name": name, "model_version": version}
    return TrackedRun.ledger(MONITOR_EXPERIMENT, tags, name=f"live {name} v{version}")


def step_of(day: pd.Timestamp) -> int:
    """The MLflow step of a day: YYYYMMDD as an integer (sortable, readable on the axis)."""
    return int(pd.Timestamp(day).strftime("%Y%m%d"))


def log_version_metrics(run: TrackedRun, metrics: pd.DataFrame) -> int:
    """Log the days not logged yet (tag `live.last_step`); returns how many metric values were logged."""
    last = int(run.tags.get("live.last_step", "0"))
    new = metrics[metrics["day"].map(step_of) > last]
    values = [
        (f"{name}_{int(row['window'])}d", float(row[name]), step_of(row["day"]))
        for _, row in new.iterrows()
        for name in LIVE_METRICS
        if name in row and row[name] is not None and not math.isnan(float(row[name]))
    ]
    run.log_steps(values)
    if len(new):
        run.set_tags({"live.last_step": str(step_of(new["day"].max()))})
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
    runs = {}
    for (name, version), g in scores.metrics.groupby(["model_name", "model_version"], sort=True):
        ledger = monitoring_run(name, version)
        log_version_metrics(ledger, g)
        runs[version_key(name, version)] = ledger.run_id
    mine = (
        scores.metrics[
            (scores.metrics["model_name"] == champion_name) & (scores.metrics["model_version"] == champion_version)
        ]
        if len(scores.metrics)
        else scores.metrics
    )
    link = ""
    if len(mine):
        ledger = TrackedRun(runs[version_key(champion_name, champion_version)])
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_live(
                mine, Path(tmp) / "live_performance.png", f"{champion_name} v{champion_version}: live performance"
            )
            ledger.log_file(png, "live")
        link = f"\n\nPlot of live skill and coverage over time: `live/live_performance.png` in MLflow run [{ledger.run_id}]({ledger.url})."
    create_markdown_artifact(
        key="live-performance",
        markdown=live_markdown(mine, champion_name, champion_version) + link,
        description=f"Live metrics of {champion_name} v{champion_version} on the closes that followed its forecasts",
    )
    return runs


@task(name="publish-forecasts")
def publish_forecasts(
    batch: ForecastBatch, written: WrittenForecasts, source: str, experiment: str = FORECAST_EXPERIMENT
) -> TrackedRun:
    """One MLflow run per batch (in `experiment`: the forecasts', or a replay's own) holding the Parquet; a
    Prefect table artifact. Returns the run."""
    run = TrackedRun.start(
        experiment,
        tags={
            PREFECT_FLOW_RUN_TAG: str(runtime.flow_run.id or ""),
            "model_uri": written.model_uri,
            "model_version": written.model_version,
            "data.source": redact_uri(source),
            "skipped_tickers": ", ".join(f"{t} ({why})" for t, why in batch.skipped.items()) or "none",
        },
    )
    run.log_metrics(
        {
            "forecast_rows": len(batch.frame),
            "tickers_forecast": len(written.tickers),
            "tickers_skipped": len(batch.skipped),
        }
    )
    if "://" in written.out:  # a remote output: the run keeps a copy of what was written
        with tempfile.TemporaryDirectory() as tmp, fsspec.open(written.out, "rb") as src:
            local = Path(tmp) / Path(written.out.split("?", 1)[0]).name
            local.write_bytes(src.read())
            run.log_file(local, "forecasts")
    else:
        run.log_file(written.out, "forecasts")
    run.finish()
    table = batch.frame.assign(
        date=batch.frame["date"].dt.strftime("%Y-%m-%d"), forecast_close=batch.frame["forecast_close"].round(4)
    )
    create_table_artifact(
        key="batch-forecast",
        table=table.to_dict(orient="records"),
        description=(
            f"Forecasts of {written.model_uri} (version {written.model_version}); MLflow run {run.url}; "
            f"skipped: {', '.join(batch.skipped) or 'none'}"
        ),
    )
    return run
