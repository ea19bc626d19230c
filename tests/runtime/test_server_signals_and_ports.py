"""`ui` and `serve` tied to their terminal: a hangup stops the servers and every process of theirs; a port in
use is refused in one line before anything starts, and nothing claims a server it did not start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from tickerflow.cli import servers as ops_cli
from tickerflow.runtime.servers import Server, Stopped, port_problem, signal_name, stopping_on_signals

LOOPBACK = "127.0.0.1"
EXIT_S = 60  # the bound of a wait, not an expected duration


def _poll(condition, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)  # polling a real condition, bounded by the deadline
    return condition()


# --- a hangup -----------------------------------------------------------------------------------------

SUPERVISOR = """
import pathlib, sys
from tickerflow.runtime.servers import Server, run_until_signalled, stopping_on_signals

folder = pathlib.Path(sys.argv[1])
# each toy server starts a worker of its own, as `prefect server start` and `mlflow server` do
toy = (
    "import pathlib, subprocess, sys, time\\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\\n"
    "pathlib.Path(sys.argv[1]).write_text(str(child.pid))\\n"
    "time.sleep(300)\\n"
)
servers = [
    Server(f"toy {i}", [sys.executable, "-c", toy, str(folder / f"worker{i}")], "http://127.0.0.1:9",
           "http://127.0.0.1:9/health", folder / f"toy{i}.log")
    for i in (1, 2)
]
with stopping_on_signals(sigint=True):
    for server in servers:
        server.start()
    sys.exit(run_until_signalled(servers, "toy ui"))
"""


def test_a_hangup_stops_the_supervisor_and_every_process_of_its_servers(tmp_path):
    script = tmp_path / "supervisor.py"
    script.write_text(SUPERVISOR)
    log = tmp_path / "supervisor.log"
    with open(log, "wb") as out:  # its own session: the signal below reaches the supervisor alone, as a terminal's
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=out, stderr=subprocess.STDOUT)
    processes: list[psutil.Process] = [psutil.Process(proc.pid)]
    try:
        workers = [tmp_path / "worker1", tmp_path / "worker2"]
        assert _poll(lambda: all(w.exists() and w.read_text().strip() for w in workers)), log.read_text()
        processes += psutil.Process(proc.pid).children(recursive=True)
        assert len(processes) == 5  # the supervisor, two servers, a worker each
        # a closing terminal: the kernel and the shell each send a SIGHUP
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=EXIT_S) == 0, log.read_text()
        _, alive = psutil.wait_procs(processes, timeout=EXIT_S)
        assert alive == [], f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"
        assert "toy ui: stopping toy 1, toy 2 (SIGHUP)" in log.read_text()
    finally:
        for leftover in processes:  # whatever a failure above left running
            with contextlib.suppress(psutil.Error):
                leftover.kill()


def test_a_hangup_raises_the_stop_once_and_an_ignored_one_stays_ignored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as stop, stopping_on_signals() as received:
        os.kill(os.getpid(), signal.SIGHUP)
        _poll(lambda: received)
    assert signal_name(stop.value) == "SIGHUP" and received == [signal.SIGHUP]
    assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # `nohup tickerflow ui &`
    try:
        with stopping_on_signals(sigint=True):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_hangup_goes_to_whoever_handles_sigterm_meanwhile():
    """Prefect's runner replaces the SIGTERM handler while it serves, and stops gracefully on it."""
    calls: list[int] = []
    with stopping_on_signals() as received:
        signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
        os.kill(os.getpid(), signal.SIGHUP)
        _poll(lambda: calls)
        os.kill(os.getpid(), signal.SIGHUP)  # a second adds nothing: the runner would exit mid-stop
        _poll(lambda: len(received) == 2)
    assert calls == [signal.SIGHUP] and received == [signal.SIGHUP, signal.SIGHUP]


# --- a port in use -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@pytest.fixture
def listening():
    """Ports something already listens on (plain sockets: no server behind them)."""
    sockets = []

    def take() -> int:
        s = socket.socket()
        s.bind((LOOPBACK, 0))
        s.listen()
        sockets.append(s)
        return s.getsockname()[1]

    yield take
    for s in sockets:
        s.close()


@pytest.fixture
def http_server():
    """An HTTP server on loopback that answers `health_path` with `status` (a Prefect server answers 200)."""
    servers = []

    def start(status: int) -> int:
        class Health(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(status if self.path == "/api/health" else 404)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        server = ThreadingHTTPServer((LOOPBACK, 0), Health)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def nothing_starts(monkeypatch, tmp_path):
    monkeypatch.setattr(Server, "start", lambda self: pytest.fail(f"{self.name} was started"))
    monkeypatch.setattr(ops_cli, "serve_deployments", lambda *a, **k: pytest.fail("deployments were served"))
    monkeypatch.setattr(ops_cli, "embedded_mlflow_store", lambda: (f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "a"))
    monkeypatch.setattr(ops_cli, "configured_api_url", lambda: None)


def test_ui_refuses_a_port_in_use_in_one_line_naming_its_option(listening, nothing_starts, capsys):
    prefect_port, mlflow_port = listening(), _free_port()
    assert ops_cli.ui(prefect_port=prefect_port, mlflow_port=mlflow_port) == ops_cli.EXIT_NOT_STARTED
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"tickerflow ui: port {prefect_port} on 127.0.0.1 is in use: choose another with --prefect-port N "
        "(nothing was started)\n"
    )

    mlflow_port = listening()
    assert ops_cli.ui(prefect_port=prefect_port, mlflow_port=mlflow_port) == ops_cli.EXIT_NOT_STARTED
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"tickerflow ui: ports {prefect_port} and {mlflow_port} on 127.0.0.1 are in use: choose others with "
        "--prefect-port N and --mlflow-port N (nothing was started)\n"
    )

    assert ops_cli.ui(prefect_port=mlflow_port, mlflow_port=mlflow_port) == ops_cli.EXIT_NOT_STARTED
    assert capsys.readouterr().err == (
        f"tickerflow ui: --prefect-port and --mlflow-port are both {mlflow_port}: give each server a port of its own\n"
    )


def test_serve_with_its_port_in_use_says_so_and_claims_no_server(http_server, nothing_starts, capsys):
    prefect = http_server(200)
    assert ops_cli.serve(prefect_port=prefect) == ops_cli.EXIT_NOT_STARTED
    out, err = capsys.readouterr()
    assert out == ""  # no "Starting a local Prefect server"
    assert err == (
        f"tickerflow serve: port {prefect} on 127.0.0.1 is in use by a Prefect server: to serve the deployments "
        f"on it, `export PREFECT_API_URL=http://127.0.0.1:{prefect}/api` and run `tickerflow serve` again; or start "
        "another with --prefect-port N (nothing was started)\n"
    )

    other = http_server(404)  # something else listens there
    assert ops_cli.serve(prefect_port=other) == ops_cli.EXIT_NOT_STARTED
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"tickerflow serve: port {other} on 127.0.0.1 is in use: choose another with --prefect-port N "
        "(nothing was started)\n"
    )


def test_a_port_whose_server_just_stopped_is_free_and_one_listened_on_is_not(listening):
    """A stopped server's port lingers in TIME_WAIT; the servers bind with SO_REUSEADDR, and so does the check."""
    taken = listening()
    assert port_problem(LOOPBACK, taken) == "is in use"

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        server.bind((LOOPBACK, 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection((LOOPBACK, port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: its port lingers in TIME_WAIT
        client.close()
    assert port_problem(LOOPBACK, port) is None
    assert port_problem(LOOPBACK, 80 if os.geteuid() != 0 else taken) is not None  # a privileged port, or a taken one
