"""A `tickerflow run` SIGKILLed mid-training leaves its flow run RUNNING on the Prefect server; `gc` marks it
CRASHED (its running task runs too) and leaves live flow runs alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import mlflow
import pytest

from integration.support import ROOT, run_cli

pytestmark = pytest.mark.integration

TRAINING_STARTS_SECONDS = 300  # the run's start on a busy machine: imports, ingest, validation, windows
EPOCHS = 500  # more than it can train before it is killed


def first_epoch_logged(client: mlflow.MlflowClient, model: str, proc: subprocess.Popen, log) -> dict:
    """The run's MLflow run once it logged an epoch: training is under way."""
    deadline = time.monotonic() + TRAINING_STARTS_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before training: {log.read_text()[-3000:]}"
        exp = client.get_experiment_by_name("tickerflow")
        found = client.search_runs([exp.experiment_id], f"params.`register.model_name` = '{model}'") if exp else []
        if found and "epoch_seconds" in found[0].data.metrics:
            return {"run_id": found[0].info.run_id, "flow_run_id": found[0].data.tags["prefect.flow_run_id"]}
        time.sleep(1)  # polling the tracking server for the run's progress, bounded by the deadline
    raise AssertionError(f"no epoch logged within {TRAINING_STARTS_SECONDS} s: {log.read_text()[-3000:]}")


def live_flow_run(prefect_api) -> str:
    """A RUNNING flow run of a live process (on the server, started by no tickerflow run)."""
    flow = prefect_api.post("/flows/", {"name": "tickerflow-live-probe"})
    run = prefect_api.post("/flow_runs/", {"flow_id": flow["id"], "state": {"type": "RUNNING", "name": "Running"}})
    return run["id"]


def test_gc_marks_a_killed_runs_flow_run_crashed_and_leaves_live_ones_running(
    prefect_api, child_env, slice_csv, tmp_path, monkeypatch
):
    from tickerflow.tracking.runs import TrackedRun
    from tickerflow.tracking.store import EXPERIMENT, PREFECT_FLOW_RUN_TAG

    mlflow_url = child_env["MLFLOW_TRACKING_URI"]
    env = {**child_env, "TICKERFLOW_HOME": str(tmp_path / "home")}
    model = f"zombie-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "run.log"
    command = [sys.executable, "-m", "tickerflow", "run", "--data", str(slice_csv), "--epochs", str(EPOCHS)]
    # its own process group: the SIGKILL reaches the whole run, as when a machine is lost
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--model", model],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        killed = first_epoch_logged(mlflow.MlflowClient(mlflow_url), model, proc, log)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert prefect_api.flow_run(killed["flow_run_id"])["state_type"] == "RUNNING"  # the zombie, as found

    # live flow runs: one whose MLflow run names this (live) process, one that names no process at all
    live_with_owner, live_alone = live_flow_run(prefect_api), live_flow_run(prefect_api)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
    owned = TrackedRun.start(EXPERIMENT, name="live probe", tags={PREFECT_FLOW_RUN_TAG: live_with_owner})
    try:
        proc_gc = run_cli(["tickerflow", "gc"], env, timeout=300)
        assert proc_gc.returncode == 0, proc_gc.stdout[-2000:] + proc_gc.stderr[-2000:]

        zombie = prefect_api.flow_run(killed["flow_run_id"])
        assert zombie["state_type"] == "CRASHED", zombie["state"]
        assert "is gone" in zombie["state"]["message"]
        tasks = prefect_api.task_runs(killed["flow_run_id"])
        assert any(t["name"].startswith("train") and t["state_type"] == "CRASHED" for t in tasks), [
            (t["name"], t["state_type"]) for t in tasks
        ]
        assert not [t["name"] for t in tasks if t["state_type"] in ("RUNNING", "PENDING")]
        assert mlflow.MlflowClient(mlflow_url).get_run(killed["run_id"]).info.status == "KILLED"
        for flow_run_id in (live_with_owner, live_alone):
            assert prefect_api.flow_run(flow_run_id)["state_type"] == "RUNNING"
        assert mlflow.MlflowClient(mlflow_url).get_run(owned.run_id).info.status == "RUNNING"
    finally:
        owned.finish()
        for flow_run_id in (live_with_owner, live_alone):
            prefect_api.post(f"/flow_runs/{flow_run_id}/set_state", {"state": {"type": "COMPLETED"}, "force": True})
