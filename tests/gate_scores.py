"""Hand-made scores for the promotion gate's tests: a forecaster's metrics and an Evaluation holding them, with
the test statistics the gate reads (each point forecast against naive's, each candidate against the champion)."""

from __future__ import annotations

import pandas as pd

from tickerflow_model.evaluation import CHAMPION, Evaluation
from tickerflow_model.metrics import METRIC_NAMES
from tickerflow_model.risk import COMPARISON_COLUMNS, DieboldMarianoResult

KEYS = METRIC_NAMES + ("skill",)


def scores(pinball: float, skill: float = 0.0, cov80: float = 0.80, cov90: float = 0.90) -> dict:
    point = {k: (1.0 - skill if k == "rmse" else skill if k == "skill" else 0.5) for k in KEYS}
    return {**point, "pinball": pinball, "coverage_80": cov80, "coverage_90": cov90, "width_80": 2.0, "width_90": 3.0}


def dm(t: float, gain: float = 0.0) -> DieboldMarianoResult:
    return DieboldMarianoResult(t=t, mean_a=1.0, mean_b=1.0 - gain, gain=gain, n_days=500, lags=6, p_value=0.5)


def evaluation(
    champion_version=None,
    champion_error=None,
    point_t: dict[str, float] | None = None,
    champion_t: dict[str, float] | None = None,
    **forecasters,
) -> Evaluation:
    """An evaluation whose naive has RMSE 1; `model=scores(...)`, `ewma=scores(...)`, `champion=scores(...)`.

    `point_t`: forecaster -> the DM t of its point forecast against naive's (0 when not given: no difference);
    `champion_t`: forecaster -> the DM t of its pinball against the champion's (given a champion; by default
    large when its pinball is lower, 0 when equal, so a real gain is significant unless a test says otherwise).
    """
    metrics = {"naive": {k: (1.0 if k == "rmse" else 0.0 if k == "skill" else 0.5) for k in KEYS}, **forecasters}
    skill = metrics.get("model", {}).get("skill", 0.0)
    point_tests = {n: dm((point_t or {}).get(n, 0.0)) for n in forecasters}
    rows = []
    if CHAMPION in forecasters:
        for name, m in forecasters.items():
            if name != CHAMPION:
                gain = 1.0 - m["pinball"] / forecasters[CHAMPION]["pinball"]
                t = (champion_t or {}).get(name, 10.0 if gain > 0 else 0.0 if gain == 0 else -10.0)
                rows.append((name, CHAMPION, "all", gain, t, 0.0, 500, 6))
    comparisons = pd.DataFrame.from_records(rows, columns=list(COMPARISON_COLUMNS))
    return Evaluation(
        metrics,
        {},
        {},
        skill,
        10,
        champion_version,
        champion_error=champion_error,
        comparisons=comparisons,
        point_tests=point_tests,
    )
