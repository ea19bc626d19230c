"""What the Prefect UI shows for a run: its name, its tags, and the links between Prefect and MLflow.

A flow-run name is fixed when the run starts, before any data is read, so it is built from the
parameters only: `train-<data>-<model>-<when>-<id>` and `forecast-<data>-<model@alias>-<when>-<id>`, where
`<data>` is the source's file or folder name (without extensions), `<when>` the run's scheduled time (UTC, to
the minute: `2026-11-29T21:35Z`) and `<id>` the first characters of the flow run's id, so that two runs of a
day, or of a minute, never share a name in Prefect or MLflow. Tickers are data and are not known at that
point; the ingest log line and artifacts list them.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any

from prefect import runtime
from prefect.artifacts import create_link_artifact
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_UI_URL

from tickerflow.tracking.runs import TrackedRun
from tickerflow.ui_addresses import PREFECT_UI_URL_ENV, local_ui_url, on_temporary_api
from tickerflow_model.config import PREFECT_UI_PORT
from tickerflow_model.names import CHAMPION_ALIAS, data_label
from tickerflow_model.redaction import redact_uri

PREFECT_FLOW_RUN_URL_TAG = "prefect.flow_run_url"
MLFLOW_RUN_ARTIFACT = "mlflow-run"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+-]+")


def model_label(model_uri: str) -> str:
    """`models:/tickerflow-gru@champion` -> `tickerflow-gru@champion`."""
    return _UNSAFE.sub("_", model_uri.removeprefix("models:/").replace("/", "@")).strip("_") or "model"


def _as_dict(value: Any) -> dict:
    """A flow parameter as a plain dict: a pydantic model in-process, JSON from a deployment."""
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, mode="json")
    return dict(value or {})


RUN_ID_CHARS = 6  # of the flow run's id in its name: 16.7 million to one against two alike in a minute


def _run_when() -> str:
    """`2026-11-29T21:35Z-0f1e2d`: the run's scheduled time (UTC), then the start of its flow run id."""
    when = runtime.flow_run.scheduled_start_time or datetime.now(timezone.utc)
    run_id = str(runtime.flow_run.id or uuid.uuid4()).replace("-", "")[:RUN_ID_CHARS]
    return f"{when.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}-{run_id}"


def train_labels(parameters: dict[str, Any]) -> tuple[str, str]:
    """(data label, model name) of a train_pipeline run's parameters; no model name when the run chooses it."""
    config = _as_dict(parameters.get("config"))
    source = (config.get("ingest") or {}).get("source", "")
    return data_label(source), (config.get("register") or config.get("register_") or {}).get("model_name") or ""


def forecast_labels(parameters: dict[str, Any]) -> tuple[str, str]:
    """(data label, model label) of a batch_forecast run's parameters; no model label when the run chooses it."""
    uri = parameters.get("model_uri")
    return data_label(parameters.get("data", "")), model_label(uri) if uri else ""


def train_run_name() -> str:
    return "-".join(filter(None, ["train", *train_labels(runtime.flow_run.parameters), _run_when()]))


def forecast_run_name() -> str:
    return "-".join(filter(None, ["forecast", *forecast_labels(runtime.flow_run.parameters), _run_when()]))


def replay_run_names(data: str, model_name: str, day) -> tuple[str, str]:
    """(training run name, forecast run name) of a replayed day: named by that day, not by today."""
    data, model, as_of = (
        data_label(data),
        model_label(f"models:/{model_name}@{CHAMPION_ALIAS}"),
        f"as_of-{day:%Y-%m-%d}",
    )
    return f"train-{data}-{model_name}-{as_of}", f"forecast-{data}-{model}-{as_of}"


def _add_tags(flow_run, new: list[str]) -> None:
    tags = list(dict.fromkeys([*(flow_run.tags or []), *new]))
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, tags=tags)


def tag_train_run(flow, flow_run, state) -> None:
    """on_running hook: tag the run with its data source and model so the UI can filter on them (a model the
    run chooses itself gets its tag once chosen: `tag_model`)."""
    data, model = train_labels(flow_run.parameters)
    _add_tags(flow_run, ["train", f"data:{data}", *([f"model:{model}"] if model else [])])


def tag_forecast_run(flow, flow_run, state) -> None:
    data, model = forecast_labels(flow_run.parameters)
    _add_tags(flow_run, ["forecast", f"data:{data}", *([f"model:{model}"] if model else [])])


def tag_model(name: str, run: TrackedRun | None = None) -> None:
    """The model a run chose: `model:<name>` on its flow run, `model_name` on its MLflow run."""
    if run is not None:
        run.set_tags({"model_name": name})
    flow_run_id = runtime.flow_run.id
    if flow_run_id is None:
        return
    with get_client(sync_client=True) as client:
        tags = client.read_flow_run(flow_run_id).tags or []
        client.update_flow_run(flow_run_id, tags=list(dict.fromkeys([*tags, f"model:{name}"])))


def prefect_flow_run_url() -> str | None:
    """The flow run's page in the Prefect UI that shows it after the command: on the temporary API a
    command started, where `tickerflow ui` serves the same database (`ui_addresses`); on a server the
    user runs, that server's UI; None on Prefect's in-process ephemeral API, which serves no UI."""
    flow_run_id = runtime.flow_run.id
    if flow_run_id is None:
        return None
    if on_temporary_api():
        return f"{redact_uri(local_ui_url(PREFECT_UI_URL_ENV, PREFECT_UI_PORT))}/flow-runs/flow-run/{flow_run_id}"
    if not PREFECT_UI_URL.value():
        return None
    return runtime.flow_run.ui_url


def cross_link(run: TrackedRun) -> str:
    """Link the flow run and its MLflow run both ways; returns the MLflow run's link."""
    link = run.url
    prefect_url = prefect_flow_run_url()
    if prefect_url:
        run.set_tags({PREFECT_FLOW_RUN_URL_TAG: prefect_url})
    create_link_artifact(
        key=MLFLOW_RUN_ARTIFACT,
        link=link,
        link_text=f"MLflow run {run.run_id}",
        description="The MLflow run of this flow run: params, per-epoch metrics, Data Docs, model",
    )
    return link
