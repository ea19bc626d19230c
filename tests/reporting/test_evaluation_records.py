"""The evaluation's records: report files and charts, bounded MLflow metric keys, the test-metrics artifact."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from price_frames import make_prices
from tiny_models import EVAL_WINDOWS, untrained_forecaster

from tickerflow.reporting.evaluation import write_reports
from tickerflow.tracking.runs import TrackedRun
from tickerflow.tracking.store import experiment_id
from tickerflow_model.baselines import DISTRIBUTION_BASELINES
from tickerflow_model.config import EvaluateConfig
from tickerflow_model.evaluation import evaluate_forecaster
from tickerflow_model.window_dataset import build_window_dataset

CONFIG = EVAL_WINDOWS


def run_evaluate_task(prices, root, client):
    from prefect.logging import disable_run_logger

    from tickerflow.reporting import log_evaluation
    from tickerflow.tasks.evaluate import evaluate, load_champion

    dataset = build_window_dataset(prices, CONFIG, "src", root)
    run_id = client.create_run(experiment_id(client)).info.run_id
    with disable_run_logger():
        champion = load_champion.fn("no-champion-yet")
        result = evaluate.fn(untrained_forecaster(dataset, 1.0), dataset, prices, champion)
        log_evaluation.fn(result, "no-champion-yet", EvaluateConfig(fan_charts=2), TrackedRun(run_id))
    return result, run_id


def test_reports_hold_the_tables_predictions_overview_and_fan_charts(tmp_path):
    prices = make_prices(n_days=200, tickers=("AAA", "BBB", "CCC", "DDD", "EEE"), seed=3)
    dataset = build_window_dataset(prices, CONFIG, "src", tmp_path / "windows")
    result = evaluate_forecaster(untrained_forecaster(dataset, 1.0), dataset, prices)
    write_reports(result, tmp_path / "report", EvaluateConfig(fan_charts=1, fan_chart_tickers=("CCC", "ZZZ")))

    out = tmp_path / "report"
    assert json.loads((out / "metrics.json").read_text())["skill_vs_naive"] == pytest.approx(result.skill)
    table = pd.read_csv(out / "metrics.csv")
    assert {"all", "h1", "h2", "AAA", "BBB", "CCC", "DDD", "EEE"} == set(table["scope"])
    per_ticker = pd.read_parquet(out / "metrics_per_ticker.parquet")
    assert len(per_ticker) == 5 * len(result.metrics)
    ewma_aaa = per_ticker[(per_ticker["ticker"] == "AAA") & (per_ticker["forecaster"] == "ewma")]
    assert ewma_aaa["pinball"].item() == pytest.approx(result.per_ticker["AAA"]["ewma"]["pinball"])
    preds = pd.read_parquet(out / "test_predictions.parquet")
    assert {"ticker", "date", "horizon", "forecast", "actual", "naive", "q05", "q50", "q95"} <= set(preds.columns)
    assert (preds[["q05", "q10", "q25", "q50", "q75", "q90", "q95"]].diff(axis=1).iloc[:, 1:] >= 0).all().all()
    assert len(preds) == result.n_windows
    # the best and the worst ticker by the model's skill, then the one named (an unknown name is ignored)
    ranking = list(result.ticker_ranking().index)
    expected = [ranking[0], ranking[-1]] + (["CCC"] if "CCC" not in (ranking[0], ranking[-1]) else [])
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(["overview.png"] + [f"fan_{i:03d}_{t}.png" for i, t in enumerate(expected)])
    assert all((out / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    markdown = (out / "metrics.md").read_text()
    assert f"| {ranking[0]} | model |" in markdown and f"| {ranking[-1]} | model |" in markdown
    assert not any(f"| {t} | model |" in markdown for t in ranking[1:-1])  # only the top and bottom tickers


def test_evaluate_task_logs_metrics_reports_and_an_artifact_linking_the_run(
    prefect_harness, prices, mlflow_store, tmp_path
):
    from prefect.artifacts import Artifact

    from tickerflow.reporting.training import finish_training_run
    from tickerflow.tasks.register import Registration

    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    result, run_id = run_evaluate_task(prices, tmp_path / "w", client)
    summary = finish_training_run.fn(
        TrackedRun(run_id), result, Registration("m", "1", False, "because", "models:/m/1", "2", "ewma")
    )

    metrics = client.get_run(run_id).data.metrics
    assert metrics["test_skill_vs_naive"] == pytest.approx(result.skill)
    assert metrics["test_drift_skill"] == pytest.approx(result.metrics["drift"]["skill"])
    assert metrics["test_ewma_pinball"] == pytest.approx(result.metrics["ewma"]["pinball"])
    assert metrics["test_h2_model_coverage_80"] == pytest.approx(result.per_horizon["h2"]["model"]["coverage_80"])
    assert not any(k.startswith("test_AAA") for k in metrics)  # per-ticker figures are a table, not metric keys
    logged = {f.path for f in client.list_artifacts(run_id, "evaluation")}
    assert {
        "evaluation/metrics.csv",
        "evaluation/metrics.json",
        "evaluation/test_predictions.parquet",
        "evaluation/metrics_per_ticker.csv",
        "evaluation/metrics_per_ticker.parquet",
        "evaluation/per_ticker_table.json",
        "evaluation/overview.png",
    } <= logged
    table = client.load_table(experiment_id(client), "evaluation/per_ticker_table.json", run_ids=[run_id])
    assert set(table["ticker"]) == {"AAA", "BBB"} and "pinball" in table.columns
    markdown = Artifact.get("test-metrics").data
    # an http link into the MLflow UI that `tickerflow ui` serves, not a runs:/ URI that no browser opens
    assert f"(http://127.0.0.1:5000/#/experiments/{experiment_id(client)}/runs/{run_id})" in markdown
    assert "runs:/" not in markdown and "static_quantile" in markdown and f"{result.skill:+.4f}" in markdown

    # the --json summary: point metrics for all, distribution scores for the model and each distribution baseline
    decoded = json.loads(summary.to_json())
    assert set(decoded["metrics"]) == {"model", "naive", "seasonal_naive", "drift", *DISTRIBUTION_BASELINES, "blend"}
    for name in ("model", *DISTRIBUTION_BASELINES):
        assert {"pinball", "coverage_80", "coverage_90", "width_80", "width_90", "rmse", "skill"} <= set(
            decoded["metrics"][name]
        )
    assert decoded["promoted"] is False and decoded["reason"] == "because"
    assert decoded["champion_forecaster"] == "ewma" and decoded["champion_version"] == "2"
    assert decoded["skill_vs_naive"] == pytest.approx(result.skill)


def test_a_run_with_50_tickers_logs_as_many_metric_keys_as_one_with_5(prefect_harness, mlflow_store, tmp_path):
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    counts = {}
    for n in (5, 50):
        prices = make_prices(n_days=120, tickers=tuple(f"T{i:02d}" for i in range(n)), seed=n)
        _, run_id = run_evaluate_task(prices, tmp_path / f"w{n}", client)
        keys = client.get_run(run_id).data.metrics
        fans = [f for f in client.list_artifacts(run_id, "evaluation") if f.path.endswith(".png") and "/fan_" in f.path]
        counts[n] = (sorted(keys), len(fans))
    assert counts[5][0] == counts[50][0] and len(counts[5][0]) <= 250
    assert counts[5][1] == counts[50][1] == 4  # the 2 best and the 2 worst tickers
