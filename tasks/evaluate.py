"""Evaluate: the model, the naive forecast and the current champion on the same test windows, in prices."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from tasks.tracking import run_url, use_tracking
from tasks.window import WindowDataset, read_split
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.metrics import METRIC_NAMES, forecast_metrics, skill

CHAMPION = "champion"


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, float]]  # forecaster name -> metric -> value, on the whole test split
    per_ticker: dict[str, dict[str, dict[str, float]]]  # ticker -> forecaster -> metric -> value
    skill: float  # 1 - RMSE_model / RMSE_naive
    n_windows: int
    champion_version: str | None = None
    predictions: pd.DataFrame = field(default=None, repr=False)

    def table(self) -> str:
        """Markdown metrics table (overall, then per ticker)."""
        head = "| scope | forecaster | " + " | ".join(METRIC_NAMES) + " |"
        lines = [head, "|" + "---|" * (len(METRIC_NAMES) + 2)]
        scopes = [("all", self.metrics)] + sorted(self.per_ticker.items())
        for scope, by_name in scopes:
            for name, m in by_name.items():
                lines.append(f"| {scope} | {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRIC_NAMES) + " |")
        return "\n".join(lines)


def test_predictions(forecaster: Forecaster, dataset: WindowDataset) -> pd.DataFrame:
    """One row per test window and horizon step: forecast, actual and naive in price units."""
    x, y, index = read_split(dataset, "test")
    horizon = dataset.spec.horizon
    cum = forecaster.predict_log_returns(x)  # (N, H)
    base = index["base_price"].to_numpy()  # (N,)
    actual = base[:, None] * np.exp(y.astype(np.float64) * dataset.scaler.target_scale)  # (N, H)
    return pd.DataFrame(
        {
            "ticker": np.repeat(index["ticker"].to_numpy(), horizon),
            "base_date": np.repeat(index["base_date"].to_numpy(), horizon),
            "horizon": np.tile(np.arange(1, horizon + 1), len(index)),
            "base_price": np.repeat(base, horizon),
            "forecast": (base[:, None] * np.exp(cum)).reshape(-1),
            "actual": actual.reshape(-1),
        }
    ).assign(naive=lambda d: d["base_price"])


def score_champion(champion_uri: str, prices: pd.DataFrame, predictions: pd.DataFrame) -> pd.Series:
    """The champion's forecasts for exactly the test windows (matched on ticker, base date, horizon).

    The champion sees the raw prices and builds its own windows, so a champion with another
    lookback or scaler is still compared on the same target days.
    """
    model = mlflow.pyfunc.load_model(champion_uri)
    tickers = predictions["ticker"].unique()
    backtest = model.predict(prices[prices["ticker"].isin(tickers)], params={"all_dates": True})
    keyed = backtest.set_index(["ticker", "base_date", "horizon"])["forecast_close"]
    keys = pd.MultiIndex.from_frame(predictions[["ticker", "base_date", "horizon"]])
    return pd.Series(keyed.reindex(keys).to_numpy(), index=predictions.index)


COLUMN = {"model": "forecast", "naive": "naive", "champion": "champion"}


def metric_tables(predictions: pd.DataFrame, names: list[str]) -> tuple[dict, dict]:
    def block(d: pd.DataFrame) -> dict:
        return {n: forecast_metrics(d[COLUMN[n]], d["actual"], d["base_price"]) for n in names}

    per_ticker = {str(t): block(g) for t, g in predictions.groupby("ticker")}
    return block(predictions), per_ticker


def safe_metric_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def evaluate_forecaster(
    forecaster: Forecaster, dataset: WindowDataset, prices: pd.DataFrame, champion_uri: str | None
) -> Evaluation:
    """Plain function behind the task."""
    predictions = test_predictions(forecaster, dataset)
    names = ["model", "naive"]
    if champion_uri:
        predictions["champion"] = score_champion(champion_uri, prices, predictions)
        if predictions["champion"].isna().any():
            # a champion that cannot score every window is compared on none: the comparison must be fair
            predictions = predictions.drop(columns="champion")
        else:
            names.append("champion")
    overall, per_ticker = metric_tables(predictions, names)
    return Evaluation(
        metrics=overall,
        per_ticker=per_ticker,
        skill=skill(overall["model"]["rmse"], overall["naive"]["rmse"]),
        n_windows=int(len(predictions)),
        predictions=predictions,
    )


def champion_uri_for(model_name: str) -> tuple[str | None, str | None]:
    client = use_tracking()
    try:
        mv = client.get_model_version_by_alias(model_name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None, None
    return f"models:/{model_name}@{CHAMPION}", mv.version


@task(name="evaluate")
def evaluate(
    forecaster: Forecaster, dataset: WindowDataset, prices: pd.DataFrame, model_name: str, run_id: str
) -> Evaluation:
    logger = get_run_logger()
    champion_uri, champion_version = champion_uri_for(model_name)
    result = evaluate_forecaster(forecaster, dataset, prices, champion_uri)
    result.champion_version = champion_version
    client = use_tracking()
    metrics = [
        mlflow.entities.Metric(f"test_{name}_{k}", float(v), 0, 0)
        for name, m in result.metrics.items()
        for k, v in m.items()
    ]
    metrics += [
        mlflow.entities.Metric(safe_metric_key(f"test_{ticker}_{name}_{k}"), float(v), 0, 0)
        for ticker, by_name in result.per_ticker.items()
        for name, m in by_name.items()
        for k, v in m.items()
    ]
    metrics.append(mlflow.entities.Metric("test_skill_vs_naive", result.skill, 0, 0))
    for start in range(0, len(metrics), 900):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp)
        (report / "metrics.json").write_text(
            json.dumps({"overall": result.metrics, "per_ticker": result.per_ticker, "skill": result.skill}, indent=2)
        )
        (report / "metrics.md").write_text(result.table())
        result.predictions.to_parquet(report / "test_predictions.parquet", index=False)
        client.log_artifacts(run_id, str(report), "evaluation")
    m, n = result.metrics["model"], result.metrics["naive"]
    logger.info(
        "test split, %d forecasts: model RMSE %.4f vs naive %.4f (skill %+.4f)%s",
        result.n_windows, m["rmse"], n["rmse"], result.skill,
        f"; champion v{champion_version} RMSE {result.metrics['champion']['rmse']:.4f}" if "champion" in result.metrics else "",
    )
    create_markdown_artifact(
        key="test-metrics",
        markdown=(
            f"# Test metrics (price units)\n\nSkill vs naive: **{result.skill:+.4f}** "
            f"(1 - RMSE_model / RMSE_naive) over {result.n_windows} forecasts.\n\n{result.table()}\n\n"
            f"MLflow run: [{run_id}]({run_url(run_id)})\n"
        ),
        description="Model vs naive (and champion) on the test split",
    )
    return result
