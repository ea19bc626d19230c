"""The promotion gate's both outcomes, version tags, and the champion history through promote/rollback."""

from __future__ import annotations

import json

import mlflow
import pytest
from prefect.logging import disable_run_logger

from conftest import make_prices
from flows.cli import main
from tasks.evaluate import Evaluation
from tasks.tracking import experiment_id
from tasks.register import RegisterConfig, champion_history, champion_stack, promotion_decision, register
from tasks.window import WindowConfig, build_window_dataset
from test_evaluate import untrained_forecaster

KEYS = ("rmse", "mae", "mape", "smape", "mase", "directional_accuracy", "skill")


def evaluation(model_rmse: float, naive_rmse: float = 1.0, champion_rmse: float | None = None, champion_version=None) -> Evaluation:
    def block(rmse):
        return {k: (rmse if k == "rmse" else 1 - rmse / naive_rmse if k == "skill" else 0.5) for k in KEYS}

    metrics = {"model": block(model_rmse), "naive": block(naive_rmse)}
    if champion_rmse is not None:
        metrics["champion"] = block(champion_rmse)
    return Evaluation(metrics, {}, {}, 1 - model_rmse / naive_rmse, 10, champion_version)


def test_gate_rejects_a_model_worse_than_naive():
    promoted, reason = promotion_decision(evaluation(1.02), RegisterConfig())
    assert not promoted and "below the minimum" in reason and "-0.0200" in reason


def test_gate_promotes_the_first_model_that_is_not_worse_than_naive():
    promoted, reason = promotion_decision(evaluation(0.99), RegisterConfig())
    assert promoted and "no champion yet" in reason
    # a configured minimum skill raises the bar
    assert not promotion_decision(evaluation(0.99), RegisterConfig(min_skill=0.05))[0]


def test_gate_compares_with_the_champion_on_the_same_windows_with_a_margin():
    config = RegisterConfig(min_improvement=0.01)
    assert promotion_decision(evaluation(0.95, champion_rmse=0.97, champion_version="3"), config)[0]
    promoted, reason = promotion_decision(evaluation(0.965, champion_rmse=0.97, champion_version="3"), config)
    assert not promoted and "champion v3" in reason and "does not beat" in reason
    # a champion that could not be scored on the same windows is never silently replaced
    promoted, reason = promotion_decision(evaluation(0.5, champion_version="3"), config)
    assert not promoted and "could not be scored" in reason


def test_register_config_names_bad_values():
    with pytest.raises(ValueError, match="min_improvement.*-0.1"):
        RegisterConfig(min_improvement=-0.1)
    with pytest.raises(ValueError, match="model_name"):
        RegisterConfig(model_name=" ")


def test_champion_stack_replays_promotions_and_rollbacks():
    events = [{"action": "promote", "version": "1"}, {"action": "promote", "version": "2"},
              {"action": "promote", "version": "3"}, {"action": "rollback", "version": "2"}]
    assert champion_stack(events) == ["1", "2"]


def test_versions_carry_lineage_and_the_champion_history_reads_back(prefect_harness, mlflow_store, tmp_path, capsys):
    prices = make_prices(n_days=200, seed=1)
    dataset = build_window_dataset(prices, WindowConfig(lookback=10, min_history=50), "srchash", tmp_path / "w")
    forecaster = untrained_forecaster(dataset, 0.5)
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)  # both: MLflow leaves MLFLOW_REGISTRY_URI set
    config = RegisterConfig(model_name="m")

    def register_run(ev: Evaluation):
        run_id = client.create_run(experiment_id(client)).info.run_id
        with disable_run_logger():
            return register.fn(forecaster, ev, dataset, prices, config, run_id), run_id

    first, run1 = register_run(evaluation(0.9))
    second, run2 = register_run(evaluation(0.95, champion_rmse=0.9, champion_version="1"))
    third, _ = register_run(evaluation(0.8, champion_rmse=0.9, champion_version="1"))
    assert (first.promoted, second.promoted, third.promoted) == (True, False, True)

    v2 = client.get_model_version("m", "2")
    assert v2.tags["dataset_id"] == dataset.dataset_id and v2.tags["source_hash"] == "srchash"
    assert v2.tags["mlflow_run_id"] == run2 and "prefect_flow_run_id" in v2.tags and v2.tags["git_commit"]
    assert float(v2.tags["skill_vs_naive"]) == pytest.approx(0.05)
    assert float(v2.tags["test_model_rmse"]) == pytest.approx(0.95)
    assert v2.tags["promotion"] == "rejected" and "does not beat champion v1" in v2.tags["promotion_reason"]
    assert client.get_run(run2).data.tags["promotion"] == "rejected"
    assert client.get_run(run2).data.metrics["promoted"] == 0.0
    aliases = {a: str(client.get_model_version_by_alias("m", a).version) for a in ("champion", "challenger")}
    assert aliases == {"champion": "3", "challenger": "3"}

    assert main(["promote", "--model", "m", "--version", "2", "--reason", "hotfix data", "--by", "ana"]) == 0
    assert str(client.get_model_version_by_alias("m", "champion").version) == "2"
    assert main(["rollback", "--model", "m", "--reason", "v2 drifted", "--by", "ben"]) == 0
    assert str(client.get_model_version_by_alias("m", "champion").version) == "3"
    assert main(["rollback", "--model", "m", "--by", "ben"]) == 0  # each rollback goes one further back
    assert str(client.get_model_version_by_alias("m", "champion").version) == "1"
    capsys.readouterr()

    assert main(["rollback", "--model", "m"]) == 1  # nothing before v1
    assert "no previous champion" in capsys.readouterr().err
    assert main(["promote", "--model", "m", "--version", "9"]) == 1
    assert "no version '9'" in capsys.readouterr().err
    assert main(["promote", "--model", "m", "--version", "1"]) == 1
    assert "already the champion" in capsys.readouterr().err

    assert main(["models", "--model", "m", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    history = [(e["action"], e["version"], e["previous"], e["by"]) for e in listing["champion_history"]]
    assert history == [
        ("promote", "1", None, f"train_pipeline run {run1}"),
        ("keep", "2", "1", f"train_pipeline run {run2}"),
        ("promote", "3", "1", history[2][3]),
        ("promote", "2", "3", "ana"),
        ("rollback", "3", "2", "ben"),
        ("rollback", "1", "3", "ben"),
    ]
    assert listing["champion_history"][4]["why"] == "v2 drifted" and listing["champion_history"][4]["at"]
    assert [v["version"] for v in listing["versions"]] == ["3", "2", "1"]
    assert listing["versions"][2]["aliases"] == ["champion"]
    assert client.get_model_version("m", "2").tags["champion.promote_by"] == "ana"

    assert main(["models", "--model", "m"]) == 0
    text = capsys.readouterr().out
    assert "champion history" in text and "rollback v1 (was v3)  by ben" in text


def _model_with_versions(client, tmp_path, n: int) -> None:
    client.create_registered_model("cas")
    for _ in range(n):
        client.create_model_version("cas", source=(tmp_path / "m").as_uri())


def test_promotion_is_compare_and_set_and_a_refusal_is_recorded(mlflow_store, tmp_path):
    from tasks.register import ChampionMoved, move_champion

    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    _model_with_versions(client, tmp_path, 3)
    move_champion(client, "cas", "1", "promote", "first run", "run-a", expected=None)
    with pytest.raises(ChampionMoved, match="moved from no champion to v1"):
        move_champion(client, "cas", "2", "promote", "second run", "run-b", expected=None)  # decided before v1 moved in
    assert str(client.get_model_version_by_alias("cas", "champion").version) == "1"
    move_champion(client, "cas", "3", "promote", "third run", "run-c", expected="1")
    history = champion_history(client, "cas")
    assert [(e["action"], e["version"], e["previous"]) for e in history] == [
        ("promote", "1", None), ("refused", "2", "1"), ("promote", "3", "1"),
    ]
    assert champion_stack(history) == ["1", "3"]


def test_moves_at_once_each_get_their_own_history_entry(mlflow_store, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from tasks.register import history_key, move_champion

    keys = [history_key() for _ in range(200)]
    assert len(set(keys)) == 200 and keys == sorted(keys)
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    _model_with_versions(client, tmp_path, 4)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda v: move_champion(client, "cas", v, "promote", f"v{v}"), ["1", "2", "3", "4"]))
    history = champion_history(client, "cas")
    assert sorted(e["version"] for e in history) == ["1", "2", "3", "4"]
    # each move saw the one before it: the chain of `previous` is unbroken
    assert [e["previous"] for e in history] == [None] + [e["version"] for e in history[:-1]]
    assert str(client.get_model_version_by_alias("cas", "champion").version) == history[-1]["version"]
