"""A failing source whose URI carries credentials, through the real command line: the password and the
token reach neither the console nor any file under the home (Prefect's database, MLflow's, the logs);
a server that answers "not found" fails at once, an unreachable one is retried."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from cli_processes import RUN_TIMEOUT_S, TICKERFLOW, cli_env

pytestmark = pytest.mark.slow

PASSWORD, TOKEN = "s3cretPW", "t0kenXYZ"


@contextlib.contextmanager
def not_found_server():
    """An http.server on loopback that answers every request 404."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(tmp_path: Path, migrated_mlflow_db: Path, name: str, port: int) -> tuple[subprocess.CompletedProcess, Path]:
    home = tmp_path / name
    env = cli_env(home)
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    uri = f"http://analyst:{PASSWORD}@127.0.0.1:{port}/prices.csv?token={TOKEN}"
    done = subprocess.run(
        [str(TICKERFLOW), "run", "--data", uri, "--epochs", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    return done, home


def secrets_under(home: Path) -> list[str]:
    """Every file under the home (both SQLite databases and their journals, logs, snapshots) holding a secret."""
    found = []
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {s}" for s in (PASSWORD, TOKEN) if s.encode() in data]
    return found


def one_line(done: subprocess.CompletedProcess) -> str:
    console = done.stdout + done.stderr
    assert PASSWORD not in console and TOKEN not in console, console[-3000:]
    assert "Traceback" not in console, console[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("tickerflow run: ")]
    assert len(said) == 1, console[-3000:]
    return said[0]


def mlflow_statuses(home: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(home / "mlflow.db")) as db:
        return [row[0] for row in db.execute("select status from runs")]


def test_a_404_from_a_credentialed_source_is_not_found_and_leaks_nothing(tmp_path, migrated_mlflow_db):
    with not_found_server() as port:
        done, home = run_cli(tmp_path, migrated_mlflow_db, "notfound", port)
    assert done.returncode == 1
    line = one_line(done)
    assert (
        line == f"tickerflow run: IngestError: data source not found: http://***@127.0.0.1:{port}/prices.csv?token=***"
    )
    assert (home / "prefect" / "prefect.db").exists() and secrets_under(home) == []
    with contextlib.closing(sqlite3.connect(home / "prefect" / "prefect.db")) as db:
        logged = "\n".join(row[0] for row in db.execute("select message from log"))
        (ingest_runs,) = db.execute("select run_count from task_run where name like 'ingest%'").fetchall()
    assert (
        "Encountered exception during execution" in logged and "***@127.0.0.1" in logged
    )  # the row is there, redacted
    assert ingest_runs == (1,)  # a 404 is never retried
    assert mlflow_statuses(home) == ["FAILED"]


def test_an_unreachable_credentialed_source_is_retried_and_leaks_nothing(tmp_path, migrated_mlflow_db):
    port = closed_port()
    done, home = run_cli(tmp_path, migrated_mlflow_db, "refused", port)
    assert done.returncode == 1
    line = one_line(done)
    assert line.startswith(
        f"tickerflow run: SourceUnavailable: cannot reach http://***@127.0.0.1:{port}/prices.csv?token=***"
    )
    assert "not found" not in line
    assert secrets_under(home) == []
    with contextlib.closing(sqlite3.connect(home / "prefect" / "prefect.db")) as db:
        (ingest_runs,) = db.execute("select run_count from task_run where name like 'ingest%'").fetchall()
    assert ingest_runs == (4,)  # the first try and the task's three retries
    assert mlflow_statuses(home) == ["FAILED"]
