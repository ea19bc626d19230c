"""The production loop, replayed: forecasts are stored and scored as their closes arrive, live metrics go
to MLflow, and a regime shift (volatility doubles on a known day) emits `tickerflow.champion.degraded`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from prefect.artifacts import Artifact

from tickerflow.cli import main
from tickerflow.flows.replay import replay
from tickerflow.tasks.forecast_store import read_store
from tickerflow.tracking.store import MONITOR_EXPERIMENT
from tickerflow_model.config import ForecastStoreConfig, MonitorConfig, PipelineConfig

pytestmark = pytest.mark.slow

TICKERS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
SHIFT_DAY = pd.Timestamp("2016-03-01")
DAYS = pd.bdate_range("2015-01-01", "2016-03-31")


def regime_shift_prices(seed: int = 3) -> pd.DataFrame:
    """Random walks with 1% daily volatility that becomes 2% from SHIFT_DAY on."""
    rng = np.random.default_rng(seed)
    sigma = np.where(DAYS >= SHIFT_DAY, 0.02, 0.01)
    frames = []
    for i, t in enumerate(TICKERS):
        close = 40.0 * (1 + i) * np.exp(np.cumsum(rng.normal(0, sigma)))
        frames.append(
            pd.DataFrame(
                {
                    "date": DAYS,
                    "ticker": t,
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": 1000.0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


CONFIG = PipelineConfig.model_validate(
    {
        "window": {"lookback": 10, "min_history": 100},
        "train": {"epochs": 2, "gru": {"hidden_size": 8, "num_layers": 1}, "batch_size": 256, "seed": 1},
        "register": {"min_skill": -1.0},  # the test needs a champion; the gate is not under test
    }
)
MONITOR = MonitorConfig(windows=(3, 10), min_days=2, rule_window=3, days_in_row=2, skill_margin=None, rmse_ratio=1.5)


def child_flow_runs():
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(limit=200)


def test_replay_scores_forecasts_and_a_volatility_shift_emits_the_degradation_event(
    prefect_harness, mlflow_store, tmp_path
):
    data = tmp_path / "prices.csv"
    regime_shift_prices().to_csv(data, index=False)

    result = replay(data=str(data), start="2016-02-24", end="2016-03-07", config=CONFIG, monitor=MONITOR)

    days = result.days
    assert [d.day for d in days][:2] == ["2016-02-24", "2016-02-25"] and days[-1].day == "2016-03-07"
    assert len(result.retrains) == 1 and result.retrains[0].day == "2016-02-24"  # the first champion
    # each day's child runs are named by the replayed day, not by today
    names = {r.name for r in child_flow_runs()}
    assert {f"forecast-prices-tickerflow-gru@champion-as_of-{d.day}" for d in days} <= names
    assert "train-prices-tickerflow-gru-as_of-2016-02-24" in names
    # day 1 has nothing to score; each later day scores every ticker's forecast of the day before
    assert days[0].scored_forecasts == 0 and days[1].scored_forecasts == len(TICKERS)
    assert days[-1].scored_forecasts == len(TICKERS) * (len(days) - 1)

    events = result.degraded_events
    assert len(events) == 1, days  # once per streak, not every day of it
    assert pd.Timestamp(events[0].day) > SHIFT_DAY  # not before the shift: calm days do not trip it
    # intervals fit on 1% days cover far less of 2% days: the coverage rule trips
    latest = events[0].latest
    assert "live_coverage_80" in events[0].reasons and latest["live_coverage_80"] < 0.8 - MONITOR.coverage_tolerance
    assert latest["live_rmse"] > 0
    assert all(d.degraded_days == 0 for d in days if pd.Timestamp(d.day) < SHIFT_DAY)

    stored = read_store(ForecastStoreConfig())
    assert len(stored) == len(TICKERS) * len(days)
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    champion = client.get_model_version("tickerflow-gru", days[0].model_version)  # the GRU or a baseline
    assert set(stored["forecaster"]) == {champion.tags["forecaster"]}
    assert stored.q05.notna().all() and (stored.q05 <= stored.q50).all() and (stored.q50 <= stored.q95).all()
    exp = client.get_experiment_by_name(MONITOR_EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id])
    assert (
        run.data.tags["model_version"] == str(champion.version)
        and run.data.tags["degraded.event_id"] == events[0].event_id
    )
    history = client.get_metric_history(run.info.run_id, "live_rmse_3d")
    assert [m.step for m in history] == sorted({m.step for m in history})  # each day once, step = YYYYMMDD
    assert history[-1].step == 20160307
    assert [a.path for a in client.list_artifacts(run.info.run_id, "live")] == ["live/live_performance.png"]
    artifact = Artifact.get("live-performance")
    assert artifact is not None and "live_rmse (3d)" in str(artifact.data)
    # gc ran after every day (grace 0 in replay): only what the champion needs and the latest day remain
    version = champion
    home = Path(os.environ["TICKERFLOW_HOME"])
    assert (home / "windows" / version.tags["dataset_id"]).is_dir()
    assert (home / "raw" / json.loads(version.tags["lineage"])["source_hash"]).is_dir()
    assert len(list((home / "raw").iterdir())) <= 2  # ten days were ingested
    assert main(["gc"]) == 0
    out = tmp_path / "after_gc.parquet"
    assert main(["forecast", "--data", str(data), "--out", str(out)]) == 0
    assert sorted(pd.read_parquet(out)["ticker"].unique()) == list(TICKERS)
