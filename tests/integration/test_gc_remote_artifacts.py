"""`gc` against a tracking server frees the artifacts of the runs it deletes: with proxied artifacts
(`mlflow-artifacts:`, the server's `--artifacts-destination`) and with an S3 artifact root (a moto server)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration.support import free_port
from tickerflow.runtime.servers import Server, mlflow_server
from tickerflow_model.config import LOOPBACK

pytestmark = pytest.mark.integration

BUCKET = "tickerflow-artifacts"
START_SECONDS = 150.0
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class ArtifactServer:
    """A tracking server of this module's own (gc deletes runs of the whole forecast experiment) and how to
    list the files its artifact store holds under a run."""

    kind: str
    url: str
    env: dict[str, str]
    destination: Path | None = None  # proxied: the server's folder
    endpoint: str | None = None  # S3: the moto server

    def files_of(self, run_id: str) -> list[str]:
        if self.destination is not None:
            return [str(p) for p in self.destination.rglob("*") if p.is_file() and run_id in p.parts]
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, **aws_keys())
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="root/")
        return [o["Key"] for o in listed.get("Contents", []) if f"/{run_id}/" in o["Key"]]


def aws_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def moto_server(log_dir: Path) -> Server:
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [str(Path(sys.executable).with_name("moto_server")), "-H", LOOPBACK, "-p", str(port)]
    return Server("moto S3 server", command, url, f"{url}/moto-api/", log_dir / f"moto-{port}.log")


def s3_mlflow_server(backend: str, endpoint: str, log_dir: Path) -> Server:
    """`mlflow server` whose clients write artifacts straight to S3 (`s3://` artifact URIs, no proxy)."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
    command += ["--default-artifact-root", f"s3://{BUCKET}/root", "--no-serve-artifacts"]
    command += ["--host", LOOPBACK, "--port", str(port), "--workers", "1"]
    env: dict[str, str | None] = {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    return Server("MLflow server (S3)", command, url, f"{url}/health", log_dir / f"mlflow-s3-{port}.log", env=env)


@pytest.fixture(scope="module")
def artifact_servers(tmp_path_factory, migrated_mlflow_db):
    """A moto S3 server, a tracking server with proxied artifacts and one with an S3 artifact root, started
    side by side."""
    import boto3

    base = tmp_path_factory.mktemp("gc-servers")
    for name in ("proxied.db", "s3.db"):
        shutil.copy(migrated_mlflow_db, base / name)
    moto = moto_server(base)
    proxied = mlflow_server(LOOPBACK, free_port(), f"sqlite:///{base / 'proxied.db'}", base / "destination", base)
    s3 = s3_mlflow_server(f"sqlite:///{base / 's3.db'}", moto.url, base)
    servers = [moto, proxied, s3]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_healthy(START_SECONDS)
        boto3.client("s3", endpoint_url=moto.url, **aws_keys()).create_bucket(Bucket=BUCKET)
        yield {
            "proxied": ArtifactServer("proxied", proxied.url, {}, destination=base / "destination"),
            "s3": ArtifactServer("s3", s3.url, {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": moto.url}, endpoint=moto.url),
        }
    finally:
        for server in servers:
            server.stop(timeout=5.0)


@pytest.mark.parametrize("kind", ["proxied", "s3"])
def test_gc_removes_the_artifacts_of_the_runs_it_deletes_from_the_servers_store(artifact_servers, kind, monkeypatch):
    from tickerflow.tasks.retention import run_gc
    from tickerflow.tracking.runs import TrackedRun
    from tickerflow.tracking.store import FORECAST_EXPERIMENT, use_tracking
    from tickerflow_model.config import ForecastStoreConfig, RetentionConfig

    server = artifact_servers[kind]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    runs = []
    for i in range(3):  # oldest first
        run = TrackedRun.start(FORECAST_EXPERIMENT, name=f"batch {i}", owned=False)
        run.log_text("x" * 2000, "forecasts/batch.csv")
        run.finish()
        runs.append(run.run_id)
        assert server.files_of(run.run_id), f"the {kind} store holds no file of run {run.run_id}"

    plan = run_gc(RetentionConfig(keep_forecast_runs=1, grace_minutes=0), ForecastStoreConfig())

    assert sorted(plan.forecast_runs) == sorted(runs[:2])
    assert plan.bytes >= 2 * 2000  # what it freed, counted in the server's store
    assert [server.files_of(r) for r in runs[:2]] == [[], []]
    assert server.files_of(runs[2])  # the newest run keeps its files
    client = use_tracking()
    assert [client.get_run(r).info.lifecycle_stage for r in runs] == ["deleted", "deleted", "active"]
