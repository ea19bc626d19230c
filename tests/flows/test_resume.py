"""A real `tickerflow run` killed with SIGKILL mid-training resumes from its last checkpoint when the same
command is started again; once that run has finished, the next one trains afresh."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import torch
from cli_processes import TICKERFLOW, cli_env, finish, start, summary_of

pytestmark = pytest.mark.slow

EPOCHS = 12
START_DEADLINE_S = 240  # Prefect start-up, MLflow migrations, ingest, validation, windowing on a busy box


def wait_for_checkpoint(home: Path, proc: subprocess.Popen, log: Path) -> Path:
    """Watch the home folder (bounded) until the first epoch's checkpoint is on disk."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        found = list((home / "checkpoints").glob("*/checkpoint.pt"))
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"run ended (rc={proc.returncode}) before any checkpoint:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)  # polling interval of an observation loop, not a synchronisation guess
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"no checkpoint within {START_DEADLINE_S}s:\n{log.read_text()[-3000:]}")


def test_sigkilled_run_resumes_from_its_checkpoint_and_the_next_run_starts_afresh(
    tmp_path, small_sample_csv, migrated_mlflow_db
):
    home = tmp_path / "home"
    env = cli_env(home)
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")  # spares the first run the store's migrations
    config = tmp_path / "config.json"
    # patience above the epoch count: every epoch runs, so there is always an epoch left to resume
    config.write_text(json.dumps({"train": {"epochs": EPOCHS, "patience": EPOCHS + 1}}))
    command = [str(TICKERFLOW), "run", "--data", str(small_sample_csv), "--config", str(config), "--json"]

    first = start(command, env, tmp_path / "first.log")
    ckpt_path = wait_for_checkpoint(home, first, tmp_path / "first.log")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert not ckpt["finished"], "the first run finished before it could be killed"
    killed_at = ckpt["epoch"]
    assert 1 <= killed_at < EPOCHS

    out = finish(start(command, env, tmp_path / "second.log"), tmp_path / "second.log")
    resumed = re.findall(r"resuming from epoch (\d+)", out)
    assert resumed == [str(killed_at)], out[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    run_id = summary_of(out)["mlflow_run_id"]
    resumed_history = client.get_metric_history(run_id, "val_loss")
    assert [m.step for m in resumed_history] == list(range(killed_at + 1, EPOCHS + 1))
    assert client.get_run(run_id).info.status == "FINISHED"
    assert torch.load(ckpt_path, map_location="cpu", weights_only=True)["finished"] is True
    # the killed run's MLflow run did not stay RUNNING: the second run found its process gone
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    training = client.search_runs([client.get_experiment_by_name("tickerflow").experiment_id])  # not the registry's
    (killed,) = [r for r in training if r.info.run_id != run_id]
    assert killed.info.status == "KILLED" and "is gone" in killed.data.tags["tickerflow.killed_reason"]

    out = finish(start(command, env, tmp_path / "third.log"), tmp_path / "third.log")
    assert "resuming" not in out
    fresh_history = client.get_metric_history(summary_of(out)["mlflow_run_id"], "val_loss")
    assert [m.step for m in fresh_history] == list(range(1, EPOCHS + 1))
    # resuming lost nothing: the killed-and-resumed training ends exactly where an uninterrupted one does
    assert resumed_history[-1].value == fresh_history[-1].value
