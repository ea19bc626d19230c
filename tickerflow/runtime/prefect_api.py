"""Prefect's temporary API for the one-shot commands (`run`, `forecast`, `replay`), when no Prefect API is
configured: one way to start it, one block that points this process at it.

It is the server Prefect starts for itself on first use: Prefect's own API app
(`prefect.server.api.server:create_app`) under uvicorn on 127.0.0.1, no UI, with this process's Prefect
settings, over `$PREFECT_HOME/prefect.db`. Two things are added, so it never outlives the command:

- it runs in a process group of its own, so a signal to the command's group does not stop it before the
  command has recorded its flow run's final state (the command stops it last, at exit);
- it stops itself when the command dies without stopping it (`api_watchdog`).

A fresh command begins the start in a background thread before its heavy imports (`begin_prefect_api`):
the server's boot (a subprocess: imports, and the migrations of a new database) on one core overlaps those
imports on the other, and this process never imports Prefect's server code.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock

from tickerflow.runtime.servers import Server, ServerError
from tickerflow.tracking.home import home_subdir
from tickerflow.ui_addresses import TEMPORARY_API_ENV
from tickerflow_model.config import LOOPBACK

SERVER_START_ATTEMPTS = 3  # a free port can be taken by another process before the server binds it
_api_start: list = []  # [thread, outcome] of the start begun by begin_prefect_api, until it is waited for


def needs_temporary_server() -> bool:
    """No Prefect API configured (PREFECT_API_URL, from the environment or the active profile)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED  # (Prefect: once a flow runs)

    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED.value())


def migration_lock():
    """Two processes that start a server on one new `$PREFECT_HOME/prefect.db` at once both migrate it,
    and one fails in alembic ("Online migration expected to match one row"): one start at a time."""
    from prefect.settings import PREFECT_HOME  # (Prefect: once a flow runs; `--help` imports this module)

    home = Path(PREFECT_HOME.value()).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return FileLock(str(home / ".tickerflow-server-start.lock"), timeout=600)


def temporary_prefect_api(log_dir: Path, port: int | None = None) -> Server:
    """The temporary API server (not started), on a free port unless one is given."""
    # Prefect: once a flow runs; `--help` imports this module
    import prefect
    from prefect.settings import get_current_settings

    if port is None:
        with contextlib.closing(socket.socket()) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
    url = f"http://{LOOPBACK}:{port}"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "tickerflow.runtime.api_watchdog:create_app",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    env = {
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_API_URL": None,
        "TICKERFLOW_PARENT_PID": str(os.getpid()),
    }
    return Server(
        name="Prefect's temporary API",
        command=command,
        url=url,
        health_url=f"{url}/api/health",
        log_path=log_dir / "prefect-temporary-api.log",
        env=env,
    )


def start_temporary_api(timeout: float) -> str:
    """Start the temporary API and wait until it answers; returns its API URL. It is stopped at exit."""
    with migration_lock():
        for attempt in range(1, SERVER_START_ATTEMPTS + 1):
            server = temporary_prefect_api(home_subdir("logs")).start()
            atexit.register(server.stop)
            try:
                server.wait_healthy(timeout)
            except ServerError:
                if server.running() or attempt == SERVER_START_ATTEMPTS:
                    raise
                continue  # it exited at once: its port was taken meanwhile, so try another
            return f"{server.url}/api"
    raise AssertionError("unreachable: the last attempt returns or raises")


def _startup_timeout() -> float:
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS  # (Prefect: once a flow runs)

    return float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())


def begin_prefect_api() -> None:
    """In a fresh process about to run a flow, with no Prefect API configured: begin starting the
    temporary API in a background thread. `prefect_api` waits for it. A process that has imported
    Prefect already is left to `prefect_api`, which starts the server when the flow is about to run."""
    if _api_start or "prefect" in sys.modules or not needs_temporary_server():
        return
    timeout = _startup_timeout()
    outcome: dict = {}

    def start() -> None:
        try:
            outcome["api_url"] = start_temporary_api(timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to prefect_api, which raises it
            outcome["error"] = exc

    thread = threading.Thread(target=start, name="tickerflow-prefect-api-start", daemon=True)
    thread.start()
    _api_start[:] = [thread, outcome]


@contextmanager
def prefect_api(while_starting: Callable[[], None] | None = None) -> Iterator[None]:
    """A Prefect API for the flows run in the block. When none is configured: the server that
    `begin_prefect_api` began (waited for), or else the same server, started now; this process, and
    the processes it starts, such as Dask workers, are pointed at it.

    `while_starting` is called when that server is still starting once this process is ready to run
    the flow: on a new home the server's database migrations outlast this process's imports, and the
    wait can do the run's own preparation. It is only a head start: the run meets any error it hits
    again, in its own task, where the flow reports it.

    The flow runs on the server started here send no heartbeats: that server lives only as long as this
    process, so nothing could act on a missed heartbeat, and the heartbeat thread's one-second sleeps
    held the end of every flow run by up to a second.
    """
    if not _api_start:
        if not needs_temporary_server():
            yield
            return
        api_url = start_temporary_api(_startup_timeout())
    else:
        thread, outcome = _api_start
        if while_starting is not None and thread.is_alive():
            try:
                while_starting()
            except Exception:  # noqa: BLE001 - reported by the run itself, see above
                pass
        thread.join()
        _api_start.clear()
        if "error" in outcome:
            raise outcome["error"]
        api_url = outcome["api_url"]
    # Prefect: once a flow runs; `--help` imports this module
    from prefect.context import refresh_global_settings_context
    from prefect.settings import temporary_settings

    os.environ["PREFECT_API_URL"] = api_url
    os.environ[TEMPORARY_API_ENV] = api_url  # its flow runs are linked where `tickerflow ui` shows them
    refresh_global_settings_context()  # Prefect read its settings at import: read them again
    with temporary_settings(updates={"api.url": api_url, "flows.heartbeat_frequency": None}):
        yield
