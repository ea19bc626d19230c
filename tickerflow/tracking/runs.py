"""The MLflow run as one typed object, and the lifecycle of runs whose process is gone.

Every MLflow run tickerflow writes (a training run, a batch forecast, a model version's monitoring ledger,
a champion decision) goes through `TrackedRun`: start, params, metrics, tags, files, then finish, fail or
kill. Values are bounded here, once: params and tags are redacted and cut to MLflow's limit, metrics that
are not finite are left out, and batches stay under MLflow's 1,000 per call.

A run SIGKILLed or killed for memory has no chance to end its MLflow run or its Prefect flow run;
`reap_stale_runs` ends them for it, from the next run or from `gc`: the MLflow runs KILLED, the Prefect flow
runs (and their running task runs) CRASHED. A flow run is marked only when its process is known to be dead:
an MLflow run of it names a process of this host that is gone, or it has sent Prefect's flow-run heartbeats
and the last is older than `HEARTBEAT_MISSES` heartbeat periods (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, 180 s
by default: 9 minutes), which covers the processes of other machines.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlparse
from uuid import UUID

import pandas as pd
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag

from tickerflow.tracking.interruptions import signals_held
from tickerflow.tracking.processes import process_alive, this_process
from tickerflow.tracking.store import (
    PREFECT_FLOW_RUN_TAG,
    TAG_LIMIT,
    experiment_id,
    experiment_ids,
    is_concurrent_insert,
    run_url,
    tracking_uri,
    use_tracking,
)
from tickerflow_model.redaction import redact_text

RUN_PID_TAG = "tickerflow.pid"
RUN_HOST_TAG = "tickerflow.host"
RUN_STARTED_TAG = "tickerflow.process_started"  # the process's start time: a reused pid is not the same process
KILLED_REASON_TAG = "tickerflow.killed_reason"
INSERT_ATTEMPTS = 3  # writes of a row that another writer may insert at the same moment
FAILURE_TAG = "failure"
PARAM_LIMIT = 6000  # MLflow's limit on a param's value, in characters
BATCH_LIMIT = 1000  # MLflow's limit on the metrics of one log_batch call
HEARTBEAT_MISSES = 3  # a flow run whose last heartbeat is older than this many heartbeat periods is dead
RUNNING_FLOW_RUNS_READ = 200  # the RUNNING flow runs one reap reads


def process_tags() -> dict[str, str]:
    """Who runs this MLflow run: lets a later run tell whether its process is gone."""
    me = this_process()
    return {RUN_PID_TAG: str(me["pid"]), RUN_HOST_TAG: me["host"], RUN_STARTED_TAG: repr(me["started"])}


def bounded(value: object, limit: int = TAG_LIMIT) -> str:
    """A tag's or param's value as MLflow stores it: text, credentials redacted, cut to the limit."""
    return redact_text(str(value))[:limit]


P = ParamSpec("P")
R = TypeVar("R")


def whole(write: Callable[P, R]) -> Callable[P, R]:
    """A write to the store that a stop signal never cuts in two: one cut inside a SQLite transaction leaves the
    store locked for the hook that then ends the run KILLED. The signal lands when the write has returned."""

    def held(*args: P.args, **kwargs: P.kwargs) -> R:
        with signals_held():
            return write(*args, **kwargs)

    held.__name__, held.__doc__ = write.__name__, write.__doc__
    return held


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run of tickerflow's store, by id."""

    run_id: str

    @classmethod
    def start(
        cls,
        experiment: str,
        name: str | None = None,
        tags: Mapping[str, object] | None = None,
        owned: bool = True,
    ) -> TrackedRun:
        """A new RUNNING run in `experiment` (created on first use). An `owned` run carries this process's
        identity, so `reap_stale_runs` can end it if the process dies first."""
        client = use_tracking()
        all_tags = {**{k: bounded(v) for k, v in (tags or {}).items()}, **(process_tags() if owned else {})}
        run = client.create_run(experiment_id(client, experiment), run_name=name, tags=all_tags)
        return cls(run.info.run_id)

    @classmethod
    def ledger(cls, experiment: str, tags: Mapping[str, str], name: str) -> TrackedRun:
        """The one finished run of `experiment` with these tags, created on first use: a ledger that values
        are added to over time (a model version's live metrics), not a process."""
        client = use_tracking()
        found = client.search_runs(
            [experiment_id(client, experiment)],
            filter_string=" and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()),
            max_results=1,
        )
        if found:
            return cls(found[0].info.run_id)
        run = cls.start(experiment, name, tags, owned=False)
        run.finish()
        return run

    # ---- what goes in ------------------------------------------------------------------------------
    @whole
    def log_params(self, params: Mapping[str, object]) -> None:
        entries = [Param(k, bounded(v, PARAM_LIMIT)) for k, v in params.items()]
        for start in range(0, len(entries), 100):  # MLflow takes at most 100 params a call
            use_tracking().log_batch(self.run_id, params=entries[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Finite values only (a NaN or an infinity is no measurement)."""
        self.log_steps((k, v, step) for k, v in metrics.items())

    @whole
    def log_steps(self, values: Iterable[tuple[str, float, int]]) -> None:
        """(key, value, step) triples: a series per key, each value once."""
        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, int(s)) for k, v, s in values if math.isfinite(float(v))]
        for start in range(0, len(entries), BATCH_LIMIT):
            use_tracking().log_batch(self.run_id, metrics=entries[start : start + BATCH_LIMIT])

    @whole
    def set_tags(self, tags: Mapping[str, object]) -> None:
        entries = [RunTag(k, bounded(v)) for k, v in tags.items()]
        if entries:
            use_tracking().log_batch(self.run_id, tags=entries)

    def set_description(self, markdown: str) -> None:
        """The run's note: the markdown the MLflow UI shows at the top of the run's page."""
        self.set_tags({"mlflow.note.content": markdown})

    @whole
    def log_file(self, path: str | Path, folder: str | None = None) -> None:
        use_tracking().log_artifact(self.run_id, str(path), folder)

    @whole
    def log_folder(self, path: str | Path, folder: str | None = None) -> None:
        use_tracking().log_artifacts(self.run_id, str(path), folder)

    @whole
    def log_text(self, text: str, path: str) -> None:
        use_tracking().log_text(self.run_id, text, path)

    @whole
    def log_table(self, frame: pd.DataFrame, path: str) -> None:
        """A table the MLflow UI shows as one (its artifact view of JSON tables)."""
        use_tracking().log_table(self.run_id, frame, path)

    def log_files(self, files: Mapping[str, bytes | str], folder: str) -> None:
        """Small files written from memory: name -> content, all under `folder`."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                target = Path(tmp) / name
                target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
            self.log_folder(tmp, folder)

    @whole
    def log_training_input(self, name: str, digest: str, source_uri: str) -> None:
        """A dataset as the run's training input (MLflow's lineage: the run page's Datasets panel)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source  # (MLflow's own: only here)
        from mlflow.data.meta_dataset import MetaDataset

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "can be interpreted in multiple ways": a local folder is both
            source = resolve_dataset_source(source_uri)
        # MetaDataset leaves Dataset.profile abstract, but Dataset is no ABC: MLflow instantiates it the same way
        meta = MetaDataset(source, name=name, digest=digest)  # type: ignore[abstract]
        entity = DatasetInput(meta._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])
        for attempt in range(INSERT_ATTEMPTS):  # another machine's run on the same data may insert it too
            try:
                use_tracking().log_inputs(self.run_id, datasets=[entity])
                return
            except Exception as exc:
                if not is_concurrent_insert(exc, "dataset") or attempt == INSERT_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))  # then MLflow finds the other run's row and links it

    # ---- what comes out ----------------------------------------------------------------------------
    @property
    def tags(self) -> dict[str, str]:
        return dict(use_tracking().get_run(self.run_id).data.tags)

    @property
    def url(self) -> str:
        return run_url(self.run_id)

    # ---- how it ends -------------------------------------------------------------------------------
    @whole
    def finish(self) -> None:
        use_tracking().set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.FINISHED))

    @whole
    def fail(self, reason: str) -> None:
        self.set_tags({FAILURE_TAG: reason})
        use_tracking().set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.FAILED))

    @whole
    def kill(self, reason: str) -> None:
        self.set_tags({KILLED_REASON_TAG: reason})
        use_tracking().set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.KILLED))

    @whole
    def reopen(self) -> None:
        """Back to RUNNING: MLflow's fluent API ends a run it was handed (`mlflow.start_run(run_id=...)`)
        FINISHED; a run still in progress must not read as finished."""
        use_tracking().update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))


@dataclass(frozen=True)
class RunRecord:
    """What `gc` and the reaper read of a run: no MLflow object leaves this package."""

    run_id: str
    status: str
    tags: dict[str, str]
    artifact_uri: str


def find_runs(
    experiment: str, filter_string: str = "", newest_first: bool = False, max_results: int = 50_000
) -> list[RunRecord]:
    """Runs of one experiment (none when it does not exist yet)."""
    client = use_tracking()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=filter_string,
        order_by=["attributes.start_time DESC"] if newest_first else None,
        max_results=max_results,
    )
    return [RunRecord(r.info.run_id, r.info.status, dict(r.data.tags), r.info.artifact_uri) for r in runs]


def delete_runs(run_ids: Iterable[str]) -> None:
    """Mark runs deleted (MLflow's soft delete: the store keeps them until its own gc)."""
    client = use_tracking()
    for run_id in run_ids:
        client.delete_run(run_id)


# ---- the files of a run in an artifact store this process does not write itself --------------------------
def is_local_artifact_uri(artifact_uri: str) -> bool:
    """Whether a run's artifacts are a folder on this filesystem (a `file:` URI or a bare path)."""
    return urlparse(artifact_uri).scheme in ("", "file")


def _artifact_repository(artifact_uri: str):
    """MLflow's repository of one run's artifacts: `mlflow-artifacts:` through the tracking server (which deletes
    them from its `--artifacts-destination`), `s3://` and the others straight to their store."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository  # (gc's use only)

    use_tracking()  # the repository of `mlflow-artifacts:` URIs resolves them against this tracking URI
    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri())


def artifacts_size(artifact_uri: str) -> int:
    """The bytes of a run's artifacts in a remote artifact store (0 when it has none)."""
    repo, total, folders = _artifact_repository(artifact_uri), 0, [None]
    while folders:
        for item in repo.list_artifacts(folders.pop()):
            if item.is_dir:
                folders.append(item.path)
            else:
                total += item.file_size or 0
    return total


def delete_artifacts(artifact_uri: str) -> None:
    """Remove a run's artifacts from a remote artifact store (the store removes them, not a soft delete)."""
    _artifact_repository(artifact_uri).delete_artifacts()


# ---- the end of a flow run's MLflow runs, and runs whose process died -------------------------------------
def end_flow_runs(flow_run_id: str, status: str, reason: str) -> list[str]:
    """End every RUNNING MLflow run of a Prefect flow run with `status` (FAILED, KILLED); returns their ids."""
    client = use_tracking()
    ids = experiment_ids(client)
    if not ids:
        return []
    runs = client.search_runs(
        ids, filter_string=f"tags.`{PREFECT_FLOW_RUN_TAG}` = '{flow_run_id}' and attributes.status = 'RUNNING'"
    )
    for run in runs:
        tracked = TrackedRun(run.info.run_id)
        tracked.kill(reason) if status == "KILLED" else tracked.fail(reason)
    return [r.info.run_id for r in runs]


def end_stopped_flow_run(flow_run_id: Any, state: Any) -> list[str]:
    """A crashed or cancelled flow run's MLflow runs end KILLED with the reason. A run stopped by a signal
    (SIGTERM from `timeout`, a scheduler or a worker; Ctrl-C; the terminal's SIGHUP), which Prefect reports as
    Crashed, was cancelled: its flow run is then marked Cancelled with the reason. The MLflow runs come
    first: the Prefect API may be going down with the same signal, the MLflow store is not."""
    stopped = state.is_crashed() and stopped_by_signal(state)
    reason = (
        f"stopped by a signal: {state.message}"
        if stopped
        else f"flow run {state.type.value.lower()}: {state.message or ''}"
    )
    ended = end_flow_runs(str(flow_run_id), "KILLED", reason)
    if stopped:
        from prefect.client.orchestration import get_client  # (Prefect's client: only when a run was stopped)
        from prefect.states import Cancelled

        with get_client(sync_client=True) as prefect:
            prefect.set_flow_run_state(flow_run_id, Cancelled(message=reason), force=True)
    return ended


def stopped_by_signal(state: Any) -> bool:
    """Whether a Crashed state is a stop: Prefect keeps the exception that crashed the run on the state
    (`State.result`), a KeyboardInterrupt for SIGINT (and the CLI's SIGTERM, `command_line.Stopped`), a
    `TerminationSignal` for the SIGTERM a worker or `prefect` sends."""
    from prefect.exceptions import TerminationSignal  # (Prefect's public exception: only when a run crashed)

    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - a result that cannot be read says nothing about a signal
        return False
    return isinstance(exc, (KeyboardInterrupt, TerminationSignal))


def flow_run_is_final(flow_run_id: str) -> bool:
    """Whether Prefect reports the flow run in a terminal state (False when it cannot tell)."""
    if not flow_run_id:
        return False
    try:
        from prefect.client.orchestration import get_client  # (Prefect's client: only when a run is found RUNNING)

        with get_client(sync_client=True) as prefect:
            state = prefect.read_flow_run(UUID(flow_run_id)).state
    except Exception:  # noqa: BLE001 - an unknown run or an unreachable API: no verdict, keep the run
        return False
    return state is not None and state.is_final()


def reap_stale_runs() -> list[str]:
    """Mark KILLED every RUNNING MLflow run whose process is gone or whose Prefect flow run has ended.

    A run SIGKILLed or killed for memory has no chance to end its MLflow run; the next run tidies up.
    Returns the ids of the runs it ended.
    """
    client = use_tracking()
    ids = experiment_ids(client)
    reaped = []
    for run in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000) if ids else []:
        why = stale_because(dict(run.data.tags))
        if why is not None:
            TrackedRun(run.info.run_id).kill(f"found RUNNING after {why}")
            reaped.append(run.info.run_id)
    reap_dead_flow_runs()
    return reaped


def reap_dead_flow_runs() -> list[str]:
    """Mark CRASHED every RUNNING Prefect flow run whose process is known to be dead, and its running task runs;
    returns their ids. Nothing without a configured Prefect API (starting a temporary one to look costs more than
    a zombie), and nothing, with one line on the log, when the API cannot be read."""
    from prefect.settings import PREFECT_API_URL  # (Prefect's settings and client: only to reap flow runs)

    if not PREFECT_API_URL.value():
        return []
    from prefect.client.orchestration import get_client  # (Prefect's client: only with an API to read)

    reaped = []
    try:
        with get_client(sync_client=True) as prefect:
            for flow_run in running_flow_runs(prefect):
                why = process_gone(str(flow_run.id)) or heartbeat_stopped(prefect, flow_run.id)
                if why is not None:
                    crash_flow_run(prefect, flow_run.id, f"found RUNNING after {why}")
                    reaped.append(str(flow_run.id))
    except Exception as exc:  # noqa: BLE001 - tidying up never fails the run or gc that does it
        logging.getLogger("tickerflow").warning("could not look for dead Prefect flow runs: %s", exc)
    return reaped


def running_flow_runs(prefect: Any) -> list:
    # (Prefect's filters: only to reap flow runs)
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

    running = FlowRunFilterState(type=FlowRunFilterStateType(any_=["RUNNING"]))
    return prefect.read_flow_runs(flow_run_filter=FlowRunFilter(state=running), limit=RUNNING_FLOW_RUNS_READ)


def process_gone(flow_run_id: str) -> str | None:
    """Why the flow run's process is dead, from the process its MLflow runs name: every one of them on this
    host and gone. None when no MLflow run names one, or one lives (or runs on another host)."""
    client = use_tracking()
    ids = experiment_ids(client)
    runs = client.search_runs(ids, filter_string=f"tags.`{PREFECT_FLOW_RUN_TAG}` = '{flow_run_id}'") if ids else []
    named = [dict(r.data.tags) for r in runs if r.data.tags.get(RUN_PID_TAG) and r.data.tags.get(RUN_HOST_TAG)]
    gone = [dead_process(tags) for tags in named]
    if not named or None in gone:
        return None
    return "its process (" + ", ".join(sorted({g for g in gone if g})) + ") is gone"


def heartbeat_stopped(prefect: Any, flow_run_id: Any) -> str | None:
    """Why the flow run is dead by its heartbeats: it sent some, and none for HEARTBEAT_MISSES periods."""
    from datetime import datetime, timedelta, timezone  # (only for a RUNNING flow run)

    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.settings import get_current_settings

    period = get_current_settings().flows.heartbeat_frequency
    if period is None:
        return None
    found = prefect.read_events(
        EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        ),
        limit=1,
    ).events
    if not found:
        return None  # no heartbeat ever: no evidence either way
    silent = datetime.now(timezone.utc) - found[0].occurred
    if silent < timedelta(seconds=HEARTBEAT_MISSES * period):
        return None
    return (
        f"its last heartbeat {silent.total_seconds() / 60:.0f} minutes ago ({HEARTBEAT_MISSES} periods of {period} s)"
    )


def crash_flow_run(prefect: Any, flow_run_id: Any, reason: str) -> None:
    """The flow run and its running (or pending) task runs CRASHED, with the reason."""
    # (Prefect's filters and states: only for a dead flow run)
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.states import Crashed  # (as above)

    unfinished = TaskRunFilterState(type=TaskRunFilterStateType(any_=["RUNNING", "PENDING"]))
    tasks = prefect.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        task_run_filter=TaskRunFilter(state=unfinished),
    )
    for task_run in tasks:
        prefect.set_task_run_state(task_run.id, Crashed(message=reason), force=True)
    prefect.set_flow_run_state(flow_run_id, Crashed(message=reason), force=True)


def dead_process(tags: dict[str, str]) -> str | None:
    """The process a run's tags name ("pid 123 on host"), when it is on this host and gone; else None (no
    process named, another host's, or alive)."""
    pid, host = tags.get(RUN_PID_TAG), tags.get(RUN_HOST_TAG)
    started = float(tags[RUN_STARTED_TAG]) if tags.get(RUN_STARTED_TAG) else None
    if pid and host and not process_alive(int(pid), host, started):
        return f"pid {pid} on {host}"
    return None


def stale_because(tags: dict[str, str]) -> str | None:
    """Why a RUNNING run's tags say it will never finish (its process is gone, its flow run ended); None if alive."""
    dead = dead_process(tags)
    if dead is not None:
        return f"its process ({dead}) is gone"
    if flow_run_is_final(tags.get(PREFECT_FLOW_RUN_TAG, "")):
        return f"its Prefect flow run {tags[PREFECT_FLOW_RUN_TAG]} has ended"
    return None
