"""A registered version whose artifact files are gone: `forecast` says the version exists but its files
are missing; `promote` and `rollback` refuse to make it champion unless `--force`."""

from __future__ import annotations

import shutil

import pytest
from price_frames import make_prices
from tiny_models import MODEL, untrained_forecaster

from tickerflow.cli import main


@pytest.fixture
def two_versions(mlflow_store, tf_home):
    """v1 then v2 promoted by hand (so v1 is the one a rollback goes back to); v1's files deleted."""
    from tickerflow.tracking.models import log_version
    from tickerflow.tracking.store import experiment_id, use_tracking
    from tickerflow_model.config import WindowConfig
    from tickerflow_model.window_dataset import build_window_dataset

    prices = make_prices(n_days=200, tickers=("AAA", "BBB"), seed=5)
    dataset = build_window_dataset(prices, WindowConfig(lookback=10, horizon=3, min_history=50), "s", tf_home / "w")
    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id
    for seed in (11, 12):
        log_version(untrained_forecaster(dataset, 1.0, seed=seed), prices, run_id, MODEL)
    for version in ("1", "2"):
        assert main(["promote", "--model", MODEL, "--version", version]) == 0
    model_id = client.get_model_version(MODEL, "1").source.rsplit("/", 1)[-1]
    shutil.rmtree(tf_home / "mlartifacts" / "models" / model_id)  # a wiped bucket, a restored backup without files
    return client, prices


def champion_of(client) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines() == [err] and err.startswith(f"tickerflow {command}: ")
    return err


def test_promote_and_rollback_refuse_a_version_that_cannot_load_unless_forced(two_versions, capsys):
    client, _ = two_versions
    capsys.readouterr()
    assert main(["promote", "--model", MODEL, "--version", "1"]) == 1
    line = one_line(capsys, "promote")
    assert "version 1 of" in line and "exists but cannot be loaded" in line and "--force" in line
    assert champion_of(client) == "2"
    assert main(["rollback", "--model", MODEL]) == 1
    line = one_line(capsys, "rollback")
    assert "version 1 of" in line and "exists but cannot be loaded" in line and "--force" in line
    assert champion_of(client) == "2"
    assert main(["rollback", "--model", MODEL, "--force"]) == 0
    assert champion_of(client) == "1"


def test_forecast_says_the_champion_exists_but_its_files_are_missing(two_versions, prefect_harness, tmp_path, capsys):
    client, prices = two_versions
    assert main(["rollback", "--model", MODEL, "--force"]) == 0
    data = tmp_path / "recent.csv"
    prices.to_csv(data, index=False)
    capsys.readouterr()
    out = tmp_path / "forecasts.parquet"
    assert main(["forecast", "--data", str(data), "--out", str(out), "--model-uri", f"models:/{MODEL}@champion"]) == 1
    line = one_line(capsys, "forecast")
    assert f"models:/{MODEL}@champion is version 1 of the registry, but its files are missing" in line
    assert not out.exists()
