"""Servers as child processes: start, wait for health, stop the process group.

`tickerflow ui` and `tickerflow serve` start `prefect server start` and `mlflow server`, the projects' own
commands, judged by their own health endpoints; the one-shot commands start Prefect's temporary API
(`tickerflow.runtime.prefect_api`) the same way. `mlflow server` runs uvicorn as a child of its own, so a
server runs in a process group of its own and stopping it stops the group.

A server in a group of its own gets none of the signals a terminal sends its foreground group (Ctrl-C, the
hangup when the terminal closes), so the command that started it stops it on each of them
(`stopping_on_signals`), and checks its ports before it starts anything (`port_problem`).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from tickerflow.runtime import environment

STOP_SECONDS = 20.0


class ServerError(RuntimeError):
    """A server did not come up (or died): one line naming it, the last line of its log and the log file."""


@dataclass
class Server:
    """A child process serving HTTP, in its own process group so stopping it stops its workers too."""

    name: str
    command: list[str]
    url: str
    health_url: str
    log_path: Path
    env: dict[str, str | None] = field(default_factory=dict, repr=False)  # None: unset it for the child
    process: subprocess.Popen | None = field(default=None, repr=False)
    # False: the server stays in this process's group, so whatever kills the group (a SIGKILL sent to
    # it, Ctrl-C in a terminal) reaches the server too, as for a server that belongs to one command.
    own_process_group: bool = True

    def start(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**os.environ, **self.env}
        env = environment.apply({k: v for k, v in merged.items() if v is not None})
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                process_group=0 if self.own_process_group else None,
            )
        return self

    def failure(self, what: str) -> str:
        """`what`, the last line of the server's log, and where the log is: one line."""
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        last = f": {lines[-1].strip()}" if lines else ""
        return f"{self.name} {what}{last} (log {self.log_path})"

    def wait_healthy(self, timeout: float) -> None:
        """Poll the health endpoint until it answers 200; fail at once if the process exits."""
        deadline = time.monotonic() + timeout
        while not http_ok(self.health_url):
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(self.failure(f"exited with code {self.process.returncode} before serving {self.url}"))
            if time.monotonic() > deadline:
                raise ServerError(self.failure(f"did not answer {self.health_url} within {timeout:.0f}s"))
            time.sleep(0.25)  # polling interval, not synchronisation: the loop checks the real condition

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_SECONDS) -> int | None:
        """SIGTERM the server, wait, then SIGKILL what is left of it. Returns the exit code."""
        process = self.process
        if process is None:
            return None
        self._signal(process, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        self._signal(process, signal.SIGKILL)  # a hung server, or workers it left in its group
        process.wait()
        return process.returncode

    def _signal(self, process: subprocess.Popen, sig: int) -> None:
        """To the server's own process group; to the server alone when it shares this process's group."""
        if self.own_process_group:
            _signal_group(process.pid, sig)
        elif process.poll() is None:
            process.send_signal(sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def prefect_server(host: str, port: int, log_dir: Path, env: dict[str, str | None] | None = None) -> Server:
    """`prefect server start` on host:port; its database is `$PREFECT_HOME/prefect.db`, as for embedded runs,
    unless `env` (or this process's environment) sets PREFECT_API_DATABASE_CONNECTION_URL, e.g.
    `postgresql+asyncpg://USER@HOST:5432/DB` (`runtime.postgres`)."""
    url = f"http://{host}:{port}"
    return Server(
        name="Prefect server",
        command=[sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        url=url,
        health_url=f"{url}/api/health",
        log_path=log_dir / f"prefect-server-{port}.log",
        env=env or {},
    )


# MLflow 3.17's server starts a job runner beside itself (seven huey consumer processes) for its GenAI
# features (trace roll-ups, prompt optimisation, scorers); tickerflow uses none of them. Off unless the
# user turns it on.
MLFLOW_JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def mlflow_server(host: str, port: int, backend_store_uri: str, artifacts_destination: Path, log_dir: Path) -> Server:
    """`mlflow server` over a store (`sqlite:///...`, or `postgresql+psycopg2://USER@HOST:5432/DB`, which it
    migrates before it serves); artifacts are served (proxied) from `artifacts_destination`, so clients see
    `mlflow-artifacts:` URIs and need no access to the folder or bucket."""
    url = f"http://{host}:{port}"
    return Server(
        name="MLflow server",
        command=[
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_store_uri,
            "--artifacts-destination",
            str(artifacts_destination),
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        url=url,
        health_url=f"{url}/health",
        log_path=log_dir / f"mlflow-server-{port}.log",
        env={} if MLFLOW_JOB_EXECUTION in os.environ else {MLFLOW_JOB_EXECUTION: "false"},
    )


class Stopped(KeyboardInterrupt):
    """A stop signal received while serving: unwound like Ctrl-C, naming the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_name(exc: BaseException) -> str:
    """`SIGHUP` for a `Stopped` by it; a plain KeyboardInterrupt is Ctrl-C."""
    return signal.Signals(getattr(exc, "signum", signal.SIGINT)).name


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # only it may set signal handlers


@contextlib.contextmanager
def stopping_on_signals(sigint: bool = False) -> Iterator[list[int]]:
    """While inside, SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed) stop the command as
    Ctrl-C does: the first raises `Stopped`, later ones add nothing (a closing terminal's shell and kernel
    each send a SIGHUP). Yields the signals received, first first.

    A signal that is ignored stays ignored (`nohup tickerflow ui &` outlives its terminal, as asked).
    With `sigint`, Ctrl-C is handled the same way; without, it stays Python's (asyncio's own handler
    stops a Prefect runner gracefully on it). While a Prefect runner serves, its own SIGTERM handler stops
    it gracefully: a hangup is handed to whatever handles SIGTERM at that moment.
    """
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Stopped(signum)

    def hang_up(signum: int, frame: FrameType | None) -> None:
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler) and handler is not interrupt:  # someone else's (Prefect's runner) handles SIGTERM now
            received.append(signum)
            if len(received) == 1:
                handler(signum, frame)
        else:
            interrupt(signum, frame)

    wanted = {signal.SIGTERM: interrupt, signal.SIGHUP: hang_up, **({signal.SIGINT: interrupt} if sigint else {})}
    previous = {sig: signal.signal(sig, h) for sig, h in wanted.items() if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def stop_signals_ignored() -> Iterator[None]:
    """While the servers stop: a second Ctrl-C, SIGTERM or SIGHUP must not cut the stop short and leave them running."""
    if not _in_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_all(servers: list[Server], timeout: float) -> None:
    """Start the servers side by side, then wait for each; stop them all if one fails or on a stop signal.

    Call it inside `stopping_on_signals()`: outside, SIGTERM or SIGHUP would end this process at once and
    leave the servers running in their own process groups."""
    started: list[Server] = []
    try:
        for server in servers:
            started.append(server.start())
        for server in started:
            server.wait_healthy(timeout)
    except BaseException:
        stop_all(started)
        raise


def run_until_signalled(servers: list[Server], who: str = "tickerflow") -> int:
    """Block until a stop signal (-> 0) or until a server dies (-> 1); stop every server either way.

    Call it inside `stopping_on_signals(sigint=True)`, which turns SIGTERM and SIGHUP into the stop."""
    try:
        while not (dead := [s for s in servers if not s.running()]):
            time.sleep(0.5)  # a supervisor's poll; a signal interrupts it at once
        process = dead[0].process
        what = f"exited with code {process.returncode}" if process is not None else "was never started"
        say(f"{who}: {dead[0].failure(what)}", sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        say(f"{who}: stopping {', '.join(s.name for s in servers)} ({signal_name(exc)})", sys.stdout)
        return 0
    finally:
        stop_all(servers)


def stop_all(servers: list[Server]) -> None:
    with stop_signals_ignored():
        for server in reversed(servers):
            server.stop()


def say(line: str, stream) -> None:
    """Print a line the user may no longer be there to read: after a hangup, a write to the terminal fails
    (EIO), and that must not keep the servers from being stopped."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=stream, flush=True)


def port_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now ("is in use", or the system's reason); None when it could.

    Bound as uvicorn binds (SO_REUSEADDR), so a port that only lingers after a server stopped counts as
    free. A check before starting, so that a busy port is one line rather than a server dying with half a
    message; a port taken between this check and the server's start is still the server's own error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot be used: {host} does not resolve ({exc.strerror or exc})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc.strerror or exc}"
    return None


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1; a name is resolved, and one that does not resolve is not loopback."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)
