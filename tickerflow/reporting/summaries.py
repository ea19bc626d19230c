"""What each flow returns: a frozen record the CLI prints, `--json` dumps and `replay` reads by attribute."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from tickerflow.tasks.forecast import WrittenForecasts
from tickerflow.tasks.monitor import Degradation
from tickerflow.tasks.retention import GcSummary


class Summary:
    """`as_dict` and `to_json`: the record as plain data (the `--json` line)."""

    def as_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), default=str)


@dataclass(frozen=True)
class TrainingSummary(Summary):
    """One training run: the MLflow run, the version it registered, the gate's decision and the test scores."""

    mlflow_run_id: str
    mlflow_run_url: str
    model_name: str
    model_version: str  # the GRU's version registered by this run
    model_uri: str
    promoted: bool  # whether that version became champion
    reason: str  # the gate's reason
    skill_vs_naive: float
    test_forecasts: int
    metrics: dict[str, dict[str, float]]  # forecaster -> metric -> value, on the whole test split
    per_ticker: dict[str, dict[str, dict[str, float]]]
    per_horizon: dict[str, dict[str, dict[str, float]]]
    versus: tuple[str, ...]  # the GRU against garch and ewma, one line each
    champion_version: str | None
    champion_forecaster: str | None
    compared_champion_version: str | None  # the champion this run was scored against
    champion_not_compared: str | None  # why it was not, when it was not
    backtest: dict[str, Any] | None = None  # {"metrics", "folds"} of the walk-forward backtest, when it ran


@dataclass(frozen=True)
class ForecastSummary(Summary):
    """One daily forecast: what was written where, live scores of earlier forecasts, and the tidy-up."""

    written: WrittenForecasts
    mlflow_run_id: str
    scored_forecasts: int
    degradation: Degradation
    gc: GcSummary | None = None

    # the fields a reader of the forecast asks for first
    @property
    def rows(self) -> int:
        return self.written.rows

    @property
    def out(self) -> str:
        return self.written.out

    @property
    def model_version(self) -> str:
        return self.written.model_version


@dataclass(frozen=True)
class ReplayedDay:
    day: str  # YYYY-MM-DD
    model_version: str  # the champion that forecast that day
    scored_forecasts: int
    degraded_days: int  # scored days in a row past a threshold


@dataclass(frozen=True)
class Retraining:
    day: str
    version: str
    promoted: bool


@dataclass(frozen=True)
class DegradationEvent:
    day: str
    event_id: str
    model_version: str
    reasons: str
    latest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplaySummary(Summary):
    days: tuple[ReplayedDay, ...]
    retrains: tuple[Retraining, ...]
    degraded_events: tuple[DegradationEvent, ...]
