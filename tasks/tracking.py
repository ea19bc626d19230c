"""MLflow wiring: where runs go, and the one MLflow run that belongs to each flow run.

Unless `MLFLOW_TRACKING_URI` is set, runs and the model registry live in a SQLite file under
TICKERFLOW_HOME, with artifacts beside it. Nothing is configured at import time.
"""

from __future__ import annotations

import os

import mlflow
from mlflow.entities import RunStatus

from tasks.redaction import redact_uri
from tasks.storage import home_subdir

EXPERIMENT = "tickerflow"
PREFECT_FLOW_RUN_TAG = "prefect.flow_run_id"


# The URI we derived from TICKERFLOW_HOME and handed to mlflow.set_tracking_uri, which exports it as
# MLFLOW_TRACKING_URI: seeing that value in the environment is not a user's choice of server.
_derived_uri: str | None = None


def user_tracking_uri() -> str | None:
    """MLFLOW_TRACKING_URI as the user set it, or None."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri if uri and uri != _derived_uri else None


def tracking_uri() -> str:
    uri = user_tracking_uri()
    if uri:
        return uri
    home_subdir().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home_subdir('mlflow.db')}"


def use_tracking() -> mlflow.MlflowClient:
    """Point this process's MLflow at tickerflow's store and return a client for it."""
    global _derived_uri
    uri = tracking_uri()
    if not user_tracking_uri():
        _derived_uri = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)


def experiment_id(client: mlflow.MlflowClient, name: str = EXPERIMENT) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not user_tracking_uri():
        # a SQLite store would otherwise put artifacts in ./mlartifacts of whatever folder we run in
        location = home_subdir("mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        return client.get_experiment_by_name(name).experiment_id  # created concurrently


def run_url(run_id: str) -> str:
    """A link to the run: the tracking server's page when there is one, else the `runs:/` URI.

    The link is printed and stored in Prefect artifacts, so credentials in MLFLOW_TRACKING_URI are redacted.
    """
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        client = mlflow.MlflowClient(uri)
        exp = client.get_run(run_id).info.experiment_id
        base = redact_uri(uri.split("?", 1)[0].split("#", 1)[0]).rstrip("/")
        return f"{base}/#/experiments/{exp}/runs/{run_id}"
    return f"runs:/{run_id}"


def end_run(run_id: str, failed: bool) -> None:
    status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
    use_tracking().set_terminated(run_id, status=status)
