"""End to end through Prefect: the real flow, a real MLflow store, the registered model loaded back."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tickerflow.cli import main
from tickerflow.flows.train_pipeline import train_pipeline
from tickerflow_model.config import SAMPLE_DATA, PipelineConfig

pytestmark = pytest.mark.slow


def small_config(source) -> PipelineConfig:
    return PipelineConfig.model_validate({"ingest": {"source": str(source)}, "train": {"epochs": 2, "batch_size": 256}})


def test_pipeline_registers_a_champion_that_forecasts_prices(
    prefect_harness, mlflow_store, small_sample_csv, tf_home, tmp_path
):
    summary = train_pipeline(small_config(small_sample_csv))

    assert summary.model_name == "tickerflow-gru" and summary.model_version == "1"
    for name in ("model", "naive"):
        assert {"rmse", "mae", "mape", "directional_accuracy"} <= set(summary.metrics[name])
    assert summary.metrics["naive"]["rmse"] > 0

    client = mlflow.MlflowClient(mlflow_store)
    run = client.get_run(summary.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["prefect.flow_run_id"]
    assert run.data.params["train.epochs"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert "test_model_rmse" in run.data.metrics and "test_naive_rmse" in run.data.metrics
    # a champion always exists after a run: the GRU (version 1) or the best baseline (version 2)
    for name in ("model", "static_quantile", "rolling_quantile", "ewma"):
        assert {"pinball", "coverage_80", "coverage_90", "width_80", "width_90"} <= set(summary.metrics[name])
    champion = client.get_model_version_by_alias("tickerflow-gru", "champion")
    assert str(champion.version) == summary.champion_version
    assert champion.tags["forecaster"] == summary.champion_forecaster
    assert summary.promoted is (summary.champion_forecaster == "gru")

    # written datasets: the window dataset with its manifest
    manifests = list((tf_home / "windows").glob("*/manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert set(manifest["tickers"]) == {"AAPL", "MSFT"}
    # ...recorded as the run's training input, with the dataset id as its digest
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [manifest["dataset_id"]]
    assert run.data.tags["dataset_id"] == manifest["dataset_id"]

    # the registered model loads in a process where tickerflow is not importable, next to a
    # user's own `models` and `tasks` packages, and returns forecasts in price units
    recent = pd.read_csv(small_sample_csv).groupby("Ticker").tail(120)
    recent.columns = [c.lower().replace(" ", "_") for c in recent.columns]
    recent.to_csv(tmp_path / "recent.csv", index=False)
    for shadow in ("models", "tasks", "tickerflow_model"):
        (tmp_path / "user" / shadow).mkdir(parents=True)
        (tmp_path / "user" / shadow / "__init__.py").write_text("raise ImportError('user package')\n")
    uri = "models:/tickerflow-gru@champion"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(tmp_path / "user")!r}]
        sys.path.append({sysconfig.get_paths()["purelib"]!r})  # site-packages without the editable .pth
        try:
            import tickerflow_model
        except ImportError:
            pass
        else:
            raise SystemExit("tickerflow_model should not be importable here")
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({mlflow_store!r})
        df = pd.read_csv({str(tmp_path / "recent.csv")!r}, parse_dates=["date"])
        out = mlflow.pyfunc.load_model({uri!r}).predict(df)
        out.to_json({str(tmp_path / "out.json")!r}, orient="records", date_format="iso")
        """
    )
    proc = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = pd.read_json(tmp_path / "out.json", orient="records")
    assert list(out.columns) == [
        "ticker",
        "date",
        "horizon",
        "forecast_close",
        "q01",
        "q025",
        "q05",
        "q10",
        "q25",
        "q50",
        "q75",
        "q90",
        "q95",
        "q975",
        "q99",
        "base_price",
        "price_column",
    ]
    assert sorted(out["ticker"]) == ["AAPL", "MSFT"]
    # priced in the input's own close (the price a chart shows), which the frame names, from its last value
    last = recent.sort_values("date").groupby("ticker")["close"].last()
    assert set(out["price_column"]) == {"close"}
    assert all(row.base_price == pytest.approx(last[row.ticker]) for row in out.itertuples())
    for row in out.itertuples():
        # a one-day forecast of a large-cap stock lies within 20% of the last price
        assert 0.8 * last[row.ticker] < row.forecast_close < 1.2 * last[row.ticker]
        assert pd.Timestamp(row.date) > pd.Timestamp(recent["date"].max())


def test_on_a_pure_random_walk_a_baseline_is_champion_and_batch_forecast_serves_it(
    prefect_harness, mlflow_store, tf_home, tmp_path
):
    from price_frames import make_prices

    from tickerflow.flows.batch_forecast import batch_forecast
    from tickerflow.tasks.forecast import output_columns
    from tickerflow_model.baselines import DISTRIBUTION_BASELINES
    from tickerflow_model.quantiles import QUANTILE_LEVELS

    # i.i.d. returns of constant volatility: nothing to learn, the training period's quantiles are the truth
    prices = make_prices(n_days=900, tickers=("AAA", "BBB", "CCC"), seed=21)
    data = tmp_path / "random_walk.csv"
    prices.to_csv(data, index=False)
    config = PipelineConfig.model_validate(
        {"ingest": {"source": str(data)}, "window": {"lookback": 20}, "train": {"epochs": 1, "batch_size": 256}}
    )

    summary = train_pipeline(config)

    assert summary.champion_forecaster in DISTRIBUTION_BASELINES and summary.promoted is False
    assert (summary.model_version, summary.champion_version) == ("1", "2")
    client = mlflow.MlflowClient(mlflow_store)
    assert (
        client.get_model_version_by_alias("tickerflow-gru", "champion").tags["forecaster"]
        == summary.champion_forecaster
    )

    recent = tmp_path / "recent.csv"
    prices.groupby("ticker").tail(40).to_csv(recent, index=False)
    result = batch_forecast(data=str(recent), out=str(tmp_path / "forecasts.parquet"))
    frame = pd.read_parquet(tmp_path / "forecasts.parquet")
    assert list(frame.columns) == output_columns(QUANTILE_LEVELS) and result.model_version == "2"
    assert sorted(frame["ticker"].unique()) == ["AAA", "BBB", "CCC"]
    q = frame[["q05", "q10", "q25", "q50", "q75", "q90", "q95"]].to_numpy()
    assert (
        (q[:, 1:] >= q[:, :-1]).all()
        and (q[:, 0] < frame["forecast_close"]).all()
        and (q[:, -1] > frame["forecast_close"]).all()
    )


def test_missing_required_column_fails_cleanly_and_writes_nothing(
    prefect_harness, mlflow_store, small_sample_csv, tf_home, tmp_path, capsys
):
    bad = pd.read_csv(small_sample_csv).drop(columns=["Close", "Adj Close"])
    path = tmp_path / "no_close.csv"
    bad.to_csv(path, index=False)

    code = main(["run", "--data", str(path), "--epochs", "1"])

    err = capsys.readouterr().err
    assert code != 0
    assert "close" in err and "no_close.csv" in err
    assert "Traceback" not in err
    assert not (tf_home / "windows").exists()
    assert mlflow.MlflowClient(mlflow_store).search_registered_models() == []


def test_two_files_train_two_models_and_a_forecast_on_the_first_uses_the_first_files_champion(
    prefect_harness, mlflow_store, small_sample_csv, tf_home, tmp_path, capsys
):
    """Training on your own file never replaces the champion that serves another: the second file (one other
    ticker, close only) gets a model of its own, and each file's forecast finds its own champion."""
    from tickerflow_model.names import MODEL_NAME

    first = train_pipeline(small_config(small_sample_csv))
    raw = pd.read_csv(Path(__file__).resolve().parents[2] / SAMPLE_DATA)
    ibm = raw[raw["Ticker"] == "IBM"].tail(700)[["Date", "Ticker", "Close"]]
    second_csv = tmp_path / "ibm_close.csv"
    ibm.to_csv(second_csv, index=False)
    second = train_pipeline(small_config(second_csv))

    assert (first.model_name, second.model_name) == (MODEL_NAME, f"{MODEL_NAME}-ibm_close")
    client = mlflow.MlflowClient(mlflow_store)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == first.champion_version  # untouched by the second run
    capsys.readouterr()

    recent = pd.read_csv(small_sample_csv).groupby("Ticker").tail(120)
    recent.to_csv(tmp_path / "recent.csv", index=False)
    out = tmp_path / "forecasts.parquet"
    assert main(["forecast", "--data", str(tmp_path / "recent.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"from models:/{MODEL_NAME}@champion (version {first.champion_version})" in printed
    assert sorted(pd.read_parquet(out)["ticker"].unique()) == ["AAPL", "MSFT"]

    ibm.tail(120).to_csv(tmp_path / "ibm_recent.csv", index=False)
    assert main(["forecast", "--data", str(tmp_path / "ibm_recent.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"from models:/{MODEL_NAME}-ibm_close@champion (version {second.champion_version})" in printed
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "AAPL, MSFT (adj_close" in listing and "IBM (close)" in listing
