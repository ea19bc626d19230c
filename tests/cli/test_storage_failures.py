"""A home that refuses writes: one line naming the path, a non-zero exit, no traceback, the MLflow run
FAILED (never left RUNNING), nothing half-written, and no retries of what cannot pass."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess

import mlflow
import pytest
from cli_processes import RUN_TIMEOUT_S, TICKERFLOW, cli_env

from tickerflow.cli import main


@pytest.mark.slow
def test_a_file_where_the_home_needs_a_folder_is_one_line_naming_the_path(
    tmp_path, migrated_mlflow_db, small_sample_csv
):
    """A real failure of the storage (root may write anywhere, so a read-only mode would not stop it here)."""
    home = tmp_path / "home"
    env = cli_env(home)
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    (home / "raw").write_text("not a folder")  # where the raw snapshots go

    done = subprocess.run(
        [str(TICKERFLOW), "run", "--data", str(small_sample_csv), "--epochs", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )

    console = done.stdout + done.stderr
    assert done.returncode == 1
    assert "Traceback" not in console, console[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("tickerflow run: ")]
    assert len(said) == 1, console[-3000:]
    assert str(home / "raw") in said[0] and ("Not a directory" in said[0] or "File exists" in said[0])
    with contextlib.closing(sqlite3.connect(home / "mlflow.db")) as db:
        assert [row[0] for row in db.execute("select status from runs")] == ["FAILED"]
    with contextlib.closing(sqlite3.connect(home / "prefect" / "prefect.db")) as db:
        (ingest_runs,) = db.execute("select run_count from task_run where name like 'ingest%'").fetchall()
    assert ingest_runs == (1,)  # a storage that refuses the write is not retried
    assert (home / "raw").read_text() == "not a folder"


def test_a_full_disk_is_one_line_naming_the_path_and_the_run_fails(
    prefect_harness, mlflow_store, small_sample_csv, tf_home, monkeypatch, capfd
):
    """ENOSPC, as the kernel reports it, from the write of the raw snapshot (the first write of a run)."""
    import tickerflow.tasks.ingest as ingest_stage

    def full_disk(where, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))

    monkeypatch.setattr(ingest_stage.pq, "ParquetWriter", full_disk)

    code = main(["run", "--data", str(small_sample_csv), "--epochs", "1"])

    out, err = capfd.readouterr()
    assert code == 1
    assert "Traceback" not in out + err
    said = [line for line in err.splitlines() if line.startswith("tickerflow run: ")]
    assert len(said) == 1 and said[0].startswith("tickerflow run: No space left on device: "), err[-3000:]
    assert str(tf_home / "raw") in said[0]
    client = mlflow.MlflowClient(mlflow_store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not list((tf_home / "raw").glob("*/prices.parquet"))  # nothing half-written
