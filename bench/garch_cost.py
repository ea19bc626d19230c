"""What the `garch` baseline costs per ticker, against `ewma` on the same series in the same run.

    python bench/garch_cost.py [--tickers 20] [--days 2500] [--test-days 500]

Each ticker is a synthetic GJR-GARCH-t price series (`--days` trading days). Per ticker it times the
evaluation's work: the GJR-GARCH(1,1)-t fit by maximum likelihood on the returns up to the end of the
validation period (all but the last `--test-days`), then the quantiles at the default levels from every
test base day (the variance filtered through the test days, the parameters fixed), and the same
quantiles from `ewma`. It prints the median seconds per ticker of each part, the ratio to `ewma`, and
what the fit adds at 1,000 tickers in the evaluate stage (one process, one ticker after another).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "models"), str(ROOT / "tests")]

from price_frames import gjr_garch_returns  # noqa: E402

from tickerflow_model.baselines import ewma, fit_garch, garch_quantiles  # noqa: E402
from tickerflow_model.quantiles import QUANTILE_LEVELS  # noqa: E402


def gjr_prices(days: int, seed: int) -> np.ndarray:
    """Prices from a GJR-GARCH(1,1) with Student-t(6) shocks, daily volatility about 1.5%."""
    r = gjr_garch_returns(days, seed, omega=3e-6, alpha=0.04, gamma=0.08, beta=0.88, mu=3e-4, dof=6, var0=2.25e-4)
    return 100.0 * np.exp(np.cumsum(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=20)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--test-days", type=int, default=500)
    args = parser.parse_args()

    fit_s, garch_s, ewma_s, fallbacks = [], [], [], 0
    for seed in range(args.tickers):
        prices = gjr_prices(args.days, seed)
        fit_end = args.days - 1 - args.test_days
        base = np.arange(fit_end, args.days - 1)  # each test base day, one step ahead
        t0 = time.perf_counter()
        fit = fit_garch(prices, fit_end)
        t1 = time.perf_counter()
        if fit.params is None:
            fallbacks += 1
            continue
        garch_quantiles(prices, base, 1, QUANTILE_LEVELS, fit.params)
        t2 = time.perf_counter()
        ewma(prices, base, 1, QUANTILE_LEVELS)
        t3 = time.perf_counter()
        fit_s.append(t1 - t0)
        garch_s.append(t2 - t1)
        ewma_s.append(t3 - t2)
    fit_m, filt_m, ewma_m = (statistics.median(v) for v in (fit_s, garch_s, ewma_s))
    print(
        f"{args.tickers} tickers of {args.days} days, {args.test_days} test base days each; {fallbacks} fell back to ewma"
    )
    print(
        f"median per ticker: garch fit {fit_m * 1e3:.1f} ms, garch quantiles {filt_m * 1e3:.2f} ms, ewma quantiles {ewma_m * 1e3:.2f} ms"
    )
    print(
        f"garch (fit + quantiles) / ewma: {(fit_m + filt_m) / ewma_m:.0f}x; at 1,000 tickers the garch baseline adds "
        f"about {(fit_m + filt_m - ewma_m) * 1000:.0f} s to the evaluate stage"
    )


if __name__ == "__main__":
    main()
