"""Hand-made scores for the promotion gate's tests: a forecaster's metrics and an Evaluation holding them."""

from __future__ import annotations

from tickerflow_model.evaluation import Evaluation
from tickerflow_model.metrics import METRIC_NAMES

KEYS = METRIC_NAMES + ("skill",)


def scores(pinball: float, skill: float = 0.0, cov80: float = 0.80, cov90: float = 0.90) -> dict:
    point = {k: (1.0 - skill if k == "rmse" else skill if k == "skill" else 0.5) for k in KEYS}
    return {**point, "pinball": pinball, "coverage_80": cov80, "coverage_90": cov90, "width_80": 2.0, "width_90": 3.0}


def evaluation(champion_version=None, champion_error=None, **forecasters) -> Evaluation:
    """An evaluation whose naive has RMSE 1; `model=scores(...)`, `ewma=scores(...)`, `champion=scores(...)`."""
    metrics = {"naive": {k: (1.0 if k == "rmse" else 0.0 if k == "skill" else 0.5) for k in KEYS}, **forecasters}
    skill = metrics.get("model", {}).get("skill", 0.0)
    return Evaluation(metrics, {}, {}, skill, 10, champion_version, champion_error=champion_error)
