"""The registry's lock: a file lock for one home, and a Prefect global concurrency limit held through the Prefect
server when the MLflow store is shared."""

from __future__ import annotations

import pytest

from tickerflow.tracking import locks


@pytest.mark.parametrize(
    ("uri", "shared"),
    [
        ("http://mlflow.team:5000", True),
        ("https://mlflow.team", True),
        ("postgresql+psycopg2://u@db/mlflow", True),
        ("sqlite:////tmp/mlflow.db", False),
        ("file:///tmp/mlruns", False),
    ],
)
def test_a_store_other_machines_can_write_is_shared(uri, shared, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert locks.shared_store() is shared


def test_the_home_store_takes_no_server_lock(mlflow_store, monkeypatch):
    def refuse(limit):
        raise AssertionError(f"a server lock ({limit}) for a store of one home")

    monkeypatch.setattr(locks, "server_lock", refuse)
    with locks.machine_and_team_lock("registry-x"):
        pass


def test_the_temporary_api_of_one_command_is_no_team_server(prefect_harness, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    assert locks.team_prefect_api() == PREFECT_API_URL.value()
    monkeypatch.setenv(locks.TEMPORARY_API_ENV, str(PREFECT_API_URL.value()))
    assert locks.team_prefect_api() is None


def test_a_shared_store_holds_the_one_slot_of_a_limit_on_the_prefect_server(prefect_harness, monkeypatch):
    from prefect.client.orchestration import get_client

    monkeypatch.setattr(locks, "shared_store", lambda: True)
    name = "registry-test-slot"
    limit = locks.limit_name(name)

    def slots() -> tuple[int, int]:
        with get_client(sync_client=True) as client:
            found = client.read_global_concurrency_limit_by_name(limit)
        return found.limit, found.active_slots

    with locks.machine_and_team_lock(name):
        assert slots() == (1, 1)  # created with one slot, and this move holds it
    assert slots() == (1, 0)
    with locks.machine_and_team_lock(name):  # found, not created again
        assert slots() == (1, 1)


def test_a_limit_that_would_let_two_moves_through_is_refused(prefect_harness, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    monkeypatch.setattr(locks, "shared_store", lambda: True)
    name = "registry-test-wide"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=locks.limit_name(name), limit=3))
    with pytest.raises(locks.LockUnavailable, match="must be active with 1 slot"):
        with locks.machine_and_team_lock(name):
            pass
