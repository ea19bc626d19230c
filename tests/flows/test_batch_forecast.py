"""The batch_forecast flow: champion from the registry, Parquet out, MLflow run and Prefect artifact, short tickers skipped."""

from __future__ import annotations

import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from prefect.artifacts import Artifact
from price_frames import make_prices

from tickerflow.cli import main
from tickerflow.flows.batch_forecast import batch_forecast
from tickerflow.tasks.forecast import output_columns
from tickerflow.tracking.store import FORECAST_EXPERIMENT
from tickerflow_model.quantiles import QUANTILE_LEVELS

pytestmark = pytest.mark.slow


@pytest.fixture
def champion_home(champion, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TICKERFLOW_HOME", str(champion.home))
    # MLflow exports the URIs it is pointed at; pre-set them so the test's end removes them again
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{champion.home / 'mlflow.db'}")
    yield champion
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def test_batch_forecast_writes_the_champions_forecasts_and_skips_short_tickers(
    prefect_harness, champion_home, tmp_path
):
    recent = champion_home.prices.groupby("ticker").tail(champion_home.forecaster.min_rows + 3)
    short = make_prices(n_days=6, tickers=("CCC",), seed=9)
    data = tmp_path / "latest.csv"
    pd.concat([recent, short]).to_csv(data, index=False)
    out = tmp_path / "out" / "forecasts.parquet"

    result = batch_forecast(data=str(data), out=str(out))

    frame = pd.read_parquet(out)
    assert list(frame.columns) == output_columns(
        QUANTILE_LEVELS
    )  # ticker, date, horizon, forecast_close, q05 .. q95, model_version
    assert sorted(frame["ticker"].unique()) == ["AAA", "BBB"]
    assert (frame["model_version"] == str(champion_home.version)).all()
    expected = champion_home.forecaster.forecast_frame(recent)
    np.testing.assert_allclose(frame["forecast_close"], expected["forecast_close"], rtol=1e-6)
    np.testing.assert_allclose(frame["q05"], expected["q05"], rtol=1e-6)
    np.testing.assert_allclose(frame["q95"], expected["q95"], rtol=1e-6)
    assert frame["horizon"].tolist() == [1, 2, 3, 1, 2, 3]
    assert list(result.written.skipped) == ["CCC"] and "6 rows" in result.written.skipped["CCC"]

    store = f"sqlite:///{champion_home.home / 'mlflow.db'}"
    client = mlflow.MlflowClient(store, store)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["model_version"] == str(champion_home.version)
    assert "CCC" in run.data.tags["skipped_tickers"] and run.data.metrics["forecast_rows"] == 6
    assert client.get_experiment(run.info.experiment_id).name == FORECAST_EXPERIMENT
    assert [f.path for f in client.list_artifacts(run.info.run_id, "forecasts")] == ["forecasts/forecasts.parquet"]
    artifact = Artifact.get("batch-forecast")
    assert artifact is not None and artifact.type == "table" and "AAA" in str(artifact.data)
    summary = Artifact.get("validation-summary")  # the daily flow reports its validation too
    assert summary is not None and "CCC" in str(summary.data)


def test_no_usable_ticker_is_a_clear_error_and_writes_nothing(prefect_harness, champion_home, tmp_path, capsys):
    data = tmp_path / "too_short.csv"
    make_prices(n_days=5, tickers=("AAA", "CCC"), seed=2).to_csv(data, index=False)
    out = tmp_path / "forecasts.parquet"

    code = main(["forecast", "--data", str(data), "--out", str(out)])

    err = capsys.readouterr().err
    assert code == 1
    assert "AAA" in err and "CCC" in err and "Traceback" not in err
    assert not out.exists()


def test_tickers_the_champion_was_not_trained_on_are_skipped_in_one_line_and_missing_columns_refused(
    prefect_harness, champion_home, tmp_path, capsys
):
    from tickerflow.tracking.models import tag_version, version_tags
    from tickerflow_model.names import MODEL_NAME
    from tickerflow_model.universe import UNIVERSE_TAG, Universe

    version = str(champion_home.version)
    trained = Universe(("AAA", "BBB"), "close", champion_home.forecaster.spec.window.columns)
    tag_version(MODEL_NAME, version, {UNIVERSE_TAG: trained.to_tag()})
    try:
        rows = champion_home.forecaster.min_rows + 3
        recent = champion_home.prices.groupby("ticker").tail(rows)
        newcomers = make_prices(n_days=rows, tickers=("DDD", "EEE"), seed=9)  # full history, never trained on
        data = tmp_path / "latest.csv"
        pd.concat([recent, newcomers]).to_csv(data, index=False)
        out = tmp_path / "forecasts.parquet"

        assert main(["forecast", "--data", str(data), "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert sorted(pd.read_parquet(out)["ticker"].unique()) == ["AAA", "BBB"]
        assert f"skipped 2 tickers (DDD, EEE): not among the 2 tickers version {version} was trained on" in printed
        assert f"models:/{MODEL_NAME}@champion" in printed  # the champion that serves AAA and BBB, found by itself

        reads = [c for c in champion_home.forecaster.spec.window.columns if c != "close"]
        assert reads, "the tiny champion reads columns besides the price"
        recent.drop(columns=reads).to_csv(data, index=False)
        out.unlink()
        assert main(["forecast", "--data", str(data), "--out", str(out), "--model", MODEL_NAME]) == 1
        err = capsys.readouterr().err
        assert f"reads {', '.join(reads)}, which this data lacks" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and not out.exists()
    finally:
        tag_version(MODEL_NAME, version, {UNIVERSE_TAG: ""})
        assert not version_tags(MODEL_NAME, version).get(UNIVERSE_TAG)
