"""Live monitoring: score stored forecasts against the closes that arrived, and say when the champion degrades.

The scores are logged by the daily flow's reporting (`log_live_metrics` in `tickerflow.reporting`):
one monitoring run per model version in the `tickerflow-monitoring` experiment, whose ids it hands back
(`version_key` -> run id); the degradation check keeps its once-per-streak mark on that run.

Degradation: a rolling metric of the champion over `rule_window` days crossing its threshold on
`days_in_row` scored days in a row emits the Prefect event `tickerflow.champion.degraded` (once per
streak), with the figures in its payload. The thresholds come from the champion's own test figures:
live skill below its test skill minus `skill_margin`, live RMSE above `rmse_ratio` times its test RMSE,
or live interval coverage further than `coverage_tolerance` from nominal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd
from prefect import task
from prefect.events import emit_event

from tickerflow.run_log import run_logger
from tickerflow.tasks.forecast_store import read_store
from tickerflow.tracking.models import version_tags
from tickerflow.tracking.registry import test_score
from tickerflow.tracking.runs import TrackedRun
from tickerflow_model.config import ForecastStoreConfig, MonitorConfig
from tickerflow_model.live import (
    Thresholds,
    realized_rows,
    rolling_live_metrics,
    rule_state,
    score_rows,
    thresholds_from_test,
)
from tickerflow_model.words import counted

DEGRADED_EVENT = "tickerflow.champion.degraded"


@dataclass
class LiveScores:
    metrics: pd.DataFrame  # rolling_live_metrics: model_name, model_version, day, window, live_*
    scored_forecasts: int
    as_of: pd.Timestamp | None
    rows: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # live.realized_rows: what was scored


@dataclass(frozen=True)
class Degradation:
    model_name: str
    version: str
    streak: int
    degraded: bool
    thresholds: dict = field(default_factory=dict)
    latest: dict = field(default_factory=dict)
    reasons: str = ""
    event_id: str | None = None  # set when this run emitted the event


def model_identity(model) -> tuple[str, str]:
    """(registered model name, forecaster) of a loaded model; ('', 'gru') for one outside the registry.

    The forecaster is the version's `forecaster` tag (gru, or a distribution baseline) when it has one.
    """
    if not model.name:
        return "", "gru"
    return model.name, version_tags(model.name, model.version).get("forecaster", "gru")


def version_key(name: str, version: str) -> str:
    """How a model version is named in the monitoring runs `log_live_metrics` returns: `NAME/vN`."""
    return f"{name}/v{version}"


def live_scores(prices: pd.DataFrame, store: ForecastStoreConfig, config: MonitorConfig) -> LiveScores:
    """Plain function behind the task: every stored forecast whose target day has a close in `prices`."""
    as_of = pd.to_datetime(prices["date"]).max() if len(prices) else None
    since = None if as_of is None else as_of - pd.Timedelta(days=config.lookback_days)
    stored = read_store(store, since)
    if stored.empty or as_of is None:
        empty = rolling_live_metrics(stored.iloc[:0]).assign(model_name=pd.Series(dtype=str))
        return LiveScores(empty, 0, as_of)
    rows = realized_rows(stored, prices, as_of)
    return LiveScores(score_rows(rows, config.windows, config.min_days), len(rows), as_of, rows)


@task(name="score-live-forecasts")
def score_live(prices: pd.DataFrame, store: ForecastStoreConfig, config: MonitorConfig) -> LiveScores:
    scores = live_scores(prices, store, config)
    run_logger().info(
        "scored %d stored forecasts against realized closes up to %s",
        scores.scored_forecasts,
        "n/a" if scores.as_of is None else scores.as_of.date(),
    )
    return scores


def champion_thresholds(name: str, version: str, config: MonitorConfig) -> Thresholds:
    """The rule's thresholds from the champion's own test figures (version tags); a missing figure: rule off."""
    tags = version_tags(name, version)

    def tag(key: str) -> float | None:
        try:
            return float(test_score(tags, key))  # type: ignore[arg-type]  # None: caught below
        except (TypeError, ValueError):
            return None

    # `test_rmse` is the version's own (a baseline champion's too); older versions only have the GRU's
    skill, rmse = tag("skill_vs_naive"), tag("test_rmse") or tag("test_model_rmse")
    return thresholds_from_test(skill, rmse, config.skill_margin, config.rmse_ratio, config.coverage_tolerance)


def emit_degraded(d: Degradation, as_of: pd.Timestamp, config: MonitorConfig) -> str | None:
    event = emit_event(
        event=DEGRADED_EVENT,
        resource={
            "prefect.resource.id": f"tickerflow.model.{d.model_name}",
            "prefect.resource.name": d.model_name,
            "tickerflow.model-version": d.version,
        },
        payload={
            "model_name": d.model_name,
            "model_version": d.version,
            "as_of": f"{as_of:%Y-%m-%d}",
            "window_days": config.rule_window,
            "days_in_row": d.streak,
            "required_days_in_row": config.days_in_row,
            "latest": d.latest,
            "thresholds": d.thresholds,
            "reasons": d.reasons,
        },
    )
    return None if event is None else str(event.id)


@task(name="check-degradation")
def check_degradation(
    scores: LiveScores, name: str, version: str, config: MonitorConfig, monitoring_runs: dict[str, str]
) -> Degradation:
    """Emit `tickerflow.champion.degraded` when the champion's rule window breaches for N days in a row.

    `monitoring_runs` (`version_key` -> run id) holds the run of every version with live metrics,
    the champion's among them whenever there is a window to check.
    """
    logger = run_logger()
    if not name or not version:
        logger.info("the model is not a registered version: no degradation rule to check")
        return Degradation(name, version, 0, False)
    m = scores.metrics
    mine = (
        m[(m["model_name"] == name) & (m["model_version"] == version) & (m["window"] == config.rule_window)]
        if len(m)
        else m
    )
    thresholds = champion_thresholds(name, version, config)
    result = Degradation(name, version, 0, False, thresholds=thresholds.__dict__)
    if mine.empty:
        logger.info("no live %d-day window for %s v%s yet", config.rule_window, name, version)
        return result
    state = rule_state(mine, thresholds)
    result = replace(
        result,
        streak=state.streak,
        latest=state.latest,
        reasons=state.reasons,
        degraded=state.streak >= config.days_in_row,
    )
    if not result.degraded:
        logger.info(
            "champion %s v%s live: %s (%s past a threshold)",
            name,
            version,
            result.latest,
            counted(result.streak, "day"),
        )
        return result
    # once per streak: the streak's first day is remembered on the monitoring run
    ledger = TrackedRun(monitoring_runs[version_key(name, version)])
    streak_start = f"{state.streak_start:%Y-%m-%d}"
    if ledger.tags.get("degraded.streak_start") == streak_start:
        logger.warning(
            "champion %s v%s still degraded (%s); event already emitted for this streak", name, version, result.reasons
        )
        return result
    result = replace(result, event_id=emit_degraded(result, scores.as_of, config))
    ledger.set_tags({"degraded.streak_start": streak_start, "degraded.event_id": result.event_id or ""})
    logger.warning(
        "champion %s v%s degraded for %d days (%s): emitted %s",
        name,
        version,
        result.streak,
        result.reasons,
        DEGRADED_EVENT,
    )
    return result
