"""Where MLflow runs go: the home's SQLite store unless the user points MLFLOW_TRACKING_URI elsewhere."""

from __future__ import annotations

import mlflow

from tickerflow.tracking.store import tracking_uri, use_tracking


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
    from tickerflow.tracking.store import experiment_id

    client = use_tracking()
    exp = client.get_experiment(experiment_id(client))
    assert exp.artifact_location == (tf_home / "mlartifacts").as_uri()
    assert mlflow.get_tracking_uri() == mlflow_store


def test_experiments_open_on_training_runs_not_the_genai_overview(mlflow_store):
    from tickerflow.tracking.store import experiment_id

    client = use_tracking()
    created = client.get_experiment(experiment_id(client, "tickerflow-forecasts"))
    assert created.tags["mlflow.experimentKind"] == "custom_model_development"
    older = client.create_experiment("made-before-the-tag")  # an experiment from an older tickerflow
    assert experiment_id(client, "made-before-the-tag") == older
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"


def test_run_links_are_http_links_into_the_mlflow_ui(mlflow_store, monkeypatch):
    from tickerflow.tracking.store import experiment_id, run_url

    client = use_tracking()
    exp = experiment_id(client)
    run_id = client.create_run(exp).info.run_id
    # the local store: where `tickerflow ui` serves it (its default --mlflow-port)
    assert run_url(run_id) == f"http://127.0.0.1:5000/#/experiments/{exp}/runs/{run_id}"
    monkeypatch.setenv("TICKERFLOW_MLFLOW_UI_URL", "http://127.0.0.1:8123/")
    assert run_url(run_id) == f"http://127.0.0.1:8123/#/experiments/{exp}/runs/{run_id}"


def test_run_links_point_at_the_ports_tickerflow_ui_serves_on():
    from tickerflow_model.config import MLFLOW_UI_PORT, PREFECT_UI_PORT, ServerOptions

    assert (ServerOptions().prefect_port, ServerOptions().mlflow_port) == (PREFECT_UI_PORT, MLFLOW_UI_PORT)


def test_a_flow_run_on_the_temporary_api_links_where_tickerflow_ui_shows_it(monkeypatch):
    from types import SimpleNamespace

    import tickerflow.reporting.run_labels as run_labels
    from tickerflow.ui_addresses import TEMPORARY_API_ENV

    served = "http://127.0.0.1:43187/api"  # a temporary API's random port: dead once the command exits
    monkeypatch.setattr(
        run_labels,
        "runtime",
        SimpleNamespace(flow_run=SimpleNamespace(id="0f1e", ui_url="http://127.0.0.1:43187/flow-runs/flow-run/0f1e")),
    )
    monkeypatch.setenv("PREFECT_API_URL", served)
    monkeypatch.setenv(TEMPORARY_API_ENV, served)
    monkeypatch.delenv("TICKERFLOW_PREFECT_UI_URL", raising=False)
    assert run_labels.prefect_flow_run_url() == "http://127.0.0.1:4200/flow-runs/flow-run/0f1e"
    monkeypatch.setenv("TICKERFLOW_PREFECT_UI_URL", "http://user:secret@ui.example:8080/")
    assert run_labels.prefect_flow_run_url() == "http://***@ui.example:8080/flow-runs/flow-run/0f1e"

    # a server the user runs (PREFECT_API_URL is not the temporary API's): that server's own UI link
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4300/api")
    monkeypatch.setattr(run_labels, "PREFECT_UI_URL", SimpleNamespace(value=lambda: "http://127.0.0.1:4300"))
    assert run_labels.prefect_flow_run_url() == "http://127.0.0.1:43187/flow-runs/flow-run/0f1e"
    # Prefect's in-process ephemeral API serves no UI: no link
    monkeypatch.setattr(run_labels, "PREFECT_UI_URL", SimpleNamespace(value=lambda: None))
    assert run_labels.prefect_flow_run_url() is None
