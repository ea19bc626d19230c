"""The register stage: versions with lineage, a baseline as champion, compare-and-set moves, the champion history."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from gate_scores import evaluation, scores
from prefect.logging import disable_run_logger
from price_frames import make_prices
from tiny_models import untrained_forecaster

from tickerflow.cli import main
from tickerflow.reporting import log_registration
from tickerflow.tasks.register import register
from tickerflow.tracking.registry import champion_history
from tickerflow.tracking.runs import TrackedRun
from tickerflow.tracking.store import experiment_id
from tickerflow_model.config import RegisterConfig, WindowConfig
from tickerflow_model.evaluation import Evaluation, evaluate_forecaster
from tickerflow_model.window_dataset import build_window_dataset


def test_versions_carry_lineage_and_the_champion_history_reads_back(prefect_harness, mlflow_store, tmp_path, capsys):
    prices = make_prices(n_days=200, seed=1)
    dataset = build_window_dataset(prices, WindowConfig(lookback=10, min_history=50), "srchash", tmp_path / "w")
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)  # both: MLflow leaves MLFLOW_REGISTRY_URI set
    config = RegisterConfig(model_name="m")
    seeds = iter(range(3))  # three runs, three different networks

    def register_run(ev: Evaluation):
        run_id = client.create_run(experiment_id(client)).info.run_id
        with disable_run_logger():
            forecaster = untrained_forecaster(dataset, 0.5, seed=next(seeds))
            registration = register.fn(forecaster, ev, dataset, prices, config, run_id, "m")
            log_registration.fn(registration, ev, config, TrackedRun(run_id))
            return registration, run_id

    first, run1 = register_run(evaluation(model=scores(0.5, skill=0.01)))
    second, run2 = register_run(evaluation("1", model=scores(0.6, skill=0.05), champion=scores(0.5)))
    third, _ = register_run(evaluation("1", model=scores(0.4, skill=0.02), champion=scores(0.5)))
    assert (first.promoted, second.promoted, third.promoted) == (True, False, True)
    assert (second.champion_version, second.champion_forecaster) == ("1", "gru")

    v2 = client.get_model_version("m", "2")
    assert v2.tags["dataset_id"] == dataset.dataset_id
    lineage = json.loads(v2.tags["lineage"])
    assert lineage["source_hash"] == "srchash" and lineage["git_commit"] and "prefect_flow_run_id" in lineage
    assert v2.run_id == run2  # the version's own run: no tag repeats it
    assert float(v2.tags["skill_vs_naive"]) == pytest.approx(0.05)
    assert json.loads(v2.tags["test_scores"])["rmse"] == pytest.approx(0.95)
    assert len(v2.tags) <= 11  # ten a person reads and the digest, not every forecaster's every score
    assert float(v2.tags["test_pinball"]) == pytest.approx(0.6) and v2.tags["forecaster"] == "gru"
    assert v2.tags["promotion"] == "rejected" and "champion v1 has the best pinball" in v2.tags["promotion_reason"]
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
    # the history is a table of runs in its own experiment, not tags on the registered model
    assert not [k for k in client.get_registered_model("m").tags if k.startswith("champion_history")]
    rows = client.search_runs([client.get_experiment_by_name("tickerflow-registry").experiment_id])
    assert sorted((r.data.tags["action"], r.data.tags["version"]) for r in rows) == sorted(h[:2] for h in history)
    assert [v["version"] for v in listing["versions"]] == ["3", "2", "1"]
    assert listing["versions"][2]["aliases"] == ["champion"]
    (move,) = json.loads(client.get_model_version("m", "2").tags["champion_moves"])
    assert move["action"] == "promote" and move["by"] == "ana"

    assert main(["models", "--model", "m"]) == 0
    text = capsys.readouterr().out
    assert "champion history" in text and "rollback v1 (was v3)  by ben" in text
    assert f"keep     v1 stays champion; v2 not promoted  by train_pipeline run {run2}: " in text
    v2_row = next(line for line in text.splitlines() if line.split()[:2] == ["2", "gru"])
    assert "+0.0500" in v2_row and "0.6000" in v2_row  # skill and pinball of version 2
    # the gate rejected v2, then ana promoted it by hand: the row says what happened last
    assert "promoted by ana at " in v2_row and v2_row.endswith(": hotfix data") and "rejected" not in v2_row
    v1_row = next(line for line in text.splitlines() if line.split()[:2] == ["1", "gru"])
    assert "made champion again by a rollback by ben at " in v1_row


def test_a_winning_baseline_is_registered_as_a_version_of_the_same_model_and_serves(
    prefect_harness, mlflow_store, tmp_path, capsys
):
    from tickerflow_model.forecaster import forecast_columns
    from tickerflow_model.quantiles import QUANTILE_LEVELS, quantile_columns

    prices = make_prices(n_days=200, seed=1)
    dataset = build_window_dataset(prices, WindowConfig(lookback=10, min_history=50), "srchash", tmp_path / "w")
    forecaster = untrained_forecaster(dataset, 0.5)
    ev = evaluate_forecaster(forecaster, dataset, prices)
    worst = 10 * max(ev.metrics[b]["pinball"] for b in ev.baselines)
    ev.metrics["model"]["pinball"] = ev.metrics["blend"]["pinball"] = worst  # the GRU loses, and so the blend
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    run_id = client.create_run(experiment_id(client)).info.run_id
    with disable_run_logger():
        config = RegisterConfig(model_name="m", coverage_tolerance=0.5)
        reg = register.fn(forecaster, ev, dataset, prices, config, run_id, "m")
        log_registration.fn(reg, ev, config, TrackedRun(run_id))

    winner = min(ev.baselines, key=lambda b: ev.metrics[b]["pinball"])
    assert not reg.promoted and (reg.version, reg.champion_version, reg.champion_forecaster) == ("1", "2", winner)
    champion = client.get_model_version_by_alias("m", "champion")
    assert str(champion.version) == "2" and champion.tags["forecaster"] == winner
    assert float(champion.tags["test_pinball"]) == pytest.approx(ev.metrics[winner]["pinball"], abs=1e-6)
    assert client.get_model_version("m", "1").tags["forecaster"] == "gru"
    assert str(client.get_model_version_by_alias("m", "challenger").version) == "1"
    assert client.get_run(run_id).data.tags["champion_forecaster"] == winner

    out = mlflow.pyfunc.load_model("models:/m@champion").predict(prices)
    assert list(out.columns) == forecast_columns(QUANTILE_LEVELS)
    assert (out[quantile_columns()].diff(axis=1).iloc[:, 1:] >= 0).all().all()

    assert main(["models", "--model", "m", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(v["version"], v["forecaster"]) for v in listing["versions"]] == [("2", winner), ("1", "gru")]
    assert main(["models", "--model", "m"]) == 0
    assert winner in capsys.readouterr().out


def test_a_winning_blend_registers_the_gru_and_garch_together_and_serves_their_average(
    prefect_harness, mlflow_store, tmp_path
):
    from tickerflow_model.blend import BlendForecaster
    from tickerflow_model.quantiles import quantile_columns

    prices = make_prices(n_days=600, seed=2)
    dataset = build_window_dataset(prices, WindowConfig(lookback=10, min_history=50), "srchash", tmp_path / "w")
    forecaster = untrained_forecaster(dataset, 0.5)
    ev = evaluate_forecaster(forecaster, dataset, prices)
    assert "blend" in ev.metrics and "garch" in ev.metrics
    ev.metrics["blend"]["pinball"] = 0.5 * min(m["pinball"] for n, m in ev.metrics.items() if "pinball" in m)
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    run_id = client.create_run(experiment_id(client)).info.run_id
    with disable_run_logger():
        config = RegisterConfig(model_name="m", coverage_tolerance=0.5)
        reg = register.fn(forecaster, ev, dataset, prices, config, run_id, "m")
    assert (reg.champion_version, reg.champion_forecaster) == ("2", "blend")

    served = mlflow.pyfunc.load_model("models:/m@champion").predict(prices)
    expected = BlendForecaster(forecaster, ev.baselines["garch"]).forecast_frame(prices)
    assert list(served.columns) == list(expected.columns)
    np.testing.assert_allclose(
        served[quantile_columns()].to_numpy(), expected[quantile_columns()].to_numpy(), rtol=1e-9
    )
    # the blend's quantiles are the geometric mean of the two parts' prices, level by level
    gru = forecaster.forecast_frame(prices).set_index(["ticker", "date", "horizon"])
    garch = ev.baselines["garch"].forecast_frame(prices).set_index(["ticker", "date", "horizon"])
    keys = pd.MultiIndex.from_frame(served[["ticker", "date", "horizon"]])
    for col in quantile_columns():
        geometric = np.sqrt(gru[col].reindex(keys).to_numpy() * garch[col].reindex(keys).to_numpy())
        np.testing.assert_allclose(served[col].to_numpy(), geometric, rtol=1e-9)


def test_models_flags_a_champion_that_could_not_be_scored(prefect_harness, mlflow_store, tmp_path, tf_home, capsys):
    from tickerflow.reporting import log_evaluation
    from tickerflow.tasks.evaluate import evaluate, load_champion
    from tickerflow_model.config import EvaluateConfig

    prices = make_prices(n_days=200, seed=1)
    dataset = build_window_dataset(prices, WindowConfig(lookback=10, min_history=50), "srchash", tmp_path / "w")
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    first = client.create_run(experiment_id(client)).info.run_id
    with disable_run_logger():
        register.fn(
            untrained_forecaster(dataset, 0.5),
            evaluation(model=scores(0.5)),
            dataset,
            prices,
            RegisterConfig(model_name="m"),
            first,
            "m",
        )
        (stored,) = tf_home.rglob("weights.pt")
        stored.write_bytes(b"broken")  # the champion's weights are gone bad
        second = client.create_run(experiment_id(client)).info.run_id
        result = evaluate.fn(untrained_forecaster(dataset, 0.5, seed=1), dataset, prices, load_champion.fn("m"))
        log_evaluation.fn(result, "m", EvaluateConfig(), TrackedRun(second))

    assert result.champion_error and "champion" not in result.metrics
    assert client.get_run(second).data.tags["champion_not_compared"].startswith("v1: could not be loaded")
    assert main(["models", "--model", "m", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert listing["versions"][0]["scoring_error"].startswith("could not be loaded or run")
    assert main(["models", "--model", "m"]) == 0
    assert "NOT SCORABLE" in capsys.readouterr().out


def test_a_rerun_that_fits_the_same_model_registers_nothing_new_and_promotes_nothing(
    prefect_harness, mlflow_store, tmp_path
):
    """The same data, config and seed give the same network: its version is reused (same bundle digest), and
    the champion it became on the first run stays; a baseline that wins again is the version it was."""
    prices = make_prices(n_days=200, seed=1)
    dataset = build_window_dataset(prices, WindowConfig(lookback=10, min_history=50), "srchash", tmp_path / "w")
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    config = RegisterConfig(model_name="m")

    def run(ev: Evaluation):
        run_id = client.create_run(experiment_id(client)).info.run_id
        with disable_run_logger():
            return register.fn(untrained_forecaster(dataset, 0.5, seed=4), ev, dataset, prices, config, run_id, "m")

    first = run(evaluation(model=scores(0.5)))
    # the second run scores the identical network against itself as champion: a tie
    again = run(evaluation("1", model=scores(0.5), champion=scores(0.5), champion_t={"model": 0.0}))
    assert (first.new, again.new) == (True, False) and again.version == first.version == "1"
    assert not again.promoted and again.champion_version == "1"
    assert [str(v.version) for v in client.search_model_versions("name='m'")] == ["1"]
    history = [e["action"] for e in champion_history("m")]
    assert history == ["promote", "keep"]


def test_a_run_on_other_tickers_competes_in_a_model_of_its_own_and_a_named_one_is_not_replaced(
    prefect_harness, mlflow_store, tmp_path, capsys
):
    """The sample's champion stays the sample's: a run on MSFT.csv registers under tickerflow-gru-MSFT; naming
    tickerflow-gru for it is refused (before training) unless register.replace_universe says so."""
    from tickerflow.tasks.register import choose_model
    from tickerflow_model.names import MODEL_NAME
    from tickerflow_model.universe import UniverseConflict

    window = WindowConfig(lookback=10, min_history=50)
    sample_prices = make_prices(n_days=200, tickers=("AAA", "BBB", "CCC"), seed=1)
    sample = build_window_dataset(sample_prices, window, "src1", tmp_path / "w")
    msft_prices = make_prices(n_days=200, tickers=("MSFT",), seed=2)
    msft = build_window_dataset(msft_prices, window, "src2", tmp_path / "w")
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    with disable_run_logger():
        assert choose_model.fn(sample, RegisterConfig(), "data/sample.csv") == MODEL_NAME  # nothing registered yet
        run_id = client.create_run(experiment_id(client)).info.run_id
        register.fn(
            untrained_forecaster(sample, 0.5),
            evaluation(model=scores(0.5)),
            sample,
            sample_prices,
            RegisterConfig(),
            run_id,
            MODEL_NAME,
        )
        assert choose_model.fn(sample, RegisterConfig(), "data/sample.csv") == MODEL_NAME
        assert choose_model.fn(msft, RegisterConfig(), "/home/me/MSFT.csv") == f"{MODEL_NAME}-MSFT"
        with pytest.raises(
            UniverseConflict, match=r"serves AAA, BBB, CCC \(close; high, low, open\); this run has MSFT"
        ):
            choose_model.fn(msft, RegisterConfig(model_name=MODEL_NAME), "/home/me/MSFT.csv")
        told = RegisterConfig(model_name=MODEL_NAME, replace_universe=True)
        assert choose_model.fn(msft, told, "/home/me/MSFT.csv") == MODEL_NAME

    universe = json.loads(client.get_model_version(MODEL_NAME, "1").tags["universe"])
    assert (universe["tickers"], universe["price"], universe["count"]) == (["AAA", "BBB", "CCC"], "close", 3)
    assert main(["models"]) == 0  # every registered model, and what its champion serves
    out = capsys.readouterr().out
    assert f"{MODEL_NAME}" in out and "v1 (gru)" in out and "AAA, BBB, CCC (close; high, low, open)" in out
