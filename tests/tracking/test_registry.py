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
