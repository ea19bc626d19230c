"""How far the `garch` baseline's simulated h-day quantiles are from the fitted model's true ones.

    python bench/garch_sim_error.py [--tickers 3] [--origins 12] [--seeds 20] [--ref-paths 400000]

The h-day quantiles (h = 2..H) come from `garch_path_quantiles`: GARCH_PATHS simulated paths from the
points of a grid of starting variances, each base day interpolated between its two grid points. Two
errors, measured here per ticker on a synthetic GJR-GARCH-t series (as `bench/garch_cost.py` makes
them), at `--origins` base days spread over the range of the ticker's 400 test-period variances:

- Monte Carlo: the grid's quantiles from `--seeds` independent seeds against a direct simulation at
  each base day's own variance with `--ref-paths` paths (another seed); the root mean square over seeds
  and base days. The reference's own error (sqrt(GARCH_PATHS / ref paths) of ours) is left in.
- Interpolation: the grid's quantiles against a direct simulation at each base day's own variance with
  the same paths (same seed), so that only the interpolation differs; the largest difference.

Both are printed in units of the h-day standard deviation (the square root of arch's summed variance
forecasts) and, for the 1% and 99% levels, as a share of the quantile's distance from the mean. The
asymptotic standard error of an empirical quantile, sqrt(tau (1 - tau) / S) / f(q), is printed beside
the measured one, f read from the reference's quantiles at tau +- 0.002.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "models"), str(ROOT / "tests"), str(ROOT / "bench")]

from garch_cost import gjr_prices  # noqa: E402

from tickerflow_model.baselines import (  # noqa: E402
    GARCH_PATHS,
    _garch_model,
    _percent_returns,
    fit_garch,
    garch_next_day,
    garch_path_quantiles,
)

LEVELS = (0.01, 0.025, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.975, 0.99)
STEPS = (2, 5, 10)  # the h printed


def h_day_sd(prices: np.ndarray, base: np.ndarray, params: dict[str, float], horizon: int) -> np.ndarray:
    """sqrt of arch's summed analytic variance forecasts: (n, H), percent."""
    model = _garch_model(_percent_returns(prices[: base.max() + 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = model.forecast(pd.Series(params), horizon=horizon, start=int(base.min()) - 1, reindex=False)
    return np.sqrt(np.cumsum(fc.variance.to_numpy()[base - base.min()], axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=3)
    parser.add_argument("--origins", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--ref-paths", type=int, default=400_000)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--days", type=int, default=2500)
    args = parser.parse_args()
    horizon, tau = args.horizon, np.asarray(LEVELS)
    eps = 0.002
    ref_levels = np.sort(np.r_[tau, tau - eps, tau + eps])  # the levels and their neighbours, for the density
    at = np.searchsorted(ref_levels, tau)  # where the levels sit in ref_levels
    mc, interp, se_theory, rel_mc, rel_interp = [], [], [], [], []
    for ticker in range(args.tickers):
        prices = gjr_prices(args.days, ticker)
        fit_end = args.days - 1 - 400
        params = fit_garch(prices, fit_end).params
        assert params is not None
        base = np.arange(fit_end, args.days - 1)  # 400 test base days
        _, var1 = garch_next_day(prices, base, params)
        pick = np.argsort(var1)[np.linspace(0, len(base) - 1, args.origins).astype(int)]  # spread over the range
        v, sd = var1[pick], h_day_sd(prices, base[pick], params, horizon)[:, 1:, None]  # (m,), (m, H-1, 1)
        t0 = time.perf_counter()
        ref_all = garch_path_quantiles(params, v, horizon, ref_levels, args.ref_paths, seed=12345, grid_step=None)
        ref = ref_all[:, :, at]  # (m, H-1, Q)
        density = 2 * eps / (ref_all[:, :, at + 1] - ref_all[:, :, at - 1])  # (m, H-1, Q) f(q), per percent
        ours = np.stack([garch_path_quantiles(params, v, horizon, LEVELS, seed=s) for s in range(args.seeds)])
        same = garch_path_quantiles(params, v, horizon, LEVELS, seed=0, grid_step=None)  # seed 0, no grid
        mc.append(np.sqrt(np.mean(((ours - ref) / sd) ** 2, axis=(0, 1))))  # (H-1, Q)
        rel_mc.append(np.sqrt(np.mean(((ours - ref) / np.abs(ref)) ** 2, axis=(0, 1))))  # (H-1, Q)
        interp.append(np.max(np.abs(ours[0] - same) / sd, axis=0))  # (H-1, Q)
        rel_interp.append(np.max(np.abs(ours[0] - same) / np.abs(ref), axis=0))  # (H-1, Q)
        se_theory.append(np.mean(np.sqrt(tau * (1 - tau) / GARCH_PATHS) / density / sd, axis=0))  # (H-1, Q)
        print(
            f"ticker {ticker}: sigma_1 {np.sqrt(v.min()):.2f}% .. {np.sqrt(v.max()):.2f}%, "
            f"nu {params['nu']:.1f}, gamma {params['gamma[1]']:.3f}; {time.perf_counter() - t0:.1f} s"
        )
    mc_m, se_m, rel_m = (np.mean(x, axis=0) for x in (mc, se_theory, rel_mc))
    interp_max, rel_interp_max = np.max(interp, axis=0), np.max(rel_interp, axis=0)
    print(
        f"\n{GARCH_PATHS} paths; {args.tickers} tickers x {args.origins} base days x {args.seeds} seeds; "
        f"reference {args.ref_paths} paths at each base day's own variance"
    )
    print("in units of the h-day standard deviation: RMS Monte Carlo error | asymptotic SE | max interpolation error")
    print("level  " + "  ".join(f"{'h=' + str(h):>24s}" for h in STEPS))
    for j, level in enumerate(LEVELS):
        cells = [f"{mc_m[h - 2, j]:.4f} | {se_m[h - 2, j]:.4f} | {interp_max[h - 2, j]:.4f}" for h in STEPS]
        print(f"{level:<6} " + "  ".join(f"{c:>24s}" for c in cells))
    for j in (0, len(LEVELS) - 1):
        print(
            f"level {LEVELS[j]}, as a share of the quantile's distance from the mean: RMS Monte Carlo error "
            + ", ".join(f"h={h} {rel_m[h - 2, j]:.2%}" for h in STEPS)
            + "; max interpolation error "
            + ", ".join(f"h={h} {rel_interp_max[h - 2, j]:.2%}" for h in STEPS)
        )


if __name__ == "__main__":
    main()
