"""MLflow wiring: where runs go, and the one MLflow run that belongs to each flow run.

Unless `MLFLOW_TRACKING_URI` is set, runs and the model registry live in a SQLite file under
TICKERFLOW_HOME, with artifacts beside it. Nothing is configured at import time.
"""

from __future__ import annotations

import os
from uuid import UUID

import mlflow
from mlflow.entities import RunStatus

from tickerflow.tasks.storage import home_subdir
from tickerflow.ui_addresses import MLFLOW_UI_URL_ENV, local_ui_url
from tickerflow_model.config import MLFLOW_UI_PORT
from tickerflow_model.redaction import redact_text, redact_uri

EXPERIMENT = "tickerflow"
PREFECT_FLOW_RUN_TAG = "prefect.flow_run_id"
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


def end_run(run_id: str, failed: bool) -> None:
    status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
    use_tracking().set_terminated(run_id, status=status)


# ---- concurrency and lifecycle ---------------------------------------------------------------------
# Processes that share a home share the MLflow SQLite store. Its first use creates the schema through
# alembic migrations; two processes migrating one new file at once fail ("Online migration expected to
# match one row ... 0 found"). A file lock beside the database serialises that first use.
_initialised_stores: set[str] = set()
RUN_PID_TAG = "tickerflow.pid"
RUN_HOST_TAG = "tickerflow.host"
RUN_STARTED_TAG = "tickerflow.process_started"  # the process's start time: a reused pid is not the same process
KILLED_REASON_TAG = "tickerflow.killed_reason"


def home_lock(name: str, timeout: float = 600.0):
    """An inter-process lock (a `filelock.FileLock`) on `TICKERFLOW_HOME/.locks/NAME.lock`."""
    from filelock import FileLock

    folder = home_subdir(".locks")
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f"{name}.lock"), timeout=timeout)


def initialise_store(uri: str) -> None:
    """Create (migrate) a local SQLite store once, under a lock; a no-op for servers and known stores."""
    if uri in _initialised_stores or not uri.startswith("sqlite:"):
        return
    with home_lock("mlflow-store"):
        mlflow.MlflowClient(uri, uri).search_experiments(max_results=1)
    _initialised_stores.add(uri)


def this_process() -> dict:
    """pid, host and start time: together they name a process even after its pid is reused."""
    import socket

    import psutil

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time()}


def process_tags() -> dict[str, str]:
    """Who runs this MLflow run: lets a later run tell whether its process is gone."""
    me = this_process()
    return {RUN_PID_TAG: str(me["pid"]), RUN_HOST_TAG: me["host"], RUN_STARTED_TAG: repr(me["started"])}


def process_alive(pid: int, host: str, started: float | None = None) -> bool:
    """True unless the process is on this host and gone: no such pid, or the pid now belongs to a process
    started at another time than `started` (another host: assume alive)."""
    import socket

    import psutil

    if host != socket.gethostname():
        return True
    try:
        proc = psutil.Process(pid)
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def tickerflow_experiment_ids(client: mlflow.MlflowClient) -> list[str]:
    return [e.experiment_id for e in client.search_experiments() if e.name.startswith(EXPERIMENT)]


def end_flow_runs(flow_run_id: str, status: str, reason: str) -> list[str]:
    """End every RUNNING MLflow run of a Prefect flow run with `status` (FAILED, KILLED); returns their ids."""
    client = use_tracking()
    ids = tickerflow_experiment_ids(client)
    if not ids:
        return []
    runs = client.search_runs(
        ids, filter_string=f"tags.`{PREFECT_FLOW_RUN_TAG}` = '{flow_run_id}' and attributes.status = 'RUNNING'"
    )
    for run in runs:
        client.set_tag(
            run.info.run_id, KILLED_REASON_TAG if status == "KILLED" else "failure", redact_text(reason)[:5000]
        )
        client.set_terminated(run.info.run_id, status=status)
    return [r.info.run_id for r in runs]


def end_stopped_flow_run(flow_run_id, state) -> list[str]:
    """A crashed or cancelled flow run's MLflow runs end KILLED with the reason. A run stopped by a
    signal (SIGTERM from `timeout` or a scheduler, Ctrl-C), which Prefect reports as Crashed, was
    cancelled: its flow run is marked Cancelled with the reason first."""
    reason = f"flow run {state.type.value.lower()}: {state.message or ''}"
    if state.is_crashed() and stopped_by_signal(state.message or ""):
        reason = f"stopped by a signal: {state.message}"
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        with get_client(sync_client=True) as prefect:
            prefect.set_flow_run_state(flow_run_id, Cancelled(message=reason), force=True)
    return end_flow_runs(str(flow_run_id), "KILLED", reason)


def stopped_by_signal(message: str) -> bool:
    """Prefect's crash message for a run stopped by SIGTERM or SIGINT (`prefect.states.exception_to_crashed_state`)."""
    return message.startswith("Execution was aborted by") and message.rstrip(".").endswith("signal")


def flow_run_is_final(flow_run_id: str) -> bool:
    """Whether Prefect reports the flow run in a terminal state (False when it cannot tell)."""
    if not flow_run_id:
        return False
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as prefect:
            state = prefect.read_flow_run(UUID(flow_run_id)).state
    except Exception:  # noqa: BLE001 - an unknown run or an unreachable API: no verdict, keep the run
        return False
    return state is not None and state.is_final()


def reap_stale_runs(client: mlflow.MlflowClient | None = None) -> list[str]:
    """Mark KILLED every RUNNING MLflow run whose process is gone or whose Prefect flow run has ended.

    A run SIGKILLed or killed for memory has no chance to end its MLflow run; the next run tidies up.
    Returns the ids of the runs it ended.
    """
    client = client or use_tracking()
    ids = tickerflow_experiment_ids(client)
    if not ids:
        return []
    reaped = []
    for run in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        why = None
        pid, host = tags.get(RUN_PID_TAG), tags.get(RUN_HOST_TAG)
        started = float(tags[RUN_STARTED_TAG]) if tags.get(RUN_STARTED_TAG) else None
        if pid and host and not process_alive(int(pid), host, started):
            why = f"its process (pid {pid} on {host}) is gone"
        elif flow_run_is_final(tags.get(PREFECT_FLOW_RUN_TAG, "")):
            why = f"its Prefect flow run {tags[PREFECT_FLOW_RUN_TAG]} has ended"
        if why is None:
            continue
        client.set_tag(run.info.run_id, KILLED_REASON_TAG, f"found RUNNING after {why}")
        client.set_terminated(run.info.run_id, status="KILLED")
        reaped.append(run.info.run_id)
    return reaped
