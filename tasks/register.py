"""Register: log the pyfunc model, register a version as `challenger`, promote to `champion` if it earns it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from prefect import task
from prefect.logging import get_run_logger

import tickerflow_model
from tasks.evaluate import CHAMPION, Evaluation
from tasks.tracking import use_tracking
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.pyfunc import BUNDLE_ARTIFACT, GRUPricePyfunc

CHALLENGER = "challenger"
MODEL_CODE = Path(tickerflow_model.__file__).parent


@dataclass(frozen=True)
class RegisterConfig:
    model_name: str = "tickerflow-gru"
    min_skill: float = 0.0  # a champion is never worse than "tomorrow = today" on the test split
    min_improvement: float = 0.0  # relative RMSE gain over the current champion needed to replace it

    def __post_init__(self) -> None:
        if not self.model_name.strip():
            raise ValueError("model_name must not be empty")
        if self.min_improvement < 0:
            raise ValueError(f"min_improvement must be >= 0, got {self.min_improvement}")


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    promoted: bool
    reason: str
    model_uri: str


def promotion_decision(evaluation: Evaluation, config: RegisterConfig) -> tuple[bool, str]:
    """The gate: skill vs naive first, then the champion's RMSE on the same test windows."""
    if evaluation.skill < config.min_skill:
        return False, f"skill vs naive {evaluation.skill:+.4f} is below the minimum {config.min_skill:+.4f}"
    if evaluation.champion_version is None:
        return True, f"no champion yet; skill vs naive {evaluation.skill:+.4f}"
    champion = f"champion v{evaluation.champion_version}"
    if "champion" not in evaluation.metrics:
        return False, f"{champion} could not be scored on the same test windows; promote by hand if wanted"
    new, old = evaluation.metrics["model"]["rmse"], evaluation.metrics["champion"]["rmse"]
    if new < old * (1 - config.min_improvement):
        return True, f"test RMSE {new:.4f} beats {champion} ({old:.4f}) by more than {config.min_improvement:.2%}"
    return False, f"test RMSE {new:.4f} does not beat {champion} ({old:.4f}) by more than {config.min_improvement:.2%}"


def input_columns(forecaster: Forecaster) -> list[str]:
    """The columns the model reads; other columns in a caller's frame are ignored."""
    spec = forecaster.spec
    volume = ["volume"] if "log_volume_change" in spec.window.features else []
    return ["date", "ticker", spec.price_column] + volume


def input_example(prices: pd.DataFrame, forecaster: Forecaster) -> pd.DataFrame:
    """One ticker's most recent window of raw prices (plus one row for the first return)."""
    ticker = sorted(prices["ticker"].unique())[0]
    g = prices[prices["ticker"] == ticker].sort_values("date")
    return g[input_columns(forecaster)].tail(forecaster.spec.window.lookback + 1).reset_index(drop=True).astype({"ticker": str})


def log_pyfunc(forecaster: Forecaster, prices: pd.DataFrame, run_id: str, model_name: str) -> str:
    """Log the bundle (weights + spec) with its own code; register it. Returns the new version."""
    example = input_example(prices, forecaster)
    output = forecaster.forecast_frame(example)
    signature = infer_signature(example, output, params={"all_dates": False})
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        bundle = forecaster.save(Path(tmp) / BUNDLE_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=GRUPricePyfunc(),
            artifacts={BUNDLE_ARTIFACT: str(bundle)},
            code_paths=[str(MODEL_CODE)],
            signature=signature,
            input_example=example,
            registered_model_name=model_name,
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"torch=={_version('torch')}", f"pandas=={pd.__version__}"],
        )
    return str(info.registered_model_version)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist).split("+")[0]


@task(name="register")
def register(
    forecaster: Forecaster, evaluation: Evaluation, prices: pd.DataFrame, config: RegisterConfig, run_id: str
) -> Registration:
    logger = get_run_logger()
    client = use_tracking()
    version = log_pyfunc(forecaster, prices, run_id, config.model_name)
    client.set_registered_model_alias(config.model_name, CHALLENGER, version)
    promoted, reason = promotion_decision(evaluation, config)
    tags = {
        "mlflow_run_id": run_id,
        "test_rmse": f"{evaluation.metrics['model']['rmse']:.6f}",
        "test_naive_rmse": f"{evaluation.metrics['naive']['rmse']:.6f}",
        "skill_vs_naive": f"{evaluation.skill:.6f}",
        "promotion": "promoted" if promoted else "rejected",
        "promotion_reason": reason,
    }
    for key, value in tags.items():
        client.set_model_version_tag(config.model_name, version, key, value)
    if promoted:
        client.set_registered_model_alias(config.model_name, CHAMPION, version)
    client.set_tag(run_id, "promotion_reason", reason)
    client.log_metric(run_id, "promoted", float(promoted))
    logger.info("registered %s v%s as %s; %s: %s", config.model_name, version, CHALLENGER,
                "promoted to champion" if promoted else "not promoted", reason)
    return Registration(config.model_name, version, promoted, reason, f"models:/{config.model_name}/{version}")
