"""Who runs a thing: pid, host and start time name a process even after its pid is reused, so a later run can
tell a live owner (of an MLflow run, a checkpoint folder) from one that died without cleaning up."""

from __future__ import annotations

import os
import socket

import psutil


def this_process() -> dict:
    """pid, host and start time of this process."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time()}


def process_alive(pid: int, host: str, started: float | None = None) -> bool:
    """True unless the process is on this host and gone: no such pid, or the pid now belongs to a process
    started at another time than `started` (another host: assume alive)."""
    if host != socket.gethostname():
        return True
    try:
        proc = psutil.Process(pid)
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
