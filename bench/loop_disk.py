"""Disk used by the production loop: replay N trading days of the daily flow and print the home's size
every `--every` days, with gc after each day (the default) or without it (`--no-gc`).

    python bench/loop_disk.py --days 100 --every 20 [--no-gc]

Data: synthetic random walks (8 tickers, 1% daily volatility, 2015-01-01 onwards), written to the
temporary home; the champion is trained once (2 epochs, a small GRU) on the data before the first day.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tickerflow.runtime import environment

environment.apply()


def synthetic(days: int, tickers: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=days)
    frames = []
    for i in range(tickers):
        close = 50.0 * (1 + i) * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
        frames.append(
            pd.DataFrame(
                {
                    "date": dates,
                    "ticker": f"T{i:02d}",
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": 1000.0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--no-gc", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tickerflow-loop-disk-"))
    os.environ["TICKERFLOW_HOME"] = str(home)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))

    from tickerflow.flows.replay import replay
    from tickerflow.runtime.prefect_api import prefect_api
    from tickerflow_model.config import PipelineConfig

    history = 300
    prices = synthetic(history + args.days)
    data = home / "prices.csv"
    prices.to_csv(data, index=False)
    days = sorted(prices["date"].unique())[history:]
    config = PipelineConfig.model_validate(
        {
            "window": {"lookback": 20, "min_history": 150},
            "train": {"epochs": 2, "batch_size": 256, "gru": {"hidden_size": 16, "num_layers": 1}},
            "register": {"min_skill": -1.0},
        }
    )
    with prefect_api():
        print(f"gc after each day: {not args.no_gc}; home {home}")
        print(f"{'days':>5} {'home MB':>9} {'seconds':>8}")
        t0 = time.perf_counter()
        for start in range(0, args.days, args.every):
            chunk = days[start : start + args.every]
            replay(
                data=str(data),
                start=f"{chunk[0]:%Y-%m-%d}",
                end=f"{chunk[-1]:%Y-%m-%d}",
                config=config,
                gc=not args.no_gc,
            )
            print(f"{start + len(chunk):>5} {du(home) / 1e6:>9.2f} {time.perf_counter() - t0:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
