"""The MLflow connection: where runs and the registry live, tickerflow's experiments, and links to the UI.

Unless `MLFLOW_TRACKING_URI` is set, runs and the model registry live in a SQLite file under
TICKERFLOW_HOME, with artifacts beside it. Nothing is configured at import time.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import mlflow

from tickerflow.tracking.home import home_lock, home_subdir
from tickerflow.ui_addresses import MLFLOW_UI_URL_ENV, local_ui_url
from tickerflow_model.config import MLFLOW_UI_PORT
from tickerflow_model.redaction import redact_uri

EXPERIMENT = "tickerflow"  # training runs
FORECAST_EXPERIMENT = f"{EXPERIMENT}-forecasts"  # one run per batch forecast
MONITOR_EXPERIMENT = f"{EXPERIMENT}-monitoring"  # one ledger run per model version: its live metrics
REGISTRY_EXPERIMENT = f"{EXPERIMENT}-registry"  # one finished run per champion decision
PREFECT_FLOW_RUN_TAG = "prefect.flow_run_id"
# MLflow's limit on a tag's value, in characters: every tag tickerflow writes is cut here, once (TrackedRun).
TAG_LIMIT = 5000
# MLflow 3's UI opens an experiment without this tag on its GenAI overview (traces, tokens); tickerflow's
# experiments hold training and forecasting runs, the UI's "custom model development" kind.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


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
    initialise_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)


def experiment_id(client: mlflow.MlflowClient, name: str = EXPERIMENT) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:  # made before tickerflow tagged its experiments
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    location = None
    if not server_sets_artifact_root(tracking_uri()):
        # A store opened directly (SQLite, PostgreSQL, a folder), ours or the user's, would otherwise put
        # artifacts in ./mlruns or ./mlartifacts of whatever folder the command runs in.
        location = home_subdir("mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except mlflow.exceptions.MlflowException:
        exp = client.get_experiment_by_name(name)  # created concurrently
        if exp is None:
            raise  # not a race: the store refused to create it
        return exp.experiment_id


def experiment_ids(client: mlflow.MlflowClient, prefix: str = EXPERIMENT) -> list[str]:
    """The ids of tickerflow's experiments (every name that starts with `prefix`)."""
    return [e.experiment_id for e in client.search_experiments() if e.name.startswith(prefix)]


def server_sets_artifact_root(uri: str) -> bool:
    """Whether the tracking URI is a server (it has its own default artifact root) rather than a store
    this process writes itself."""
    return uri.split(":", 1)[0].lower() in ("http", "https", "databricks", "uc")


def mlflow_ui_url() -> str:
    """The MLflow UI that shows this process's runs: the tracking server when MLFLOW_TRACKING_URI is one,
    else TICKERFLOW_MLFLOW_UI_URL, else where `tickerflow ui` serves the local store. Credentials redacted."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return redact_uri(uri.split("?", 1)[0].split("#", 1)[0]).rstrip("/")
    return redact_uri(local_ui_url(MLFLOW_UI_URL_ENV, MLFLOW_UI_PORT))


def run_url(run_id: str) -> str:
    """An http link to the run's page in the MLflow UI (`mlflow_ui_url`), which a browser opens; a `runs:/`
    URI opens nowhere. The link is printed and stored in Prefect artifacts, so credentials are redacted."""
    exp = mlflow.MlflowClient(tracking_uri()).get_run(run_id).info.experiment_id
    return f"{mlflow_ui_url()}/#/experiments/{exp}/runs/{run_id}"


# Processes that share a home share the MLflow SQLite store. Its first use creates the schema through
# alembic migrations; two processes migrating one new file at once fail ("Online migration expected to
# match one row ... 0 found"). A file lock beside the database serialises that first use.
_initialised_stores: set[str] = set()


def initialise_store(uri: str) -> None:
    """Create (migrate) a local SQLite store once, under a lock; a no-op for servers and known stores."""
    if uri in _initialised_stores or not uri.startswith("sqlite:"):
        return
    with home_lock("mlflow-store"):
        mlflow.MlflowClient(uri, uri).search_experiments(max_results=1)
    _initialised_stores.add(uri)


def is_missing(exc: BaseException | None) -> bool:
    """Whether `exc` is MLflow's "no such model, version or run": a user's mistake, not a failure of ours."""
    return isinstance(exc, mlflow.exceptions.MlflowException) and exc.error_code == "RESOURCE_DOES_NOT_EXIST"


def quiet_mlflow_console() -> Callable[[], None]:
    """Keep MLflow's own lines off the console (its logger's lines and its eprint()s); returns the undo."""
    from mlflow.utils import logging_utils  # (mlflow's own logging switch; imported with mlflow anyway)

    was_enabled = logging_utils.MLFLOW_LOGGING_STREAM.enabled
    logger = logging.getLogger("mlflow")
    level = logger.level
    logging_utils.disable_logging()
    logger.setLevel(logging.ERROR)

    def undo() -> None:
        logging_utils.MLFLOW_LOGGING_STREAM.enabled = was_enabled
        logger.setLevel(level)

    return undo


def is_concurrent_insert(exc: BaseException, table: str) -> bool:
    """Whether an MLflow error is the store refusing a row of `table` that another writer inserted at the same
    moment: MLflow checks, then inserts, without a lock (PostgreSQL says `UniqueViolation` on `<table>_pk`;
    SQLite and MySQL say it their way). Another machine's run on the same data, or its alias write."""
    if not isinstance(exc, mlflow.exceptions.MlflowException):
        return False
    text = str(exc).lower()
    return table in text and any(word in text for word in ("duplicate", "unique"))
