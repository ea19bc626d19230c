"""Model quality: skill vs naive on the bundled sample (several seeds) and the AR(2) gap closed.

    python bench/model_quality.py sample --seeds 0 1 2      # `tickerflow run --seed S --json`, fresh home each
    python bench/model_quality.py ar2 --seeds 0 1 2         # synthetic AR(2) log-returns with a known oracle
    python bench/model_quality.py quantiles --seeds 0 1 2 [--features log_return abs_log_return ...]

`quantiles` runs the core stages as plain functions (no Prefect, no MLflow): the sample is windowed
with the default WindowConfig (or the given features), the GRU trained with the default TrainConfig
per seed (fit_forecaster: training, shrinkage, conformal calibration), and the project's evaluation
(tickerflow_model.evaluation.evaluate_forecaster) scores it with the distribution baselines on the same test
windows. It prints, per seed and as medians, the mean pinball loss of the model and of
static_quantile, rolling_quantile and ewma, the model's improvement over each, the 80%/90% coverage
and the point skill vs naive.

`sample` runs the default configuration end to end (one Prefect flow + MLflow run per seed, each in
its own temporary TICKERFLOW_HOME) and prints each seed's skill vs naive, overall and per ticker, and
the metric tables of the last run. `ar2` trains with the default TrainConfig on the generator the
tests use and prints naive / model / oracle RMSE and the share of the naive-to-oracle gap closed.
Figures are medians over seeds; the machine is shared, so wall times are indicative only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tickerflow.runtime import environment

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ("static_quantile", "rolling_quantile", "ewma", "garch")
KEYS = ("rmse", "mae", "mape", "smape", "mase", "directional_accuracy", "skill")


def run_sample(seed: int, extra: list[str]) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory(prefix="tf-quality-") as home:
        env = environment.apply({**os.environ, "TICKERFLOW_HOME": home})
        env.pop("MLFLOW_TRACKING_URI", None)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "tickerflow", "run", "--seed", str(seed), "--json", *extra],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), seconds


def print_tables(summary: dict) -> None:
    print("| scope | forecaster | " + " | ".join(KEYS) + " |")
    print("|" + "---|" * (len(KEYS) + 2))
    scopes = [("all", summary["metrics"])] + sorted(summary["per_ticker"].items())
    for scope, by_name in scopes:
        for name, m in by_name.items():
            print(f"| {scope} | {name} | " + " | ".join(f"{m[k]:.4f}" for k in KEYS) + " |")


def cmd_sample(seeds: list[int], extra: list[str]) -> None:
    results = []
    for seed in seeds:
        summary, seconds = run_sample(seed, extra)
        results.append(summary)
        per_ticker = ", ".join(f"{t} {b['model']['skill']:+.4f}" for t, b in sorted(summary["per_ticker"].items()))
        print(
            f"seed {seed}: skill vs naive {summary['skill_vs_naive']:+.5f}  promoted={summary['promoted']}  "
            f"({per_ticker})  {summary['test_forecasts']} test forecasts  {seconds:.0f} s",
            flush=True,
        )
    skills = [r["skill_vs_naive"] for r in results]
    print(
        f"\nmedian skill {statistics.median(skills):+.5f}  min {min(skills):+.5f}  max {max(skills):+.5f}  "
        f"champions {sum(r['promoted'] for r in results)}/{len(results)}\n"
    )
    print(f"metric tables of seed {seeds[-1]} (test split, price units):\n")
    print_tables(results[-1])


def cmd_ar2(seeds: list[int], n_days: int) -> None:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT), str(ROOT / "models")]
    from test_evaluate import ar2_gap_closed  # the generator and oracle the tests use

    from tickerflow_model.config import TrainConfig

    logging.basicConfig(level=logging.WARNING)
    closed = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="tf-ar2-") as tmp:
            os.environ["TICKERFLOW_HOME"] = tmp  # checkpoints go here
            t0 = time.perf_counter()
            r = ar2_gap_closed(n_days, TrainConfig(seed=seed, device="cpu"), Path(tmp) / "w", seed=seed)
        closed.append(r["gap_closed"])
        print(
            f"seed {seed}: naive RMSE {r['naive']:.4f}  model {r['model']:.4f}  oracle {r['oracle']:.4f}  "
            f"gap closed {r['gap_closed']:.1%}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    print(f"\nmedian share of the naive-to-oracle gap closed: {statistics.median(closed):.1%} (bar: 50%)")


def cmd_quantiles(
    seeds: list[int], features: list[str] | None, cpu_threads: int, train: dict, data: str | None, window_fields: dict
) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "models")]
    from tickerflow_model.config import IngestConfig, TrainConfig, WindowConfig
    from tickerflow_model.evaluation import evaluate_forecaster
    from tickerflow_model.features import auto_features
    from tickerflow_model.fitting import fit_forecaster
    from tickerflow_model.price_files import read_prices
    from tickerflow_model.window_dataset import build_window_dataset

    logging.basicConfig(level=logging.WARNING)
    frame, source_hash, _, _ = read_prices(data or str(ROOT / IngestConfig().source))
    window = WindowConfig(**window_fields, **({"features": tuple(features)} if features else {}))
    if window.features == "auto":
        window = window.updated(features=auto_features(frame))
    print(
        f"data {data or 'the bundled sample'}: {frame['ticker'].nunique()} tickers, {len(frame)} rows; features "
        f"{list(window.features)}, lookback {window.lookback}, TrainConfig defaults but cpu_threads={cpu_threads} {train or ''}, seeds {seeds}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="tf-quantiles-") as tmp:
        os.environ["TICKERFLOW_HOME"] = tmp  # checkpoints go here
        dataset = build_window_dataset(frame, window, source_hash, Path(tmp) / "windows")
        for seed in seeds:
            t0 = time.perf_counter()
            fit = fit_forecaster(dataset, TrainConfig(**{**train, "seed": seed, "cpu_threads": cpu_threads}))
            model = fit.forecaster
            train_seconds = sum(e.epoch_seconds for e in fit.history)
            m = evaluate_forecaster(model, dataset, frame, None).metrics
            row = {
                "seed": seed,
                "pinball": m["model"]["pinball"],
                **{f"vs_{b}": 1 - m["model"]["pinball"] / m[b]["pinball"] for b in BASELINES},
                "vs_best": 1 - m["model"]["pinball"] / min(m["ewma"]["pinball"], m["garch"]["pinball"]),
                "coverage_80": m["model"]["coverage_80"],
                "coverage_90": m["model"]["coverage_90"],
                "skill": m["model"]["skill"],
                "shrinkage": model.spec.shrinkage[0],
                "train_seconds": train_seconds,
            }
            rows.append(row)
            print(
                f"seed {seed}: pinball {row['pinball']:.4f} ("
                + ", ".join(f"{b} {m[b]['pinball']:.4f}" for b in BASELINES)
                + "); better than "
                + ", ".join(f"{b} {row['vs_' + b]:+.2%}" for b in BASELINES)
                + f", the better of ewma and garch {row['vs_best']:+.2%}; "
                f"coverage 80% {row['coverage_80']:.2%}, 90% {row['coverage_90']:.2%}; skill {row['skill']:+.5f} "
                f"(shrinkage {row['shrinkage']:.3f}); training {len(fit.history)} epochs in {train_seconds:.1f} s, "
                f"{time.perf_counter() - t0:.0f} s in all",
                flush=True,
            )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "seed"}
    print(
        f"\nmedian over {len(rows)} seeds: pinball {med['pinball']:.4f}; better than "
        + ", ".join(f"{b} {med['vs_' + b]:+.2%}" for b in BASELINES)
        + f", the better of ewma and garch {med['vs_best']:+.2%}; coverage 80% {med['coverage_80']:.2%}, "
        f"90% {med['coverage_90']:.2%}; skill {med['skill']:+.5f}; training {med['train_seconds']:.1f} s"
    )
    worst = {
        k: (min if k.startswith("vs_") or k == "skill" else max)(r[k] for r in rows)
        for k in ("vs_static_quantile", "vs_ewma", "vs_garch", "vs_best", "skill")
    }
    cov = [abs(r[k] - nominal) for r in rows for k, nominal in (("coverage_80", 0.8), ("coverage_90", 0.9))]
    print(
        f"worst seed: better than static {worst['vs_static_quantile']:+.2%}, ewma {worst['vs_ewma']:+.2%}, garch "
        f"{worst['vs_garch']:+.2%}, the better of the two {worst['vs_best']:+.2%}, skill "
        f"{worst['skill']:+.5f}; largest coverage gap {max(cov) * 100:.2f} points"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sample", "ar2", "quantiles"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--days", type=int, default=2500, help="ar2: trading days per ticker")
    parser.add_argument(
        "--features", nargs="+", default=None, help="quantiles: window features (default: WindowConfig's)"
    )
    parser.add_argument(
        "--cpu-threads", type=int, default=0, help="quantiles: TrainConfig.cpu_threads (1 on a busy machine)"
    )
    parser.add_argument(
        "--train",
        type=json.loads,
        default={},
        help='quantiles: TrainConfig fields as JSON, e.g. \'{"loss_weight": "return"}\'',
    )
    parser.add_argument(
        "--window",
        type=json.loads,
        default={},
        help="quantiles: WindowConfig fields as JSON, e.g. '{\"lookback\": 60}'",
    )
    parser.add_argument("--data", default=None, help="quantiles: a price file or folder instead of the bundled sample")
    args, extra = parser.parse_known_args()
    if args.what == "sample":
        cmd_sample(args.seeds, extra)
    elif args.what == "quantiles":
        cmd_quantiles(args.seeds, args.features, args.cpu_threads, args.train, args.data, args.window)
    else:
        cmd_ar2(args.seeds, args.days)


if __name__ == "__main__":
    main()
