"""Evaluate: the model, the baselines and the current champion on the same test windows; the backtest.

The numerics are the core's (`tickerflow_model.evaluation`, `tickerflow_model.backtest`); these stages
load the champion, call the core and say what came out. What is recorded in MLflow and Prefect is
`tickerflow.reporting`'s business.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from tickerflow.tasks.tracking import use_tracking
from tickerflow_model.backtest import Backtest, walk_forward
from tickerflow_model.config import BacktestConfig
from tickerflow_model.evaluation import Champion, Evaluation, evaluate_forecaster, failure_reason
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.names import CHAMPION_ALIAS


def champion_of(model_name: str) -> Champion | None:
    """The registry's champion of `model_name`, loaded; None when there is none.

    A champion that cannot be loaded comes back with the reason instead of the model: training never
    fails because of the champion.
    """
    client = use_tracking()
    try:
        mv = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except mlflow.exceptions.MlflowException:
        return None
    # pinned to the version: the alias may move while this run is still scoring it
    return load_version(f"models:/{model_name}/{mv.version}", str(mv.version))


def load_version(model_uri: str, version: str) -> Champion:
    """A registered version loaded as a champion to compare with, or the reason it cannot be."""
    try:
        return Champion(version, mlflow.pyfunc.load_model(model_uri))
    except Exception as exc:  # noqa: BLE001 - any failure of someone else's model is a reason to skip it
        return Champion(version, error=failure_reason(exc))


@task(name="load-champion")
def load_champion(model_name: str) -> Champion | None:
    return champion_of(model_name)


@task(name="evaluate")
def evaluate(
    forecaster: Forecaster, dataset, prices: pd.DataFrame, champion: Champion | None, cpu_threads: int = 0
) -> Evaluation:
    """Score the forecaster on the test split; its network runs under `cpu_threads` (the training's cap)."""
    logger = get_run_logger()
    result = evaluate_forecaster(forecaster, dataset, prices, champion, cpu_threads)
    if result.champion_error:
        logger.warning("champion v%s is not compared: %s", result.champion_version, result.champion_error)
    for ticker, why in result.garch_fallbacks.items():
        logger.warning("garch baseline: %s gets the EWMA forecast: %s", ticker, why)
    m = result.metrics
    logger.info(
        "test split, %d forecasts: model RMSE %.4g vs naive %.4g (skill %+.4f)%s%s",
        result.n_windows,
        m["model"]["rmse"],
        m["naive"]["rmse"],
        result.skill,
        f"; pinball {m['model']['pinball']:.4f}" if "pinball" in m["model"] else "",
        f"; champion v{result.champion_version} RMSE {m['champion']['rmse']:.4g}" if "champion" in m else "",
    )
    return result


@task(name="backtest")
def backtest(
    prices: pd.DataFrame, window_config, train_config, config: BacktestConfig, source_hash: str
) -> Backtest | None:
    """Walk-forward folds (None when `config.folds` is 0); their windows live only as long as the stage."""
    if config.folds == 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return walk_forward(prices, window_config, train_config, config, source_hash, Path(tmp), get_run_logger())
