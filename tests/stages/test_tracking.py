"""Where MLflow runs go: the home's SQLite store unless the user points MLFLOW_TRACKING_URI elsewhere."""

from __future__ import annotations

import mlflow

from tickerflow.tasks.tracking import tracking_uri, use_tracking


def test_home_store_follows_tickerflow_home_even_after_mlflow_exported_it(tmp_path, monkeypatch, mlflow_store):
    use_tracking()  # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI into the environment
    assert tracking_uri() == mlflow_store
    other = tmp_path / "other-home"
    monkeypatch.setenv("TICKERFLOW_HOME", str(other))
    assert tracking_uri() == f"sqlite:///{other / 'mlflow.db'}"


def test_a_user_set_tracking_uri_wins(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri() == "http://127.0.0.1:5999"


def test_experiment_artifacts_live_under_the_home(tf_home, mlflow_store):
    from tickerflow.tasks.tracking import experiment_id

    client = use_tracking()
    exp = client.get_experiment(experiment_id(client))
    assert exp.artifact_location == (tf_home / "mlartifacts").as_uri()
    assert mlflow.get_tracking_uri() == mlflow_store
