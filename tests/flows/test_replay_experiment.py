"""A replay's batch-forecast runs live in an experiment of their own: the gc after each replayed day reads
that experiment alone, and the daily flow's forecast runs are never touched by it."""

from __future__ import annotations

import shutil

import mlflow
from tiny_models import MODEL

from tickerflow.flows.replay import replay, replay_experiment
from tickerflow.tracking.runs import TrackedRun
from tickerflow.tracking.store import FORECAST_EXPERIMENT
from tickerflow_model.config import PipelineConfig, RetentionConfig


def test_a_replay_logs_and_tidies_its_forecasts_in_its_own_experiment(prefect_harness, champion, tf_home, tmp_path):
    shutil.copy(champion.home / "mlflow.db", tf_home / "mlflow.db")  # the champion, in a store of this test's own
    uri = f"sqlite:///{tf_home / 'mlflow.db'}"
    production = []
    for _ in range(2):  # the daily flow's runs, already there
        run = TrackedRun.start(FORECAST_EXPERIMENT, name="daily batch", owned=False)
        run.finish()
        production.append(run.run_id)
    data = tmp_path / "prices.csv"
    champion.prices.to_csv(data, index=False)
    days = sorted(champion.prices["date"].unique())[-3:]
    config = PipelineConfig.model_validate({"register": {"model_name": MODEL}})

    result = replay(
        data=str(data),
        start=f"{days[0]:%Y-%m-%d}",
        end=f"{days[-1]:%Y-%m-%d}",
        retrain_every=0,  # the champion forecasts every day: no training
        config=config,
        retention=RetentionConfig(grace_minutes=0, keep_forecast_runs=1),
    )

    assert len(result.days) == 3
    client = mlflow.MlflowClient(uri, uri)
    own = client.get_experiment_by_name(replay_experiment(MODEL))
    assert own is not None and own.name != FORECAST_EXPERIMENT
    replayed = client.search_runs([own.experiment_id], run_view_type=mlflow.entities.ViewType.ALL)
    assert sorted(r.info.lifecycle_stage for r in replayed) == ["active", "deleted", "deleted"]  # its gc kept one
    daily = client.search_runs([client.get_experiment_by_name(FORECAST_EXPERIMENT).experiment_id])
    assert sorted(r.info.run_id for r in daily) == sorted(production)  # none added, none deleted by the replay
