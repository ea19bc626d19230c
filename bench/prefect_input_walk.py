"""What Prefect's walk of a task's inputs costs when a stage takes a whole evaluation, at universe scale.

    python bench/prefect_input_walk.py [--tickers 400 1000] [--repeats 5]

Before a task runs, Prefect walks its parameters twice: once for upstream futures
(`collect_task_run_inputs_sync`, the task run's inputs) and once to resolve them (`resolve_inputs_sync`).
Both descend into dataclasses, dicts and lists. The register stage takes the training run's Evaluation,
whose per-ticker tables are dicts of (tickers x forecasters x metrics): this script builds one of that size
(the 11 forecasters and every metric key of an evaluation, one horizon step) beside a test-prediction frame,
and times both walks of `{"evaluation": ...}`, median of --repeats. No Prefect server is needed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "models")]

from tickerflow.runtime import environment  # noqa: E402

environment.apply()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from prefect.utilities.engine import collect_task_run_inputs_sync, resolve_inputs_sync  # noqa: E402

from tickerflow_model.evaluation import Evaluation  # noqa: E402
from tickerflow_model.metrics import METRIC_KEYS  # noqa: E402

FORECASTERS = (
    "model",
    "naive",
    "seasonal_naive",
    "drift",
    "static_quantile",
    "rolling_quantile",
    "ewma",
    "garch",
    "blend",
    "champion",
    "skill_ref",
)


def evaluation_of(tickers: int, test_days: int = 375) -> Evaluation:
    rng = np.random.default_rng(0)
    names = [f"T{i:04d}" for i in range(tickers)]
    by_forecaster = {f: {m: float(rng.random()) for m in METRIC_KEYS} for f in FORECASTERS}
    predictions = pd.DataFrame(
        {
            "ticker": np.repeat(names, test_days),
            "base_date": np.tile(pd.bdate_range("2020-01-01", periods=test_days), tickers),
            "forecast": rng.random(tickers * test_days),
        }
    )
    return Evaluation(
        metrics=by_forecaster,
        per_ticker={t: {f: dict(m) for f, m in by_forecaster.items()} for t in names},
        per_horizon={"h1": by_forecaster},
        skill=0.0,
        n_windows=tickers * test_days,
        predictions=predictions,
    )


def timed(fn, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, nargs="+", default=[400, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'tickers':>8} {'dict leaves':>12} {'collect inputs s':>17} {'resolve inputs s':>17}")
    for n in args.tickers:
        parameters = {"evaluation": evaluation_of(n)}
        leaves = n * len(FORECASTERS) * len(METRIC_KEYS)
        collect = timed(lambda p=parameters: collect_task_run_inputs_sync(p), args.repeats)
        resolve = timed(lambda p=parameters: resolve_inputs_sync(p), args.repeats)
        print(f"{n:>8} {leaves:>12,} {collect:>17.3f} {resolve:>17.3f}", flush=True)


if __name__ == "__main__":
    main()
