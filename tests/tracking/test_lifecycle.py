"""Runs never stay RUNNING after their process is gone; a checkpoint belongs to one live process at a time."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from types import SimpleNamespace

import mlflow
import psutil

from tickerflow.tasks.train import OWNER_FILE, checkpoint_dir_for, release_checkpoint_dir
from tickerflow.tracking.runs import (
    KILLED_REASON_TAG,
    RUN_HOST_TAG,
    RUN_PID_TAG,
    RUN_STARTED_TAG,
    end_flow_runs,
    reap_stale_runs,
)
from tickerflow.tracking.store import experiment_id, use_tracking
from tickerflow_model.config import TrainConfig


def live_process() -> subprocess.Popen:
    """A child that runs until its stdin closes."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def gone_process_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def owner_of(proc_pid: int) -> dict:
    return {"pid": proc_pid, "host": socket.gethostname(), "started": psutil.Process(proc_pid).create_time()}


def test_a_live_owner_keeps_its_checkpoint_and_a_gone_one_hands_it_over(tf_home):
    dataset, config = SimpleNamespace(dataset_id="ds"), TrainConfig(epochs=1)
    shared = checkpoint_dir_for(dataset, config)
    assert json.loads((shared / OWNER_FILE).read_text())["pid"] == psutil.Process().pid
    assert checkpoint_dir_for(dataset, config) == shared  # the owner itself (a retry) gets it back
    release_checkpoint_dir(shared)

    other = live_process()
    try:
        (shared / OWNER_FILE).write_text(json.dumps(owner_of(other.pid)))
        own = checkpoint_dir_for(dataset, config)
        assert own != shared and own.parent == shared.parent  # trains afresh beside it, resumes nothing
        assert json.loads((shared / OWNER_FILE).read_text())["pid"] == other.pid  # untouched
    finally:
        other.stdin.close()
        other.wait()
    assert checkpoint_dir_for(dataset, config) == shared  # its owner is gone: this run may resume it


def test_runs_whose_process_is_gone_are_marked_killed_and_live_ones_are_left(mlflow_store):
    client = use_tracking()
    exp = experiment_id(client)
    host = socket.gethostname()
    dead = client.create_run(exp, tags={RUN_PID_TAG: str(gone_process_pid()), RUN_HOST_TAG: host}).info.run_id
    alive = client.create_run(exp, tags={RUN_PID_TAG: str(psutil.Process().pid), RUN_HOST_TAG: host}).info.run_id
    elsewhere = client.create_run(exp, tags={RUN_PID_TAG: "1", RUN_HOST_TAG: "another-host"}).info.run_id
    # our pid, but a start time of another process: the pid was reused, the run's process is gone
    reused = client.create_run(
        exp, tags={RUN_PID_TAG: str(psutil.Process().pid), RUN_HOST_TAG: host, RUN_STARTED_TAG: "12345.0"}
    ).info.run_id

    assert sorted(reap_stale_runs()) == sorted([dead, reused])

    assert client.get_run(dead).info.status == "KILLED"
    assert "is gone" in client.get_run(dead).data.tags[KILLED_REASON_TAG]
    assert client.get_run(alive).info.status == "RUNNING" and client.get_run(elsewhere).info.status == "RUNNING"


def test_a_crashed_flow_runs_mlflow_runs_end_killed_with_the_reason(mlflow_store):
    client = use_tracking()
    mine = client.create_run(experiment_id(client), tags={"prefect.flow_run_id": "fr-1"}).info.run_id
    other = client.create_run(
        experiment_id(client, "tickerflow-forecasts"), tags={"prefect.flow_run_id": "fr-1"}
    ).info.run_id
    unrelated = client.create_run(experiment_id(client), tags={"prefect.flow_run_id": "fr-2"}).info.run_id

    assert sorted(end_flow_runs("fr-1", "KILLED", "flow run crashed: SIGTERM")) == sorted([mine, other])

    assert {client.get_run(r).info.status for r in (mine, other)} == {"KILLED"}
    assert client.get_run(mine).data.tags[KILLED_REASON_TAG] == "flow run crashed: SIGTERM"
    assert client.get_run(unrelated).info.status == "RUNNING"
    assert mlflow.MlflowClient(mlflow_store).get_run(unrelated).info.status == "RUNNING"


def test_two_processes_on_a_fresh_home_both_create_the_mlflow_store(tmp_path):
    """The store's schema migration runs once, under a lock: neither process fails in alembic."""
    import os

    home = tmp_path / "fresh"
    env = {**os.environ, "TICKERFLOW_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    code = (
        "from tickerflow.tracking.store import experiment_id, use_tracking; c = use_tracking(); print(experiment_id(c))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # one experiment, created once


def test_both_flows_end_their_mlflow_runs_killed_on_crash_and_cancel(mlflow_store):
    from prefect.states import Cancelled, Crashed

    from tickerflow.flows.batch_forecast import batch_forecast
    from tickerflow.flows.train_pipeline import train_pipeline

    client = use_tracking()
    for flow in (train_pipeline, batch_forecast):
        assert flow.on_crashed_hooks and flow.on_cancellation_hooks and flow.on_failure_hooks
        for hook, state, word in (
            (flow.on_crashed_hooks[0], Crashed(message="SIGTERM"), "crashed"),
            (flow.on_cancellation_hooks[0], Cancelled(message="from the UI"), "cancelled"),
        ):
            flow_run = SimpleNamespace(id=f"{flow.name}-{word}")
            run_id = client.create_run(
                experiment_id(client), tags={"prefect.flow_run_id": str(flow_run.id)}
            ).info.run_id
            hook(flow, flow_run, state)
            run = client.get_run(run_id)
            assert run.info.status == "KILLED" and run.data.tags[KILLED_REASON_TAG].startswith(f"flow run {word}: ")
