"""Task-runner benchmark: the window stage's per-ticker fan-out on the thread pool vs a local Dask cluster.

Runs the window stage (plan -> mapped parts -> commit) inside a Prefect flow on one synthetic input,
alternating the two runners, each time into a fresh TICKERFLOW_HOME so nothing is reused from a cache:

  thread: `ThreadPoolTaskRunner` (the default)
  dask:   `DaskTaskRunner` on a `distributed.LocalCluster` of --workers processes (1 thread each),
          started once before timing (its start-up is printed separately)

Prints the median wall time of each, the ratio dask / thread, and checks both wrote the same dataset
(id and window counts). Uses a temporary Prefect API (`prefect_test_harness`). Usage:

    python bench/task_runners.py [--tickers 100] [--days 5000] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "models")]
from tickerflow.runtime import environment  # noqa: E402

environment.apply()

sys.path.insert(0, str(ROOT / "bench"))
from windowing import synthetic_prices  # noqa: E402


def window_once(flow, tickers: int, days: int, home: Path):
    os.environ["TICKERFLOW_HOME"] = str(home)  # the Dask workers were started with the parent folder's env
    start = time.perf_counter()
    dataset = flow(tickers, days)
    return time.perf_counter() - start, dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=100)
    parser.add_argument("--days", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from distributed import LocalCluster
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from tickerflow.runtime.task_runners import build_task_runner
    from tickerflow.tasks.window import window
    from tickerflow_model.config import RunnerConfig, WindowConfig

    # the frame is built inside the flow: as a flow parameter it would be sent to the API as JSON
    @flow(name="bench-window")
    def window_flow(tickers: int, days: int):
        return window(synthetic_prices(tickers, days), WindowConfig(), "bench-source")

    print(
        f"input: {args.tickers * args.days:,} rows, {args.tickers} tickers x {args.days} days; "
        f"lookback {WindowConfig().lookback}"
    )
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        os.environ["TICKERFLOW_HOME"] = tmp
        t0 = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        print(f"LocalCluster of {args.workers} worker processes started in {time.perf_counter() - t0:.2f} s")
        runners = {
            "thread": build_task_runner(RunnerConfig()),
            "dask": build_task_runner(RunnerConfig(kind="dask", address=cluster.scheduler_address)),
        }
        flows = {name: window_flow.with_options(task_runner=runner) for name, runner in runners.items()}
        times: dict[str, list[float]] = {name: [] for name in flows}
        datasets = {}
        try:
            window_once(flows["thread"], args.tickers, args.days, Path(tmp) / "warm-up")  # imports, first API calls
            for r in range(args.repeats):
                for name, f in flows.items():
                    seconds, datasets[name] = window_once(f, args.tickers, args.days, Path(tmp) / f"{name}-{r}")
                    times[name].append(seconds)
        finally:
            cluster.close()
    same = (
        datasets["thread"].dataset_id == datasets["dask"].dataset_id
        and datasets["thread"].manifest["counts"] == datasets["dask"].manifest["counts"]
    )
    print(f"same dataset from both runners: {same} (counts {datasets['thread'].manifest['counts']})")
    for name, values in times.items():
        print(f"{name:>6}: median {statistics.median(values):.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(times["dask"]) / statistics.median(times["thread"])
    print(f"dask / thread: {ratio:.2f}x")


if __name__ == "__main__":
    main()
