"""Flow-run names (which MLflow's runs share): readable, and never the same for two runs of one day."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

import tickerflow.reporting.run_labels as run_labels

WHEN = datetime(2026, 11, 29, 21, 35, 25, tzinfo=timezone.utc)
TOKYO = WHEN.astimezone(timezone(timedelta(hours=9)))  # the same moment, 2026-11-30 06:35 there


def _in_run(monkeypatch, parameters: dict, run_id: str, when: datetime = WHEN) -> None:
    flow_run = SimpleNamespace(parameters=parameters, scheduled_start_time=when, id=run_id)
    monkeypatch.setattr(run_labels, "runtime", SimpleNamespace(flow_run=flow_run))


def test_a_run_is_named_by_its_data_model_time_and_id(monkeypatch):
    run_id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    named = {"ingest": {"source": "/d/small.csv"}, "register": {"model_name": "prod"}}
    _in_run(monkeypatch, {"config": named}, run_id)
    assert run_labels.train_run_name() == "train-small-prod-2026-11-29T21:35Z-0f1e2d"
    _in_run(monkeypatch, {"config": {"ingest": {"source": "/d/small.csv"}}}, run_id)
    assert run_labels.train_run_name() == "train-small-2026-11-29T21:35Z-0f1e2d"  # the run chooses its model
    _in_run(monkeypatch, {"data": "/d/recent.csv", "model_uri": "models:/prod@champion"}, run_id, TOKYO)
    assert run_labels.forecast_run_name() == "forecast-recent-prod@champion-2026-11-29T21:35Z-0f1e2d"
    _in_run(monkeypatch, {"data": "/d/recent.csv"}, run_id, TOKYO)
    assert run_labels.forecast_run_name() == "forecast-recent-2026-11-29T21:35Z-0f1e2d"


@pytest.mark.parametrize("name", ["train_run_name", "forecast_run_name"])
def test_two_runs_of_one_day_and_even_one_minute_have_different_names(monkeypatch, name):
    parameters = {"config": {"ingest": {"source": "/d/small.csv"}}, "data": "/d/small.csv"}
    names = set()
    for run_id, when in [
        ("0f1e2d3c-0000-0000-0000-000000000000", WHEN),
        ("9a8b7c6d-0000-0000-0000-000000000000", WHEN),  # the same minute, as two commands at once
        ("0f1e2d3c-0000-0000-0000-000000000000", WHEN + timedelta(hours=2)),  # later that day
    ]:
        _in_run(monkeypatch, parameters, run_id, when)
        names.add(getattr(run_labels, name)())
    assert len(names) == 3, names
