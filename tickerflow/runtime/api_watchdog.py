"""The app of the one-shot commands' temporary Prefect API (`prefect_api.py`), which never outlives the command.

The server runs in a process group of its own, so a signal sent to the command's group (`timeout`, a
scheduler, Ctrl-C) leaves it serving while the command records its flow run's final state; the command
stops it last. When the command dies without stopping it (SIGKILL, killed for memory), a watchdog
thread in the server sees that its parent is gone and shuts the server down.

Linux's `PR_SET_PDEATHSIG` would not do: it fires when the *thread* that started the child ends, and
the command starts the server from a background thread (`prefect_api.begin_prefect_api`).
"""

from __future__ import annotations

import os
import signal
import threading
import time

from prefect.server.api.server import create_app as prefect_app

PARENT_PID_ENV = "TICKERFLOW_PARENT_PID"
POLL_SECONDS = 0.5
GRACE_SECONDS = 10.0  # after SIGTERM to itself: uvicorn's orderly shutdown, then a hard exit


def parent_gone(parent_pid: int) -> bool:
    """Whether the process that started this one has exited (this process was re-parented)."""
    return os.getppid() != parent_pid


def watch_parent(parent_pid: int) -> threading.Thread:
    """A daemon thread that stops this process once `parent_pid` is no longer its parent."""

    def watch() -> None:
        while not parent_gone(parent_pid):
            time.sleep(POLL_SECONDS)  # a poll of a condition no event reports (a parent's death)
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down in order: the database is left consistent
        time.sleep(GRACE_SECONDS)
        os._exit(1)

    thread = threading.Thread(target=watch, name="tickerflow-parent-watch", daemon=True)
    thread.start()
    return thread


def create_app():
    """Prefect's API app (`prefect.server.api.server.create_app`), watched over when started by a command."""
    parent = os.environ.get(PARENT_PID_ENV)
    if parent:
        watch_parent(int(parent))
    # ephemeral: no UI and no background services; final: the one app this process creates (Prefect 3.9's own
    # temporary server passes the same two, as environment variables its `create_app` reads)
    return prefect_app(ephemeral=True, final=True)
