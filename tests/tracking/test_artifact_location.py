"""With the user's own MLflow store (`MLFLOW_TRACKING_URI=sqlite:///...`, no server, no artifact root),
the experiments tickerflow creates keep their artifacts under TICKERFLOW_HOME, not in the folder the
command runs in."""

from __future__ import annotations

import shutil

import mlflow

from tickerflow.cli import main
from tickerflow.tracking.store import EXPERIMENT


def test_a_users_sqlite_store_gets_its_artifacts_under_the_home(
    prefect_harness, migrated_mlflow_db, small_sample_csv, tf_home, tmp_path, monkeypatch
):
    store = tmp_path / "elsewhere" / "team.db"
    store.parent.mkdir()
    shutil.copy(migrated_mlflow_db, store)
    uri = f"sqlite:///{store}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    assert main(["run", "--data", str(small_sample_csv), "--epochs", "1"]) == 0

    assert list(cwd.iterdir()) == []  # no ./mlruns, no ./mlartifacts
    client = mlflow.MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == (tf_home / "mlartifacts").as_uri()
    assert list((tf_home / "mlartifacts").rglob("MLmodel"))  # the registered model's files are there
    assert not (tf_home / "mlflow.db").exists()  # and the runs went to the user's store
    assert client.search_runs([experiment.experiment_id])[0].info.status == "FINISHED"
