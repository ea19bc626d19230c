"""Risk-grade quality: the GRU, garch (simulated h-step quantiles), ewma and a GRU+garch blend on the same test
windows, per horizon step, as a risk desk reads them; and the champion the gate picks.

    python bench/risk_quality.py [--data FILE] [--seeds 0 1 2] [--horizon 10] [--steps 1 5 10]
        [--cpu-threads 1] [--train JSON] [--window JSON] [--register JSON] [--aci GAMMA] [--out results.jsonl]

Runs the core stages as plain functions (no Prefect, no MLflow): the data windowed with the default
WindowConfig (and --window), the GRU trained per seed with the default TrainConfig (and --train), then the
project's evaluation (`tickerflow_model.evaluation.evaluate_forecaster`: garch's h-step quantiles simulated,
the risk desk's backtests, Diebold-Mariano comparisons) and the gate (`promotion_decision`, RegisterConfig
defaults and --register), whose candidates include the blend: the GRU's and garch's quantiles (of the
cumulative log return) averaged. `--aci GAMMA` also scores the GRU and the blend with adaptive conformal
margins run over the test forecasts in date order (`with_aci`), as the live loop would have served them.

Per seed and step it prints the pinball of the GRU, garch, ewma and the blend, the GRU's and the blend's gain
over garch with the HAC t, the 80/90/98% coverage of each, Kupiec's p at the 1% and 99% levels (step 1), the
gate's champion and, recomputed here, the best-pinball candidate whose 80% and 90% coverage is within the
gate's tolerance; then medians over the seeds. `--out` appends one JSON line per seed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tickerflow.runtime import environment

ROOT = Path(__file__).resolve().parent.parent
environment.apply()
sys.path[:0] = [str(ROOT), str(ROOT / "models")]

import numpy as np  # noqa: E402

from tickerflow_model.calibration import adaptive_scales, apply_scales  # noqa: E402
from tickerflow_model.config import IngestConfig, RegisterConfig, TrainConfig, WindowConfig  # noqa: E402
from tickerflow_model.evaluation import (  # noqa: E402
    COLUMN,
    Evaluation,
    evaluate_forecaster,
    metric_tables,
    risk_tables,
)
from tickerflow_model.features import auto_features  # noqa: E402
from tickerflow_model.fitting import fit_forecaster  # noqa: E402
from tickerflow_model.gate import promotion_decision  # noqa: E402
from tickerflow_model.price_files import read_prices  # noqa: E402
from tickerflow_model.window_dataset import build_window_dataset  # noqa: E402

SHOWN = ["model", "garch", "ewma", "blend"]


def with_aci(ev: Evaluation, gamma: float) -> Evaluation:
    """The evaluation with `<name>+aci` beside the GRU and the blend: their quantiles stretched by adaptive
    conformal inference (`calibration.adaptive_scales`), run over each ticker's test forecasts of each step in
    date order, a k-step forecast's outcome known k days on: what the live loop would have served."""
    preds = ev.predictions
    y = np.log(preds["actual"].to_numpy(np.float64) / preds["base_price"].to_numpy(np.float64))
    quantiles = dict(ev.quantiles)
    names = list(ev.metrics)
    for name in ("model", "blend"):
        if name not in quantiles:
            continue
        adjusted = np.array(quantiles[name], copy=True)
        for (_, step), rows in preds.groupby(["ticker", "horizon"], sort=False).groups.items():
            order = preds.loc[rows].sort_values("base_date").index.to_numpy()
            at = preds.index.get_indexer(order)
            scales = adaptive_scales(quantiles[name][at], y[at], ev.levels, gamma, lag=int(step))
            adjusted[at] = apply_scales(quantiles[name][at], scales, ev.levels)
        quantiles[f"{name}+aci"] = adjusted
        COLUMN[f"{name}+aci"] = COLUMN[name]  # the median is the forecaster's own
        names.append(f"{name}+aci")
    overall, per_ticker, per_horizon = metric_tables(preds, names, quantiles, ev.levels)
    tails, comparisons, point_tests = risk_tables(preds, names, quantiles, ev.levels, ev.horizon)
    return replace(
        ev,
        metrics=overall,
        per_ticker=per_ticker,
        per_horizon=per_horizon,
        quantiles=quantiles,
        tails=tails,
        comparisons=comparisons,
        point_tests=point_tests,
    )


def step_figures(ev: Evaluation, step: int) -> dict:
    """Pinball, gain over garch (with t), coverage of each shown forecaster at one step."""
    by = ev.per_horizon[f"h{step}"]
    out: dict = {}
    for name in SHOWN:
        if name not in by:
            continue
        m = by[name]
        out[name] = {k: m.get(k) for k in ("pinball", "coverage_80", "coverage_90", "coverage_98")}
        row = ev.comparison(name, "garch", step) if name != "garch" else None
        if row is not None:
            out[name].update(gain=float(row["gain"]), t=float(row["t"]))
    return out


def kupiec(ev: Evaluation) -> dict:
    tails = ev.tails[ev.tails["horizon"] == 1]
    return {
        f"{r.forecaster}_q{r.level:g}": float(r.kupiec_p)
        for r in tails.itertuples()
        if r.forecaster in SHOWN and min(r.level, 1 - r.level) < 0.015
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a price file (default: the bundled sample)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--horizon", type=int, default=None, help="window.horizon (default: WindowConfig's)")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="steps to print (default: 1, 5, H)")
    parser.add_argument("--cpu-threads", type=int, default=1)
    parser.add_argument("--train", type=json.loads, default={}, help="TrainConfig fields as JSON")
    parser.add_argument("--window", type=json.loads, default={}, help="WindowConfig fields as JSON")
    parser.add_argument("--register", type=json.loads, default={}, help="RegisterConfig fields as JSON")
    parser.add_argument(
        "--aci",
        type=float,
        default=None,
        help="also score the GRU and the blend with adaptive conformal margins (gamma)",
    )
    parser.add_argument("--out", default=None, help="append one JSON line per seed to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.aci is not None:
        SHOWN.extend(["model+aci", "blend+aci"])

    data = args.data or str(ROOT / IngestConfig().source)
    frame, source_hash, _, _ = read_prices(data)
    window = WindowConfig(**{**args.window, **({"horizon": args.horizon} if args.horizon else {})})
    if window.features == "auto":
        window = window.updated(features=auto_features(frame))
    steps = args.steps or sorted({1, min(5, window.horizon), window.horizon})
    register = RegisterConfig(**args.register)
    print(
        f"data {Path(data).name}: {frame['ticker'].nunique()} tickers, {len(frame)} rows; horizon {window.horizon}, "
        f"features {list(window.features)}; train {args.train or 'defaults'} (cpu_threads {args.cpu_threads}); "
        f"gate {args.register or 'defaults'}; seeds {args.seeds}"
        + (f"; adaptive conformal margins, gamma {args.aci}" if args.aci is not None else ""),
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="tf-risk-") as tmp:
        os.environ["TICKERFLOW_HOME"] = tmp  # checkpoints go here
        dataset = build_window_dataset(frame, window, source_hash, Path(tmp) / "windows")
        for seed in args.seeds:
            t0 = time.perf_counter()
            fit = fit_forecaster(dataset, TrainConfig(**{**args.train, "seed": seed, "cpu_threads": args.cpu_threads}))
            train_seconds = sum(e.epoch_seconds for e in fit.history)
            t1 = time.perf_counter()
            ev = evaluate_forecaster(fit.forecaster, dataset, frame, None, args.cpu_threads)
            eval_seconds = time.perf_counter() - t1
            decision = promotion_decision(ev, register)  # the project's candidates: the blend among them
            if args.aci is not None:
                ev = with_aci(ev, args.aci)
            row = {
                "data": Path(data).name,
                "seed": seed,
                "horizon": window.horizon,
                "train": args.train,
                "steps": {s: step_figures(ev, s) for s in steps},
                "all": step_figures_all(ev),
                "kupiec_step1": kupiec(ev),
                "champion": decision.winner,
                "best_passing": best_passing(ev, register),
                "skill": ev.metrics["model"]["skill"],
                "model_point_t": ev.point_tests["model"].t,
                "train_seconds": train_seconds,
                "evaluate_seconds": eval_seconds,
                "epochs": len(fit.history),
            }
            rows.append(row)
            print_seed(row, time.perf_counter() - t0)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print_medians(rows, steps)


def best_passing(ev: Evaluation, register: RegisterConfig) -> str | None:
    """The best-pinball forecaster whose 80% and 90% coverage is within the gate's tolerance (None: none is)."""
    tol = register.coverage_tolerance
    passing = {
        n: m["pinball"]
        for n, m in ev.metrics.items()
        if "pinball" in m
        and "+" not in n
        and n != "champion"
        and abs(m["coverage_80"] - 0.8) <= tol
        and abs(m["coverage_90"] - 0.9) <= tol
    }
    return min(passing, key=passing.__getitem__) if passing else None


def step_figures_all(ev: Evaluation) -> dict:
    out = {}
    for name in SHOWN:
        if name in ev.metrics:
            m = ev.metrics[name]
            out[name] = {k: m.get(k) for k in ("pinball", "coverage_80", "coverage_90", "coverage_98")}
            row = ev.comparison(name, "garch") if name != "garch" else None
            if row is not None:
                out[name].update(gain=float(row["gain"]), t=float(row["t"]))
    return out


def cell(m: dict) -> str:
    gain = f" {m['gain']:+.2%} (t {m['t']:.1f})" if "gain" in m else ""
    cov = "/".join(f"{100 * m[k]:.1f}" for k in ("coverage_80", "coverage_90", "coverage_98") if m.get(k) is not None)
    return f"{m['pinball']:.4f}{gain} cov {cov}"


def print_seed(row: dict, seconds: float) -> None:
    print(
        f"\nseed {row['seed']}: champion {row['champion']} (best passing by pinball: {row['best_passing']}); skill {row['skill']:+.5f} (DM t vs naive "
        f"{row['model_point_t']:.2f}); {row['epochs']} epochs, training {row['train_seconds']:.1f} s, "
        f"evaluation {row['evaluate_seconds']:.1f} s, {seconds:.0f} s in all",
        flush=True,
    )
    for step, figures in [*row["steps"].items(), ("all", row["all"])]:
        print(f"  step {step}: " + " | ".join(f"{n} {cell(m)}" for n, m in figures.items()), flush=True)
    print("  Kupiec p, step 1: " + ", ".join(f"{k} {v:.3f}" for k, v in row["kupiec_step1"].items()), flush=True)


def print_medians(rows: list[dict], steps: list[int]) -> None:
    print(f"\nmedians over {len(rows)} seeds (worst seed in brackets); champions: {[r['champion'] for r in rows]}")
    for step in [*steps, "all"]:
        parts = []
        for name in SHOWN:
            figs = [r["all"][name] if step == "all" else r["steps"][step][name] for r in rows if name in r["all"]]
            if not figs:
                continue
            med = {k: statistics.median(f[k] for f in figs) for k in figs[0] if figs[0][k] is not None}
            worst = f" [{min(f['gain'] for f in figs):+.2%}]" if "gain" in med else ""
            parts.append(f"{name} {cell(med)}{worst}")
        print(f"  step {step}: " + " | ".join(parts))
    print(
        f"  training {statistics.median(r['train_seconds'] for r in rows):.1f} s, evaluation "
        f"{statistics.median(r['evaluate_seconds'] for r in rows):.1f} s (medians)"
    )


if __name__ == "__main__":
    main()
