"""What the `garch` baseline costs per ticker, against arch's own simulation and `ewma`, in the same run.

    python bench/garch_cost.py [--tickers 20] [--days 2500] [--test-days 400] [--horizon 10] [--per-origin]

Each ticker is a synthetic GJR-GARCH-t price series (`--days` trading days). Per ticker it times the
evaluation's work on the test base days (the last `--test-days` days but one; the variance filtered
through them with the parameters fixed):

- fit: the GJR-GARCH(1,1)-t fit by maximum likelihood on the returns up to the end of validation;
- one-day: `garch_quantiles` at horizon 1 (arch's filter and the exact standardized-t read);
- H-day: `garch_quantiles` at `--horizon` (the same, plus the simulated days 2..H on the grid);
- sim: of which the simulation alone (`garch_path_quantiles` given the next day's variances);
- arch: arch's own `forecast(method="simulation", simulations=1000)` from the same base days, plus the
  empirical quantiles of its cumulated paths: the reference, at a twentieth of our paths;
- with `--per-origin`, the simulation alone without the grid, at each base day's own variance, with the
  same paths (the alternative the grid replaces);
- ewma: its quantiles on the same base days and horizon.

It prints one line per ticker, then the medians, the ratio of arch's simulation to ours and what the
garch baseline adds at 400 and 1,000 tickers in the evaluate stage (one process, one ticker after another).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "models"), str(ROOT / "tests")]

from price_frames import gjr_garch_returns  # noqa: E402

from tickerflow_model.baselines import (  # noqa: E402
    GARCH_GRID_STEP,
    GARCH_PATHS,
    _garch_model,
    _percent_returns,
    ewma,
    fit_garch,
    garch_next_day,
    garch_path_quantiles,
    garch_quantiles,
)
from tickerflow_model.quantiles import QUANTILE_LEVELS  # noqa: E402

ARCH_PATHS = 1000


def gjr_prices(days: int, seed: int) -> np.ndarray:
    """Prices from a GJR-GARCH(1,1) with Student-t(6) shocks, daily volatility about 1.5%."""
    r = gjr_garch_returns(days, seed, omega=3e-6, alpha=0.04, gamma=0.08, beta=0.88, mu=3e-4, dof=6, var0=2.25e-4)
    return 100.0 * np.exp(np.cumsum(r))


def arch_simulated_quantiles(
    prices: np.ndarray, base: np.ndarray, horizon: int, levels, params: dict[str, float]
) -> np.ndarray:
    """arch's own simulation from every base day, the empirical quantiles of the cumulated paths: (n, H, Q)."""
    model = _garch_model(_percent_returns(prices[: base.max() + 1]))  # the last base day ends the data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = model.forecast(
            pd.Series(params),
            horizon=horizon,
            start=int(base.min()) - 1,
            method="simulation",
            simulations=ARCH_PATHS,
            reindex=False,
        )
    paths = np.cumsum(fc.simulations.values, axis=2)  # (n, S, H)
    return np.moveaxis(np.quantile(paths, levels, axis=1), 0, -1) / 100  # (n, H, Q)


def timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=20)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--test-days", type=int, default=400)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--per-origin", action="store_true", help="also time the simulation without the grid")
    args = parser.parse_args()
    levels, horizon = QUANTILE_LEVELS, args.horizon

    rows: list[dict[str, float]] = []
    fallbacks = 0
    print(
        f"{args.tickers} tickers of {args.days} days, {args.test_days} test base days each, horizon {horizon}, "
        f"{len(levels)} levels; ours {GARCH_PATHS} paths, arch {ARCH_PATHS}; seconds per ticker"
    )
    warm = gjr_prices(args.days, args.tickers)  # one untimed ticker first: imports and first-call costs
    warm_fit = fit_garch(warm, args.days - 1 - args.test_days)
    if warm_fit.params is not None:
        garch_quantiles(
            warm, np.arange(args.days - 1 - args.test_days, args.days - 1), horizon, levels, warm_fit.params
        )
    header = ["fit", "one-day", f"{horizon}-day", "sim", "arch sim", "ewma"] + (
        ["per-origin"] if args.per_origin else []
    )
    print("ticker " + " ".join(f"{h:>10s}" for h in header) + "  grid points")
    for seed in range(args.tickers):
        prices = gjr_prices(args.days, seed)
        fit_end = args.days - 1 - args.test_days
        base = np.arange(fit_end, args.days - 1)  # each test base day
        t0 = time.perf_counter()
        fit = fit_garch(prices, fit_end)
        row = {"fit": time.perf_counter() - t0}
        if fit.params is None:
            fallbacks += 1
            continue
        params = fit.params
        row["one-day"] = timed(garch_quantiles, prices, base, 1, levels, params)
        row[f"{horizon}-day"] = timed(garch_quantiles, prices, base, horizon, levels, params)
        _, var1 = garch_next_day(prices, base, params)
        row["sim"] = timed(garch_path_quantiles, params, var1, horizon, levels)
        row["arch sim"] = timed(arch_simulated_quantiles, prices, base, horizon, levels, params)
        row["ewma"] = timed(ewma, prices, base, horizon, levels)
        if args.per_origin:
            row["per-origin"] = timed(garch_path_quantiles, params, var1, horizon, levels, grid_step=None)
        u = np.floor(0.5 * np.log(var1) / GARCH_GRID_STEP)
        rows.append(row)
        print(f"{seed:>6d} " + " ".join(f"{row[h]:>10.4f}" for h in header) + f"  {int(u.max() - u.min()) + 2:>11d}")

    med = {h: statistics.median(r[h] for r in rows) for h in header}
    print(f"{fallbacks} fell back to ewma")
    print("median  " + " ".join(f"{med[h]:>10.4f}" for h in header))
    multi = med[f"{horizon}-day"]
    ratios = [r["arch sim"] / r[f"{horizon}-day"] for r in rows]
    print(
        f"arch's simulation ({ARCH_PATHS} paths) / ours ({GARCH_PATHS} paths, {horizon}-day quantiles): "
        f"{med['arch sim'] / multi:.0f}x on the medians, per-ticker ratios {min(ratios):.0f}x .. {max(ratios):.0f}x"
    )
    if args.per_origin:
        print(f"per-origin simulation / the grid's, same paths: {med['per-origin'] / med['sim']:.1f}x on the medians")
    for n in (400, 1000):
        print(
            f"at {n} tickers the garch baseline (fit + {horizon}-day quantiles) takes about "
            f"{(med['fit'] + multi) * n:.0f} s in the evaluate stage (ewma {med['ewma'] * n:.1f} s)"
        )


if __name__ == "__main__":
    main()
