"""The risk desk's backtests of quantile forecasts: tail coverage tests and forecast comparisons.

Pure numpy, pandas and `math` (no scipy): the chi-square tails needed are closed forms.

- Tail coverage of each quantile taken as a VaR level: Kupiec's (1995) proportion-of-failures test of the
  exceedance rate, Christoffersen's (1998) test that exceedances do not cluster (first-order Markov
  independence) and his conditional coverage test, both together.
- Comparisons of forecasters: the Diebold & Mariano (1995) test on the daily loss difference, with the
  Newey & West (1987) long-run variance for the autocorrelation that overlapping h-step forecasts create.

Sources:
    Kupiec, P. (1995). Techniques for verifying the accuracy of risk measurement models. Journal of
        Derivatives 3(2), 73-84.
    Christoffersen, P. (1998). Evaluating interval forecasts. International Economic Review 39(4), 841-862.
    Diebold, F. X. & Mariano, R. S. (1995). Comparing predictive accuracy. Journal of Business & Economic
        Statistics 13(3), 253-263.
    Newey, W. K. & West, K. D. (1987). A simple, positive semi-definite, heteroskedasticity and
        autocorrelation consistent covariance matrix. Econometrica 55(3), 703-708.
    Newey, W. K. & West, K. D. (1994). Automatic lag selection in covariance matrix estimation. Review of
        Economic Studies 61(4), 631-653 (the rule of thumb for the number of lags).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# ---- distributions, without scipy ------------------------------------------------------------------


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X chi-square with 1 or 2 degrees of freedom: erfc(sqrt(x/2)) and exp(-x/2)."""
    if df not in (1, 2):
        raise ValueError(f"chi2_sf has closed forms for 1 and 2 degrees of freedom only, got df={df!r}")
    if x <= 0.0:
        return 1.0
    return math.erfc(math.sqrt(x / 2.0)) if df == 1 else math.exp(-x / 2.0)


def normal_cdf(x: float) -> float:
    """Standard normal cdf, Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def normal_sf(x: float) -> float:
    """1 - Phi(x), as erfc(x / sqrt 2) / 2: exact in the far right tail, where 1 - Phi(x) would round to 0."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def _xlogy(x: float, y: float) -> float:
    """x * ln(y), with 0 * ln(anything) = 0: a likelihood term of a count that did not occur."""
    return 0.0 if x == 0 else x * math.log(y)


# ---- Kupiec: the exceedance rate -------------------------------------------------------------------


@dataclass(frozen=True)
class KupiecResult:
    """Kupiec's proportion-of-failures test: is the exceedance rate the nominal `p`?"""

    n: int  # observations
    exceedances: int
    p: float  # the nominal exceedance rate
    rate: float  # the observed rate, exceedances / n
    lr: float  # likelihood ratio, chi-square with 1 degree of freedom under the null
    p_value: float


def kupiec_pof(exceedances: int, n: int, p: float) -> KupiecResult:
    """Kupiec (1995) proportion-of-failures likelihood ratio test of an exceedance rate.

    LR = -2 ln[(1 - p)^(n - x) p^x] + 2 ln[(1 - x/n)^(n - x) (x/n)^x], asymptotically chi-square(1) when
    the true rate is p; 0 * ln 0 = 0, so x = 0 and x = n are finite (LR = -2 n ln(1 - p) and -2 n ln p).

    Args:
        exceedances: x, how many observations exceeded the quantile.
        n: the number of observations.
        p: the nominal exceedance rate (0.01 for a 99% VaR).
    """
    x, n, p = int(exceedances), int(n), float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"the nominal exceedance rate must be in (0, 1), got p={p!r}")
    if n < 1 or not 0 <= x <= n:
        raise ValueError(f"need 0 <= exceedances <= n and n >= 1, got exceedances={exceedances!r}, n={n!r}")
    rate = x / n
    null = _xlogy(n - x, 1.0 - p) + _xlogy(x, p)
    fitted = _xlogy(n - x, 1.0 - rate) + _xlogy(x, rate)
    lr = max(0.0, 2.0 * (fitted - null))  # >= 0 in exact arithmetic: the rate x/n maximises the likelihood
    return KupiecResult(n=n, exceedances=x, p=p, rate=rate, lr=lr, p_value=chi2_sf(lr, 1))


# ---- Christoffersen: clustering of exceedances -----------------------------------------------------


@dataclass(frozen=True)
class ChristoffersenResult:
    """Christoffersen's independence and conditional coverage tests, from pooled transition counts.

    n01 counts a day without a hit followed by a day with one, and so on; `kupiec` is the rate test on
    every observation, whose LR adds to the independence LR to give the conditional coverage LR.
    """

    n00: int
    n01: int
    n10: int
    n11: int
    kupiec: KupiecResult
    independence_lr: float  # chi-square(1) under independence
    independence_p: float
    cc_lr: float  # kupiec.lr + independence_lr, chi-square(2) under correct conditional coverage
    cc_p: float


def independence_lr(n00: int, n01: int, n10: int, n11: int) -> float:
    """Christoffersen's (1998) first-order Markov LR of independence from transition counts.

    LR = -2 ln[(1 - pi)^(n00 + n10) pi^(n01 + n11)] + 2 ln[(1 - pi01)^n00 pi01^n01 (1 - pi11)^n10 pi11^n11],
    pi01 = n01 / (n00 + n01), pi11 = n11 / (n10 + n11), pi = (n01 + n11) / (all transitions). A term of zero
    count contributes 0; with no transition out of one state (no hit, all hits, a lone hit at the end)
    the fitted Markov chain is the iid one and LR = 0.
    """
    from_0, from_1 = n00 + n01, n10 + n11
    if from_0 == 0 or from_1 == 0:
        return 0.0  # pi01 or pi11 undefined: the alternative has nothing more to fit than the null
    pi = (n01 + n11) / (from_0 + from_1)
    pi01, pi11 = n01 / from_0, n11 / from_1
    null = _xlogy(n00 + n10, 1.0 - pi) + _xlogy(n01 + n11, pi)
    markov = _xlogy(n00, 1.0 - pi01) + _xlogy(n01, pi01) + _xlogy(n10, 1.0 - pi11) + _xlogy(n11, pi11)
    return max(0.0, 2.0 * (markov - null))


def _christoffersen_from_counts(
    n00: int, n01: int, n10: int, n11: int, exceedances: int, n: int, p: float
) -> ChristoffersenResult:
    kupiec = kupiec_pof(exceedances, n, p)
    ind = independence_lr(n00, n01, n10, n11)
    cc = kupiec.lr + ind
    return ChristoffersenResult(
        n00=n00,
        n01=n01,
        n10=n10,
        n11=n11,
        kupiec=kupiec,
        independence_lr=ind,
        independence_p=chi2_sf(ind, 1),
        cc_lr=cc,
        cc_p=chi2_sf(cc, 2),
    )


def christoffersen(sequences: Sequence[np.ndarray], p: float) -> ChristoffersenResult:
    """Christoffersen (1998) independence and conditional coverage tests of hit sequences.

    Transitions are counted within each sequence (one ticker's hits in date order) and pooled: the last
    day of one ticker is never followed by the first day of the next. The independence LR is chi-square(1),
    the conditional coverage LR = Kupiec's LR (on all observations) + the independence LR is chi-square(2).
    Christoffersen's own conditional coverage test conditions on each sequence's first observation; using
    every observation in the rate part is the common practice and keeps cc_lr = kupiec.lr + independence_lr.

    Args:
        sequences: one boolean hit array per ticker, each in date order.
        p: the nominal exceedance rate.
    """
    n00 = n01 = n10 = n11 = exceedances = n = 0
    for seq in sequences:
        hits = np.asarray(seq, dtype=bool).ravel()
        prev, cur = hits[:-1], hits[1:]
        n01 += int(np.count_nonzero(~prev & cur))
        n10 += int(np.count_nonzero(prev & ~cur))
        n11 += int(np.count_nonzero(prev & cur))
        n00 += int(np.count_nonzero(~prev & ~cur))
        exceedances += int(np.count_nonzero(hits))
        n += hits.size
    return _christoffersen_from_counts(n00, n01, n10, n11, exceedances, n, p)


# ---- Newey-West and Diebold-Mariano ----------------------------------------------------------------


def newey_west_lags(n: int, horizon: int) -> int:
    """Bartlett lags for n observations of h-step forecasts: max(h - 1, floor(4 (n / 100)^(2/9))).

    h - 1 because h-step forecast errors on consecutive days share h - 1 daily shocks (an MA(h-1));
    the second term is Newey & West's (1994) rule of thumb for the rest of the autocorrelation.
    """
    return max(int(horizon) - 1, math.floor(4.0 * (max(int(n), 0) / 100.0) ** (2.0 / 9.0)))


def hac_t(d: np.ndarray, lags: int) -> float:
    """t statistic of mean(d) with the Newey & West (1987) long-run variance (Bartlett weights).

    var = g0 + 2 sum_{l=1..L} (1 - l / (L + 1)) g_l, g_l = sum_t (d_t - mean)(d_{t-l} - mean) / n; t =
    mean / sqrt(var / n). 0.0 when n < 2 or the variance is 0 (a constant d: nothing to test against).
    """
    d = np.asarray(d, dtype=np.float64).ravel()
    n = d.size
    if n < 2:
        return 0.0
    mean = float(d.mean())
    dc = d - mean  # (n,)
    var = float(np.dot(dc, dc)) / n
    lags = min(int(lags), n - 1)
    for lag in range(1, lags + 1):
        var += 2.0 * (1.0 - lag / (lags + 1.0)) * float(np.dot(dc[lag:], dc[:-lag])) / n
    # a constant d centres to rounding noise of order eps * |d|, not to exact zeros: that is a zero variance
    noise = (64.0 * np.finfo(np.float64).eps * float(np.max(np.abs(d)))) ** 2
    return mean / math.sqrt(var / n) if var > noise else 0.0


@dataclass(frozen=True)
class DieboldMarianoResult:
    """Diebold-Mariano test of forecaster a against forecaster b on the daily loss difference a - b.

    Sign convention: everything reads "b is better" when positive. t > 0 when b's loss is the lower,
    gain = 1 - mean_b / mean_a > 0 when b's mean loss is the lower, and p_value is the one-sided
    P(Z > t): small when b is significantly better.
    """

    t: float
    mean_a: float  # mean loss of a over every forecast (rows), as the scores report it
    mean_b: float
    gain: float  # 1 - mean_b / mean_a: b's relative improvement over a (NaN when mean_a is 0)
    n_days: int
    lags: int
    p_value: float  # one-sided, for "b is better": 1 - Phi(t)


def _daily_means(values: np.ndarray, day: np.ndarray, n_codes: int) -> np.ndarray:
    """Mean of `values` per day, in date order, over the days present: `day` codes 0 .. n_codes - 1 in date order."""
    count = np.bincount(day, minlength=n_codes)  # (n_codes,)
    present = count > 0
    return np.bincount(day, weights=values, minlength=n_codes)[present] / count[present]  # (n_days,)


def _dm_on_days(daily_d: np.ndarray, mean_a: float, mean_b: float, horizon: int) -> DieboldMarianoResult:
    """The DM result from the daily mean loss difference a - b (date order) and the two mean losses."""
    n_days = int(daily_d.size)
    lags = newey_west_lags(n_days, horizon)
    t = hac_t(daily_d, lags)
    gain = 1.0 - mean_b / mean_a if mean_a != 0 else float("nan")
    return DieboldMarianoResult(
        t=t, mean_a=mean_a, mean_b=mean_b, gain=gain, n_days=n_days, lags=lags, p_value=normal_sf(t)
    )


def _losses(loss_a, loss_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(loss_a, dtype=np.float64).ravel(), np.asarray(loss_b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"loss_a and loss_b must be two non-empty arrays of one length, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("losses must be finite: a NaN loss would make the daily mean of its day NaN")
    return a, b


def dm_test(loss_a: np.ndarray, loss_b: np.ndarray, dates, horizon: int) -> DieboldMarianoResult:
    """Diebold & Mariano (1995) test of equal loss, on the daily mean loss difference d = loss_a - loss_b.

    The rows of one base date (several tickers and, if given, several horizon steps) are averaged into
    one observation: forecasts made on the same day share that day's market shock, so they are not
    independent observations, and the days are. The daily series, in date order, gets `hac_t` with
    `newey_west_lags(n_days, horizon)` lags: h-step forecasts made on consecutive days overlap, so d is
    autocorrelated up to lag h - 1 even for optimal forecasts (Diebold & Mariano, 1995, section 1).

    t > 0 means b has the lower loss (b is better); p_value = 1 - Phi(t) is the one-sided p-value of
    "b is better". Swap the arguments to ask the other question.

    Args:
        loss_a, loss_b: per-forecast losses (rows,), e.g. pinball losses, in the same rows.
        dates: each row's base date (rows,): anything sortable (datetime64, strings in ISO form).
        horizon: the largest horizon step among the rows (sets the minimum lag, h - 1).
    """
    a, b = _losses(loss_a, loss_b)
    codes, days = pd.factorize(np.asarray(dates).ravel(), sort=True)  # (rows,) codes in date order
    if codes.shape != a.shape:
        raise ValueError(f"dates must give one date per loss, got {codes.size} dates for {a.size} losses")
    return _dm_on_days(_daily_means(a - b, codes, len(days)), float(a.mean()), float(b.mean()), horizon)
