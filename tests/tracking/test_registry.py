"""The champion protocol: compare-and-set moves of the alias, their history (old homes' tags too), the succession."""

from __future__ import annotations

import json

import mlflow
import pytest

from tickerflow.tracking.registry import champion_history, champion_stack


def _model_with_versions(client, tmp_path, n: int) -> None:
    client.create_registered_model("cas")
    for _ in range(n):
        client.create_model_version("cas", source=(tmp_path / "m").as_uri())


def test_champion_stack_replays_promotions_and_rollbacks():
    events = [
        {"action": "promote", "version": "1"},
        {"action": "promote", "version": "2"},
        {"action": "promote", "version": "3"},
        {"action": "rollback", "version": "2"},
    ]
    assert champion_stack(events) == ["1", "2"]


def test_a_void_undoes_the_move_recorded_before_it():
    events = [
        {"action": "promote", "version": "1"},
        {"action": "promote", "version": "2"},
        {"action": "promote", "version": "3"},
        {"action": "void", "voids": "promote", "version": "3", "previous": "2"},
        {"action": "rollback", "version": "1", "previous": "2"},
        {"action": "void", "voids": "rollback", "version": "1", "previous": "2"},
    ]
    assert champion_stack(events) == ["1", "2"]


def test_promotion_is_compare_and_set_and_a_refusal_is_recorded(mlflow_store, tmp_path):
    from tickerflow.tracking.registry import ChampionMoved, move_champion

    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    _model_with_versions(client, tmp_path, 3)
    move_champion("cas", "1", "promote", "first run", "run-a", expected=None)
    with pytest.raises(ChampionMoved, match="moved from no champion to v1"):
        move_champion("cas", "2", "promote", "second run", "run-b", expected=None)  # decided before v1 moved in
    assert str(client.get_model_version_by_alias("cas", "champion").version) == "1"
    move_champion("cas", "3", "promote", "third run", "run-c", expected="1")
    history = champion_history("cas")
    assert [(e["action"], e["version"], e["previous"]) for e in history] == [
        ("promote", "1", None),
        ("refused", "2", "1"),
        ("promote", "3", "1"),
    ]
    assert champion_stack(history) == ["1", "3"]


def test_moves_at_once_each_get_their_own_history_entry(mlflow_store, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from tickerflow.tracking.registry import history_key, move_champion

    keys = [history_key() for _ in range(200)]
    assert len(set(keys)) == 200 and keys == sorted(keys)
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    _model_with_versions(client, tmp_path, 4)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda v: move_champion("cas", v, "promote", f"v{v}"), ["1", "2", "3", "4"]))
    history = champion_history("cas")
    assert sorted(e["version"] for e in history) == ["1", "2", "3", "4"]
    # each move saw the one before it: the chain of `previous` is unbroken
    assert [e["previous"] for e in history] == [None] + [e["version"] for e in history[:-1]]
    assert str(client.get_model_version_by_alias("cas", "champion").version) == history[-1]["version"]


def test_the_history_of_an_older_home_kept_in_model_tags_still_reads_back_first(mlflow_store, tmp_path):
    from tickerflow.tracking.registry import move_champion

    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    _model_with_versions(client, tmp_path, 2)
    old = {
        "action": "promote",
        "version": "1",
        "previous": None,
        "by": "old",
        "at": "2024-01-01T00:00:00+00:00",
        "why": "x",
    }
    client.set_registered_model_tag("cas", "champion_history.0001", json.dumps(old))
    client.set_registered_model_alias("cas", "champion", "1")
    move_champion("cas", "2", "promote", "better")
    history = champion_history("cas")
    assert [(e["version"], e["by"]) for e in history][0] == ("1", "old")
    assert [e["version"] for e in history] == ["1", "2"] and champion_stack(history) == ["1", "2"]


# ---- a concurrent insert of the same alias row (MLflow on PostgreSQL) ---------------------------------------
UNIQUE_VIOLATION = (
    '(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "registered_model_alias_pk"\n'
    "DETAIL:  Key (name, alias)=(cas, champion) already exists."
)


class CollidingClient:
    """An MLflow client whose first `collisions` alias writes fail as a concurrent insert does on PostgreSQL,
    running `meanwhile` (the other writer) before each failure."""

    def __init__(self, client, collisions: int, meanwhile=None):
        self.client, self.collisions, self.meanwhile, self.writes = client, collisions, meanwhile, 0

    def set_registered_model_alias(self, name, alias, version):
        from mlflow.exceptions import RestException

        self.writes += 1
        if self.writes <= self.collisions:
            if self.meanwhile:
                self.meanwhile(self.client)
            raise RestException({"error_code": "BAD_REQUEST", "message": UNIQUE_VIOLATION})
        return self.client.set_registered_model_alias(name, alias, version)

    def __getattr__(self, attr):
        return getattr(self.client, attr)


@pytest.fixture
def colliding(mlflow_store, tmp_path, monkeypatch):
    """A model `cas` with three versions, v1 champion; `colliding(n, meanwhile)` makes the next n alias writes
    collide and returns the client that counts them."""
    from tickerflow.tracking import models, registry

    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    _model_with_versions(client, tmp_path, 3)
    registry.move_champion("cas", "1", "promote", "first", "test", expected=None)
    monkeypatch.setattr(registry, "ALIAS_RETRY_SECONDS", 0.0)
    real = models.use_tracking

    def make(collisions: int, meanwhile=None) -> CollidingClient:
        fake = CollidingClient(real(), collisions, meanwhile)
        monkeypatch.setattr(models, "use_tracking", lambda: fake)
        return fake

    return make


def test_an_alias_write_that_collides_with_another_is_written_again(colliding):
    from tickerflow.tracking.registry import current_champion, move_champion, write_alias

    fake = colliding(2)
    write_alias("cas", "challenger", "3")
    assert fake.writes == 3
    assert str(fake.client.get_model_version_by_alias("cas", "challenger").version) == "3"
    fake = colliding(1)
    move_champion("cas", "2", "promote", "better", "run-b", expected="1")
    assert fake.writes == 2 and current_champion("cas") == "2"


def test_a_collision_with_a_move_of_the_champion_reads_again_and_refuses(colliding):
    from tickerflow.tracking.registry import ChampionMoved, current_champion, move_champion

    def other_writer(client):  # a writer without the registry lock made v3 champion at the same moment
        client.set_registered_model_alias("cas", "champion", "3")

    fake = colliding(1, other_writer)
    with pytest.raises(ChampionMoved, match="moved to v3"):
        move_champion("cas", "2", "promote", "better", "run-b", expected="1")
    assert fake.writes == 1 and current_champion("cas") == "3"
    history = champion_history("cas")
    assert [(e["action"], e["version"]) for e in history] == [("promote", "1"), ("promote", "2"), ("void", "2")]
    assert champion_stack(history) == ["1"]  # the promotion that did not happen is not in the succession


def test_collisions_are_tried_a_bounded_number_of_times_and_other_errors_not_at_all(colliding):
    from mlflow.exceptions import MlflowException

    from tickerflow.tracking.registry import ALIAS_WRITE_ATTEMPTS, current_champion, write_alias

    fake = colliding(ALIAS_WRITE_ATTEMPTS + 10)
    with pytest.raises(MlflowException, match="registered_model_alias_pk"):
        write_alias("cas", "champion", "2")
    assert fake.writes == ALIAS_WRITE_ATTEMPTS and current_champion("cas") == "1"
    fake = colliding(0)
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found|does not exist"):
        write_alias("cas", "champion", "9")  # no such version: not a collision, no second write
    assert fake.writes == 1
