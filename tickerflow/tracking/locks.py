"""Locks that serialise a registry write across every process that can make it.

A file lock in `TICKERFLOW_HOME/.locks` serialises the processes of one home (one machine). Processes on
other machines share only the servers: when the MLflow store is shared (a tracking server, or a database
other than a SQLite file) and a Prefect server is configured (`PREFECT_API_URL`, not the temporary API a
one-shot command starts for itself), the move also holds the one slot of a Prefect global concurrency limit,
which the Prefect server grants to one holder at a time whatever machine it runs on. The limit is created
on first use. A holder that dies keeps its slot until its lease runs out (`LEASE_SECONDS`, Prefect's minimum),
then the server hands it on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from tickerflow.tracking.home import home_lock
from tickerflow.tracking.store import tracking_uri
from tickerflow.ui_addresses import TEMPORARY_API_ENV
from tickerflow_model.atomic_io import stable_hash
from tickerflow_model.errors import TickerflowError

LEASE_SECONDS = 60.0  # the shortest lease Prefect's server grants: how long a dead holder blocks the others
WAIT_SECONDS = 600.0  # how long a move waits for the lock before it gives up
LOCAL_STORES = ("sqlite", "file", "")  # store schemes one machine writes by itself

_warned: set[str] = set()


class LockUnavailable(TickerflowError, RuntimeError):
    """The lock of a shared registry could not be taken (its Prefect server refused or did not answer in time)."""


def shared_store() -> bool:
    """Whether other machines may write this MLflow store: a tracking server or a shared database."""
    return tracking_uri().split(":", 1)[0].split("+", 1)[0].lower() not in LOCAL_STORES


def team_prefect_api() -> str | None:
    """The Prefect server this process is configured for; None with none, or with the temporary API a
    one-shot command started for itself (no other machine sees that one)."""
    from prefect.settings import PREFECT_API_URL  # (Prefect's settings: only when a registry write is made)

    url = PREFECT_API_URL.value()
    if not url or url == os.environ.get(TEMPORARY_API_ENV):
        return None
    return str(url)


def limit_name(name: str) -> str:
    """The global concurrency limit of one lock (Prefect's names refuse some characters; a hash has none)."""
    return f"tickerflow-{stable_hash(name)[:24]}"


@contextmanager
def machine_and_team_lock(name: str) -> Iterator[None]:
    """The home's file lock `name` (a name we generated), then, when the store is shared, the team's lock of
    the same name through the Prefect server."""
    with home_lock(name):
        if not shared_store():
            yield
            return
        api = team_prefect_api()
        if api is None:
            warn_once(name)
            yield
            return
        with server_lock(limit_name(name)):
            yield


def warn_once(name: str) -> None:
    if name in _warned:
        return
    _warned.add(name)
    logging.getLogger("tickerflow").warning(
        "the MLflow store is shared but no Prefect server is configured: registry moves wait only for this "
        "machine's other processes (set PREFECT_API_URL to the team's Prefect server)"
    )


@contextmanager
def server_lock(limit: str) -> Iterator[None]:
    """One slot of the global concurrency limit `limit` (limit 1, created if missing), held through the server."""
    # Prefect's concurrency: only for a shared registry
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency

    ensure_limit(limit)
    held = False
    try:
        with concurrency(limit, occupy=1, timeout_seconds=WAIT_SECONDS, lease_duration=LEASE_SECONDS, strict=True):
            held = True
            yield
    except (TimeoutError, ConcurrencySlotAcquisitionError) as exc:
        if held:  # the body's own error, not the lock's
            raise
        why = f"not free within {WAIT_SECONDS:g} s" if isinstance(exc, TimeoutError) else str(exc)
        raise LockUnavailable(f"could not take the registry lock {limit!r} on the Prefect server: {why}") from exc


def ensure_limit(limit: str) -> None:
    """Create the limit (one slot) unless it exists; two processes creating it at once both find it made."""
    from prefect.client.orchestration import get_client  # (Prefect's client: only for a shared registry)
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_global_concurrency_limit_by_name(limit)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
            except ObjectAlreadyExists:
                pass
            return
        if found.limit != 1 or not found.active:
            raise LockUnavailable(
                f"the Prefect server's concurrency limit {limit!r} must be active with 1 slot to serialise "
                f"registry moves (it has {found.limit}, {'active' if found.active else 'inactive'})"
            )
