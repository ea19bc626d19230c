"""Live monitoring: score stored forecasts against the closes that arrived, log it, and say when it degrades.

MLflow: one experiment (`tickerflow-monitoring`), one run per model version (tags `model_name`,
`model_version`). Metrics are named `<metric>_<window>d` (`live_rmse_20d`, `live_skill_60d`,
`live_coverage_80_20d`, ...), logged with step = the scored day as the integer YYYYMMDD, each day once.

Degradation: a rolling metric of the champion over `rule_window` days crossing its threshold on
`days_in_row` scored days in a row emits the Prefect event `tickerflow.champion.degraded` (once per
streak), with the figures in its payload. The thresholds come from the champion's own test figures:
live skill below its test skill minus `skill_margin`, live RMSE above `rmse_ratio` times its test RMSE,
or live interval coverage further than `coverage_tolerance` from nominal.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Self

import mlflow
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from pydantic import Field, model_validator

from tickerflow.tasks.forecast_store import ForecastStoreConfig, read_store
from tickerflow.tasks.tracking import experiment_id, run_url, use_tracking
from tickerflow_model.config import Config
from tickerflow_model.live import (
    LIVE_METRICS,
    NOMINAL_COVERAGE,
    Thresholds,
    rolling_live_metrics,
    rule_state,
    score_stored,
    thresholds_from_test,
)

MONITOR_EXPERIMENT = "tickerflow-monitoring"
DEGRADED_EVENT = "tickerflow.champion.degraded"


class MonitorConfig(Config):
    """Live scoring and the degradation rule. A threshold set to None is not checked."""

    windows: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (20, 60), min_length=1, description="rolling windows, in scored days"
    )
    min_days: int = Field(5, ge=1, description="a window reports once it holds this many scored days (<= the smallest window)")
    rule_window: int = Field(20, ge=1, description="the window the degradation rule watches (one of `windows`)")
    days_in_row: int = Field(3, ge=1, description="scored days in a row past a threshold before the event fires")
    skill_margin: Annotated[float, Field(ge=0, lt=2)] | None = Field(
        0.05, description="degraded: live skill below the champion's test skill minus this margin"
    )
    rmse_ratio: Annotated[float, Field(gt=1)] | None = Field(
        1.5, description="degraded: live RMSE above this ratio times the champion's test RMSE"
    )
    coverage_tolerance: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        0.10, description="degraded: live interval coverage further than this from nominal"
    )
    lookback_days: int = Field(400, ge=1, description="only forecasts made in the last N calendar days are scored (>= the largest window)")

    @model_validator(mode="after")
    def _fits_the_windows(self) -> Self:
        if self.min_days > min(self.windows):
            raise ValueError(f"min_days must be at most the smallest of windows {self.windows}, got {self.min_days}")
        if self.rule_window not in self.windows:
            raise ValueError(f"rule_window {self.rule_window} must be one of windows {self.windows}")
        if self.lookback_days < max(self.windows):
            raise ValueError(f"lookback_days must be >= the largest of windows {self.windows}, got {self.lookback_days}")
        return self


@dataclass
class LiveScores:
    metrics: pd.DataFrame  # rolling_live_metrics: model_name, model_version, day, window, live_*
    scored_forecasts: int
    as_of: pd.Timestamp | None


@dataclass
class Degradation:
    model_name: str
    version: str
    streak: int
    degraded: bool
    thresholds: dict = field(default_factory=dict)
    latest: dict = field(default_factory=dict)
    reasons: str = ""
    event_id: str | None = None  # set when this run emitted the event


def price_column_of(model, prices: pd.DataFrame) -> str:
    """The price the model forecasts (`close` or `adj_close`), as its bundle says; `close` otherwise."""
    try:
        column = model.pyfunc.unwrap_python_model().forecaster.spec.price_column
    except AttributeError:  # a model without the GRU bundle (a baseline pyfunc)
        column = "close"
    return column if column in prices.columns else "close"


def model_identity(model) -> tuple[str, str]:
    """(registered model name, forecaster) of a loaded model; ('', 'gru') for one outside the registry.

    The forecaster is the version's `forecaster` tag (gru, or a distribution baseline) when it has one.
    """
    if not model.uri.startswith("models:/") or not model.version:
        return "", "gru"
    name = model.uri[len("models:/"):].partition("@")[0].split("/")[0]
    tags = use_tracking().get_model_version(name, model.version).tags
    return name, tags.get("forecaster", "gru")


def step_of(day: pd.Timestamp) -> int:
    """The MLflow step of a day: YYYYMMDD as an integer (sortable, readable on the axis)."""
    return int(pd.Timestamp(day).strftime("%Y%m%d"))


def live_scores(prices: pd.DataFrame, store: ForecastStoreConfig, config: MonitorConfig) -> LiveScores:
    """Plain function behind the task: every stored forecast whose target day has a close in `prices`."""
    as_of = pd.to_datetime(prices["date"]).max() if len(prices) else None
    since = None if as_of is None else as_of - pd.Timedelta(days=config.lookback_days)
    stored = read_store(store, since)
    if stored.empty or as_of is None:
        empty = rolling_live_metrics(stored.iloc[:0]).assign(model_name=pd.Series(dtype=str))
        return LiveScores(empty, 0, as_of)
    metrics, scored = score_stored(stored, prices, as_of, config.windows, config.min_days)
    return LiveScores(metrics, scored, as_of)


@task(name="score-live-forecasts")
def score_live(prices: pd.DataFrame, store: ForecastStoreConfig, config: MonitorConfig) -> LiveScores:
    scores = live_scores(prices, store, config)
    get_run_logger().info(
        "scored %d stored forecasts against realized closes up to %s", scores.scored_forecasts,
        "n/a" if scores.as_of is None else scores.as_of.date(),
    )
    return scores


def monitoring_run(client: mlflow.MlflowClient, name: str, version: str) -> str:
    """The monitoring run of one model version (created on first use)."""
    exp = experiment_id(client, MONITOR_EXPERIMENT)
    found = client.search_runs(
        [exp], filter_string=f"tags.model_name = '{name}' and tags.model_version = '{version}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(exp, run_name=f"live {name} v{version}", tags={"model_name": name, "model_version": version})
    client.set_terminated(run.info.run_id, "FINISHED")  # a ledger, not a process: metrics are added day by day
    return run.info.run_id


def log_version_metrics(client: mlflow.MlflowClient, run_id: str, metrics: pd.DataFrame) -> int:
    """Log the days not logged yet (tag `live.last_step`); returns how many metric values were logged."""
    last = int(client.get_run(run_id).data.tags.get("live.last_step", "0"))
    new = metrics[metrics["day"].map(step_of) > last]
    now = int(time.time() * 1000)
    values = [
        mlflow.entities.Metric(f"{name}_{int(row['window'])}d", float(row[name]), now, step_of(row["day"]))
        for _, row in new.iterrows() for name in LIVE_METRICS
        if name in row and row[name] is not None and not math.isnan(float(row[name]))
    ]
    for start in range(0, len(values), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=values[start : start + 1000])
    if len(new):
        client.set_tag(run_id, "live.last_step", str(step_of(new["day"].max())))
    return len(values)


def plot_live(metrics: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_cov = "live_coverage_80" in metrics.columns and metrics["live_coverage_80"].notna().any()
    fig, axes = plt.subplots(2 if has_cov else 1, 1, figsize=(9, 5 if has_cov else 3), sharex=True, squeeze=False)
    for window, g in metrics.groupby("window"):
        axes[0, 0].plot(g["day"], g["live_skill"], label=f"live skill, {window} days")
        if has_cov:
            for name, nominal in NOMINAL_COVERAGE.items():
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
    plt.close(fig)
    return path


@task(name="log-live-metrics")
def log_live_metrics(scores: LiveScores, champion_name: str, champion_version: str) -> dict[str, str]:
    """Per model version: its monitoring run gets the new days; the champion's plot and a keyed artifact."""
    client = use_tracking()
    runs = {}
    for (name, version), g in scores.metrics.groupby(["model_name", "model_version"], sort=True):
        run_id = monitoring_run(client, name, version)
        log_version_metrics(client, run_id, g)
        runs[f"{name}/v{version}"] = run_id
    mine = scores.metrics[
        (scores.metrics["model_name"] == champion_name) & (scores.metrics["model_version"] == champion_version)
    ] if len(scores.metrics) else scores.metrics
    link = ""
    if len(mine):
        run_id = runs[f"{champion_name}/v{champion_version}"]
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_live(mine, Path(tmp) / "live_performance.png", f"{champion_name} v{champion_version}: live performance")
            client.log_artifact(run_id, str(png), "live")
        link = f"\n\nPlot of live skill and coverage over time: `live/live_performance.png` in MLflow run [{run_id}]({run_url(run_id)})."
    create_markdown_artifact(
        key="live-performance", markdown=live_markdown(mine, champion_name, champion_version) + link,
        description=f"Live metrics of {champion_name} v{champion_version} on the closes that followed its forecasts",
    )
    return runs


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


def champion_thresholds(client: mlflow.MlflowClient, name: str, version: str, config: MonitorConfig) -> Thresholds:
    """The rule's thresholds from the champion's own test figures (version tags); a missing figure: rule off."""
    tags = client.get_model_version(name, version).tags

    def tag(key: str) -> float | None:
        try:
            return float(tags[key])
        except (KeyError, ValueError):
            return None

    # `test_rmse` is the version's own (a baseline champion's too); older versions only have the GRU's
    skill, rmse = tag("skill_vs_naive"), tag("test_rmse") or tag("test_model_rmse")
    return thresholds_from_test(skill, rmse, config.skill_margin, config.rmse_ratio, config.coverage_tolerance)


def emit_degraded(d: Degradation, as_of: pd.Timestamp, config: MonitorConfig) -> str | None:
    from prefect.events import emit_event

    event = emit_event(
        event=DEGRADED_EVENT,
        resource={"prefect.resource.id": f"tickerflow.model.{d.model_name}", "prefect.resource.name": d.model_name,
                  "tickerflow.model-version": d.version},
        payload={
            "model_name": d.model_name, "model_version": d.version, "as_of": f"{as_of:%Y-%m-%d}",
            "window_days": config.rule_window, "days_in_row": d.streak, "required_days_in_row": config.days_in_row,
            "latest": d.latest, "thresholds": d.thresholds, "reasons": d.reasons,
        },
    )
    return None if event is None else str(event.id)


@task(name="check-degradation")
def check_degradation(scores: LiveScores, name: str, version: str, config: MonitorConfig) -> Degradation:
    """Emit `tickerflow.champion.degraded` when the champion's rule window breaches for N days in a row."""
    logger = get_run_logger()
    if not name or not version:
        logger.info("the model is not a registered version: no degradation rule to check")
        return Degradation(name, version, 0, False)
    client = use_tracking()
    m = scores.metrics
    mine = m[(m["model_name"] == name) & (m["model_version"] == version) & (m["window"] == config.rule_window)] if len(m) else m
    thresholds = champion_thresholds(client, name, version, config)
    result = Degradation(name, version, 0, False, thresholds=thresholds.__dict__)
    if mine.empty:
        logger.info("no live %d-day window for %s v%s yet", config.rule_window, name, version)
        return result
    state = rule_state(mine, thresholds)
    result.streak, result.latest, result.reasons = state.streak, state.latest, state.reasons
    result.degraded = result.streak >= config.days_in_row
    if not result.degraded:
        logger.info("champion %s v%s live: %s (%d day(s) past a threshold)", name, version, result.latest, result.streak)
        return result
    # once per streak: the streak's first day is remembered on the monitoring run
    run_id = monitoring_run(client, name, version)
    streak_start = f"{state.streak_start:%Y-%m-%d}"
    if client.get_run(run_id).data.tags.get("degraded.streak_start") == streak_start:
        logger.warning("champion %s v%s still degraded (%s); event already emitted for this streak", name, version, result.reasons)
        return result
    result.event_id = emit_degraded(result, scores.as_of, config)
    client.set_tag(run_id, "degraded.streak_start", streak_start)
    client.set_tag(run_id, "degraded.event_id", result.event_id or "")
    logger.warning("champion %s v%s degraded for %d days (%s): emitted %s", name, version, result.streak, result.reasons, DEGRADED_EVENT)
    return result
