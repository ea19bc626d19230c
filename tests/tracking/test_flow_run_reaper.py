"""Which RUNNING Prefect flow runs the reaper takes for dead: by the process their MLflow runs name, and by
Prefect's flow-run heartbeats."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from tickerflow.tracking.runs import (
    HEARTBEAT_MISSES,
    RUN_HOST_TAG,
    RUN_PID_TAG,
    TrackedRun,
    heartbeat_stopped,
    process_gone,
)
from tickerflow.tracking.store import EXPERIMENT, PREFECT_FLOW_RUN_TAG


class Heartbeats:
    """A Prefect client whose event store holds one flow run's last heartbeat, `ago` before now (None: none)."""

    def __init__(self, ago: timedelta | None):
        self.ago = ago

    def read_events(self, _filter, limit: int):
        if self.ago is None:
            return SimpleNamespace(events=[])
        return SimpleNamespace(events=[SimpleNamespace(occurred=datetime.now(timezone.utc) - self.ago)])


def test_a_flow_run_is_dead_by_heartbeats_only_when_it_sent_some_and_then_stopped():
    from prefect.settings import get_current_settings

    period = get_current_settings().flows.heartbeat_frequency
    assert heartbeat_stopped(Heartbeats(None), "fr") is None  # never sent one: nothing says it is dead
    assert heartbeat_stopped(Heartbeats(timedelta(seconds=period)), "fr") is None
    why = heartbeat_stopped(Heartbeats(timedelta(seconds=(HEARTBEAT_MISSES + 1) * period)), "fr")
    assert why is not None and "last heartbeat" in why


def gone_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_flow_run_is_dead_when_every_process_its_mlflow_runs_name_is_gone(mlflow_store):
    here = socket.gethostname()
    dead = {RUN_PID_TAG: str(gone_pid()), RUN_HOST_TAG: here}
    TrackedRun.start(EXPERIMENT, tags={PREFECT_FLOW_RUN_TAG: "dead", **dead}, owned=False)
    TrackedRun.start(EXPERIMENT, tags={PREFECT_FLOW_RUN_TAG: "alive"})  # this live process
    TrackedRun.start(
        EXPERIMENT, tags={PREFECT_FLOW_RUN_TAG: "elsewhere", RUN_PID_TAG: "1", RUN_HOST_TAG: "other"}, owned=False
    )
    TrackedRun.start(EXPERIMENT, tags={PREFECT_FLOW_RUN_TAG: "mixed", **dead}, owned=False)
    TrackedRun.start(EXPERIMENT, tags={PREFECT_FLOW_RUN_TAG: "mixed"})

    assert "is gone" in (process_gone("dead") or "")
    assert [process_gone(f) for f in ("alive", "elsewhere", "mixed", "unknown")] == [None, None, None, None]
