"""The pipeline on a local Dask cluster of two worker processes gives the thread pool's result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tickerflow.flows.train_pipeline import train_pipeline
from tickerflow.runtime.task_runners import build_task_runner
from tickerflow_model.config import PipelineConfig, RunnerConfig

pytestmark = pytest.mark.integration


def _use_home(monkeypatch, home: Path, migrated_mlflow_db: Path) -> None:
    home.mkdir()
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    monkeypatch.setenv("TICKERFLOW_HOME", str(home))


def _manifest(home: Path) -> dict:
    (path,) = (home / "windows").glob("*/manifest.json")
    return json.loads(path.read_text())


def test_pipeline_on_a_two_worker_dask_cluster_equals_the_thread_pool_run(
    prefect_srv, slice_csv, tmp_path, monkeypatch, migrated_mlflow_db
):
    from distributed import Client, LocalCluster, get_task_stream
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    api_url = f"{prefect_srv.url}/api"
    storage = tmp_path / "prefect-results"
    # the Dask workers are processes of their own: they learn the API and the home from the environment
    monkeypatch.setenv("PREFECT_API_URL", api_url)
    monkeypatch.setenv("PREFECT_LOCAL_STORAGE_PATH", str(storage))
    config = PipelineConfig.model_validate(
        {
            "ingest": {"source": str(slice_csv)},
            "train": {"epochs": 1, "batch_size": 256},
            "register": {"model_name": "dask-gru"},
        }
    )

    with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_LOCAL_STORAGE_PATH: storage}):
        _use_home(monkeypatch, tmp_path / "thread-home", migrated_mlflow_db)
        threads = train_pipeline.with_options(task_runner=build_task_runner(RunnerConfig()))(config)

        _use_home(monkeypatch, tmp_path / "dask-home", migrated_mlflow_db)
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            on_dask = build_task_runner(RunnerConfig(kind="dask", address=cluster.scheduler_address))
            with get_task_stream(client) as stream:
                distributed = train_pipeline.with_options(task_runner=on_dask)(config)

    # the mapped (per-ticker) tasks ran on the cluster's workers, not in this process; the stages the
    # flow calls directly never go through a task runner, so which tasks those are is the window's business
    assert stream.data, "no task ran on the Dask cluster"
    thread_manifest, dask_manifest = _manifest(tmp_path / "thread-home"), _manifest(tmp_path / "dask-home")
    assert dask_manifest["counts"] == thread_manifest["counts"]
    assert sorted(dask_manifest["tickers"]) == ["AAPL", "MSFT"]
    assert dask_manifest["tickers"] == thread_manifest["tickers"]
    assert dask_manifest["dataset_id"] == thread_manifest["dataset_id"]
    for key in ("metrics", "per_ticker", "skill_vs_naive", "test_forecasts"):
        assert _flat(getattr(distributed, key)) == pytest.approx(_flat(getattr(threads, key)), rel=1e-6), key


def _flat(value, prefix: str = "") -> dict:
    """{"a": {"b": 1.0}} -> {"a.b": 1.0}, which pytest.approx compares."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}").items()}
