"""`prefect deploy --all` against a real Prefect server, runs executed by a process worker started in a folder of
its own (another machine's view: the project where its TICKERFLOW_PROJECT_DIR says), checked through the Prefect
REST API and through an MLflow client against a real tracking server."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from integration.support import ROOT, run_cli
from tickerflow.runtime.deployments import PROJECT_DIR_ENV
from tickerflow_model.forecaster import forecast_columns
from tickerflow_model.quantiles import QUANTILE_LEVELS

pytestmark = pytest.mark.integration

POOL = "tickerflow-process"
MODEL = "it-gru"
RUN_SECONDS = 300


def small_params(source) -> dict:
    # min_skill=-1: a 1-epoch model on 500 days may well lose to "tomorrow = today"; the gate would then
    # (rightly) refuse it, and this test is about the champion alias resolving through the server.
    return {
        "config": {
            "ingest": {"source": str(source)},
            "train": {"epochs": 1, "batch_size": 256},
            "register": {"model_name": MODEL, "min_skill": -1.0},
        }
    }


@pytest.fixture(scope="module")
def deployed(prefect_api, child_env):
    """Create the process pool, then `prefect --no-prompt deploy --all` from the project root."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    prefect_api.post("/work_pools/", {"name": POOL, "type": "process", "base_job_template": template})
    proc = run_cli(
        ["prefect", "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], child_env, 240
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    deployments = {
        "train-weekly": prefect_api.deployment("train_pipeline", "train-weekly"),
        "forecast-daily": prefect_api.deployment("batch_forecast", "forecast-daily"),
    }
    yield deployments
    # the session's server is shared: `tickerflow serve` registers the same names without a pool
    for deployment in deployments.values():
        prefect_api.delete(f"/deployments/{deployment['id']}")


@pytest.fixture(scope="module")
def worker_dir(tmp_path_factory):
    """Where the worker is started: not the project folder, which only TICKERFLOW_PROJECT_DIR names."""
    return tmp_path_factory.mktemp("worker-machine")


def run_deployment_once(prefect_api, child_env, deployment: dict, parameters: dict, worker_dir) -> dict:
    """Create a flow run of the deployment now, and let one `prefect worker start --run-once`, started in
    another folder with TICKERFLOW_PROJECT_DIR set, execute it."""
    run = prefect_api.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters})
    env = {**child_env, PROJECT_DIR_ENV: str(ROOT)}
    proc = run_cli(["prefect", "worker", "start", "--pool", POOL, "--run-once"], env, RUN_SECONDS, cwd=worker_dir)
    finished = prefect_api.wait_terminal(run["id"], 60)
    assert finished["state_type"] != "SCHEDULED", proc.stdout[-3000:] + proc.stderr[-3000:]
    return finished


def test_deploy_all_creates_both_scheduled_deployments_on_the_process_pool(deployed):
    train, forecast = deployed["train-weekly"], deployed["forecast-daily"]
    assert train["work_pool_name"] == POOL == forecast["work_pool_name"]
    assert [s["schedule"]["cron"] for s in train["schedules"]] == ["0 6 * * 6"]
    assert [s["schedule"]["cron"] for s in forecast["schedules"]] == ["30 17 * * 1-5"]
    assert {s["schedule"]["timezone"] for s in train["schedules"] + forecast["schedules"]} == {"America/New_York"}
    assert train["entrypoint"] == "flows/train_pipeline.py:train_pipeline"
    assert {"tickerflow", "train"} <= set(train["tags"])
    assert train["parameters"]["config"]["train"]["epochs"] == 30


def test_the_stored_pull_step_names_no_folder_of_the_deploying_machine(deployed):
    """A worker on another machine resolves the project folder from its own environment."""
    for deployment in deployed.values():
        steps = deployment["pull_steps"]
        assert steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": f"{{{{ ${PROJECT_DIR_ENV} }}}}"}}
        ]
        assert str(ROOT) not in json.dumps(deployment)


def test_training_deployment_runs_on_a_worker_and_registers_a_champion(
    deployed, prefect_api, child_env, mlflow_srv, slice_csv, worker_dir
):
    run = run_deployment_once(prefect_api, child_env, deployed["train-weekly"], small_params(slice_csv), worker_dir)
    assert run["state_type"] == "COMPLETED", run["state"]["message"]

    # what the Prefect UI shows: a name that says what ran, tags, task runs by name, keyed artifacts
    assert run["name"].startswith(f"train-small-{MODEL}-")
    assert {"train", "data:small", f"model:{MODEL}", "tickerflow"} <= set(run["tags"])
    task_names = {t["name"].rsplit("-", 1)[0] for t in prefect_api.task_runs(run["id"])}
    assert {
        "start-mlflow-run",
        "ingest",
        "validate",
        "train",
        "evaluate",
        "register",
        "finish-mlflow-run",
    } <= task_names
    assert any(name.startswith("window") for name in task_names)
    artifacts = {a["key"]: a for a in prefect_api.artifacts(run["id"]) if a["key"]}
    assert {"test-metrics", "validation-summary", "mlflow-run"} <= set(artifacts)
    assert "Skill vs naive" in artifacts["test-metrics"]["data"]
    link = artifacts["mlflow-run"]["data"]  # markdown: [MLflow run <id>](<url>)
    link = link[link.index("(") + 1 : link.rindex(")")]
    assert link.startswith(f"{mlflow_srv.url}/#/experiments/")

    # the same run through the tracking server: params, metrics, artifacts, and the link back to Prefect
    client = mlflow.MlflowClient(mlflow_srv.url, registry_uri=mlflow_srv.url)
    mlflow_run = client.get_run(link.rsplit("/", 1)[-1])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["prefect.flow_run_id"] == run["id"]
    assert mlflow_run.data.tags["prefect.flow_run_url"].endswith(f"/flow-runs/flow-run/{run['id']}")
    assert mlflow_run.data.params["train.epochs"] == "1"
    assert {"test_model_rmse", "test_naive_rmse", "val_loss"} <= set(mlflow_run.data.metrics)
    top = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"evaluation", "validation"} <= top

    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id == mlflow_run.info.run_id
    recent = pd.read_csv(slice_csv).groupby("Ticker").tail(120)
    recent.columns = [c.lower().replace(" ", "_") for c in recent.columns]
    recent["date"] = pd.to_datetime(recent["date"])
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(mlflow_srv.url)
    mlflow.set_registry_uri(mlflow_srv.url)
    try:
        forecasts = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(recent)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert list(forecasts.columns) == forecast_columns(QUANTILE_LEVELS)
    assert sorted(forecasts["ticker"]) == ["AAPL", "MSFT"]
    assert (forecasts["date"] > recent["date"].max()).all()


def test_a_run_whose_data_fails_validation_ends_failed_with_the_expectation_summary(
    deployed, prefect_api, child_env, mlflow_srv, slice_csv, tmp_path, worker_dir
):
    bad = pd.read_csv(slice_csv)
    bad.loc[bad.index[:3], "Close"] = -1.0
    path = tmp_path / "negative_close.csv"
    bad.to_csv(path, index=False)

    run = run_deployment_once(prefect_api, child_env, deployed["train-weekly"], small_params(path), worker_dir)

    assert run["state_type"] == "FAILED"
    message = run["state"]["message"]
    assert "data validation failed" in message
    assert "(close)" in message and "3 rows" in message
    names = {t["name"].rsplit("-", 1)[0]: t["state_type"] for t in prefect_api.task_runs(run["id"])}
    assert names["require-valid"] == "FAILED"
    assert "train" not in names and "register" not in names  # nothing downstream ran
    summary = {a["key"]: a for a in prefect_api.artifacts(run["id"]) if a["key"]}["validation-summary"]
    assert "FAILED" in summary["data"]


def test_a_degradation_event_starts_train_weekly_through_its_trigger(deployed, prefect_api, child_env):
    """The event forecast-daily emits (through the same function) makes the server's trigger create a
    `train-weekly` flow run now."""
    import subprocess
    import sys
    import time

    train = deployed["train-weekly"]
    before = {r["id"] for r in prefect_api.flow_runs_of(train["id"])}
    emit = (
        "import pandas as pd; from tickerflow.tasks.monitor import Degradation, MonitorConfig, emit_degraded; "
        "print(emit_degraded(Degradation('tickerflow-gru', '7', 3, True, latest={'live_rmse': 2.0}, reasons='live_rmse 2.0 > 1.5'), "
        "pd.Timestamp('2024-03-01'), MonitorConfig()))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", emit], env=child_env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-3000:]
    deadline = time.monotonic() + 90
    new = []
    while not new and time.monotonic() < deadline:
        time.sleep(1)  # polling the API for the run the trigger creates, bounded by the deadline
        new = [r for r in prefect_api.flow_runs_of(train["id"]) if r["id"] not in before]
    assert len(new) == 1, "no train-weekly flow run was created by the degradation trigger"
    assert (new[0].get("created_by") or {}).get("type") == "AUTOMATION"
    # the run is not for a worker of a later test to execute
    prefect_api.delete(f"/flow_runs/{new[0]['id']}")
