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

from .quantiles import pinball

PINBALL_CHUNK = 65_536  # rows per pinball call: its (rows, Q) temporaries then stay in cache (~4x faster)
MEDIAN_TOL = 1e-9  # a level this close to 0.5 is the median: not a tail, no coverage test
TAIL_COLUMNS = (
    "forecaster",
    "horizon",
    "level",
    "expected",
    "n",
    "exceedances",
    "rate",
    "kupiec_lr",
    "kupiec_p",
    "independence_lr",
    "independence_p",
    "cc_lr",
    "cc_p",
    "sampling",
)
COMPARISON_COLUMNS = ("forecaster", "reference", "horizon", "gain", "t", "p_value", "n_days", "lags")


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


# ---- exceedances and the tail backtests ------------------------------------------------------------


def is_median(level: float) -> bool:
    return abs(float(level) - 0.5) < MEDIAN_TOL


def expected_rate(level: float) -> float:
    """The nominal exceedance rate of a quantile taken as VaR: level below the median, 1 - level above."""
    level = float(level)
    if not 0.0 < level < 1.0 or is_median(level):
        raise ValueError(f"a tail level must be in (0, 1) and not the median, got {level!r}")
    return level if level < 0.5 else 1.0 - level


def exceedances(y: np.ndarray, q: np.ndarray, level: float) -> np.ndarray:
    """VaR breaks of the `level` quantile: y < q below the median (rate `level`), y > q above (1 - level).

    The median is not a tail and has no coverage test here: a ValueError.
    """
    expected_rate(level)  # validates the level
    y, q = np.asarray(y, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return y < q if float(level) < 0.5 else y > q


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def sampling_label(step: int) -> str:
    """How the tail tests sample step-h forecasts: every day at h = 1, every h-th base date beyond."""
    return "every day" if step == 1 else f"non-overlapping: every {_ordinal(step)} day"


@dataclass(frozen=True)
class TailSample:
    """The forecasts the tail tests use (`non_overlapping_sample`), sorted by (step, ticker, base date)."""

    rows: np.ndarray  # (m,) positions in the caller's rows
    steps: np.ndarray  # (S,) the horizon steps, ascending
    starts: np.ndarray  # (S,) first position in `rows` of each step's block
    continues: np.ndarray  # (m,) bool: this row follows the previous one in the same ticker's sequence


def non_overlapping_sample(index: pd.DataFrame) -> TailSample:
    """Every step-1 forecast; at step h > 1 every h-th base date of each ticker's step-h forecasts.

    Step-h forecasts made on consecutive days cover overlapping h-day windows, so their hits share
    h - 1 daily moves and cluster by construction: Kupiec's binomial likelihood and Christoffersen's
    Markov test assume hits that are independent under the null, and would reject a correct forecaster.
    Keeping each ticker's 1st, (h+1)th, (2h+1)th ... base date makes the windows disjoint.
    """
    missing = {"ticker", "base_date", "horizon"} - set(index.columns)
    if missing:
        raise ValueError(f"the index needs the columns ticker, base_date and horizon; missing {sorted(missing)}")
    ticker = pd.factorize(index["ticker"])[0]  # (rows,)
    day = pd.factorize(index["base_date"], sort=True)[0]  # (rows,) codes in date order
    step = index["horizon"].to_numpy(np.int64)  # (rows,)
    if step.size and step.min() < 1:
        raise ValueError(f"horizon steps start at 1, got {int(step.min())}")
    # by step, then ticker, then base date: one int64 key sorts 1.6M rows ~7x faster than np.lexsort of three
    step_code, _ = pd.factorize(step, sort=True)
    key = (step_code * (ticker.max(initial=0) + 1) + ticker) * (day.max(initial=0) + 1) + day  # (rows,)
    order = np.argsort(key)  # the keys are unique unless a forecast is duplicated, which raises below
    s, t, d = step[order], ticker[order], day[order]
    new_sequence = np.r_[True, (s[1:] != s[:-1]) | (t[1:] != t[:-1])]  # (rows,) first of a (step, ticker) run
    if np.any(~new_sequence[1:] & (d[1:] == d[:-1])):
        raise ValueError("the index has two forecasts of one (ticker, base_date, horizon)")
    run = np.cumsum(new_sequence) - 1  # (rows,) which (step, ticker) run
    position = np.arange(order.size) - np.flatnonzero(new_sequence)[run]  # (rows,) within the ticker's run
    keep = position % s == 0
    kept_run, kept_step = run[keep], s[keep]
    new_step = np.r_[True, kept_step[1:] != kept_step[:-1]]
    return TailSample(
        rows=order[keep],
        steps=kept_step[new_step],
        starts=np.flatnonzero(new_step),
        continues=np.r_[False, kept_run[1:] == kept_run[:-1]],
    )


def _levels(levels, quantiles: dict[str, np.ndarray], rows: int) -> tuple[float, ...]:
    levels = tuple(float(q) for q in levels)
    for name, q in quantiles.items():
        if np.shape(q) != (rows, len(levels)):
            raise ValueError(
                f"quantiles of {name!r} must be (rows, levels) = ({rows}, {len(levels)}), got {np.shape(q)}"
            )
    return levels


def tail_backtests(
    index: pd.DataFrame, y: np.ndarray, quantiles: dict[str, np.ndarray], levels: Sequence[float]
) -> pd.DataFrame:
    """Kupiec and Christoffersen tests of every forecaster's tail quantiles, per horizon step and level.

    At step 1 every forecast is used; at step h > 1 each ticker's every h-th base date, so that the h-day
    windows do not overlap (`non_overlapping_sample`). Christoffersen's sequences are each ticker's hits
    in date order on that sample; transitions are pooled over tickers, never counted across two.

    Args:
        index: one row per forecast with the columns ticker, base_date, horizon, in any order.
        y: the outcomes (rows,), in the units of the quantiles (e.g. 100 * cumulative log return).
        quantiles: forecaster -> (rows, Q) quantiles at `levels`.
        levels: the Q quantile levels; the median gets no row.

    Returns:
        One row per forecaster, horizon step and tail level: TAIL_COLUMNS.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.size != len(index):
        raise ValueError(f"y must have one outcome per index row ({len(index)}), got {y.size}")
    levels = _levels(levels, quantiles, len(index))
    tails = [k for k, level in enumerate(levels) if not is_median(level)]
    expected = [expected_rate(levels[k]) for k in tails]
    below = np.array([levels[k] < 0.5 for k in tails])  # (T,) lower tail: a hit is y < q
    sample = non_overlapping_sample(index)
    y_kept = y[sample.rows]  # (m,)
    if not np.isfinite(y_kept).all():
        raise ValueError("y must be finite: a NaN outcome would count as no exceedance")
    n = np.diff(np.r_[sample.starts, sample.rows.size])  # (S,) observations per step
    # a transition is (row i-1, row i) where row i continues a ticker's sequence; counted at row i
    transitions = np.add.reduceat(sample.continues, sample.starts, dtype=np.int64) if n.size else n  # (S,)
    records = []
    for name, q in quantiles.items():
        q_kept = np.asarray(q, dtype=np.float64)[sample.rows][:, tails]  # (m, T)
        if not np.isfinite(q_kept).all():
            raise ValueError(f"the quantiles of {name!r} must be finite on every forecast tested")
        hits = np.where(below, y_kept[:, None] < q_kept, y_kept[:, None] > q_kept)  # (m, T)
        prev = np.vstack([np.zeros((1, len(tails)), dtype=bool), hits[:-1]]) & sample.continues[:, None]  # (m, T)
        counts: dict[str, np.ndarray] = {}  # count -> (S, T): per step block and tail level
        for key, pairs in (
            ("x", hits),
            ("n11", prev & hits),
            ("n10", prev & ~hits),
            ("n01", ~prev & hits & sample.continues[:, None]),
        ):
            counts[key] = np.add.reduceat(pairs, sample.starts, axis=0, dtype=np.int64) if n.size else pairs[:0]
        for i, step in enumerate(sample.steps):
            for j, k in enumerate(tails):
                n01, n10, n11 = (int(counts[key][i, j]) for key in ("n01", "n10", "n11"))
                test = _christoffersen_from_counts(
                    int(transitions[i]) - n01 - n10 - n11, n01, n10, n11, int(counts["x"][i, j]), int(n[i]), expected[j]
                )
                records.append(
                    (
                        name,
                        int(step),
                        levels[k],
                        expected[j],
                        test.kupiec.n,
                        test.kupiec.exceedances,
                        test.kupiec.rate,
                        test.kupiec.lr,
                        test.kupiec.p_value,
                        test.independence_lr,
                        test.independence_p,
                        test.cc_lr,
                        test.cc_p,
                        sampling_label(int(step)),
                    )
                )
    return pd.DataFrame.from_records(records, columns=list(TAIL_COLUMNS))


# ---- pinball comparisons ---------------------------------------------------------------------------


def _pinball_rows(q: np.ndarray, y: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """`pinball` of each row (rows,), computed in chunks of rows: the same values, to the bit."""
    return np.concatenate(
        [
            pinball(np.asarray(q)[i : i + PINBALL_CHUNK], y[i : i + PINBALL_CHUNK], levels)
            for i in range(0, len(y), PINBALL_CHUNK)
        ]
    )


def pinball_comparisons(
    index: pd.DataFrame,
    y: np.ndarray,
    quantiles: dict[str, np.ndarray],
    levels: Sequence[float],
    references: Sequence[str],
) -> pd.DataFrame:
    """Diebold-Mariano tests of each forecaster's pinball loss against each reference, per step and overall.

    Every forecast is used (the overlap of h-step windows is what the Newey-West lags >= h - 1 absorb);
    "all" averages each base date over tickers and steps and takes the largest step for the lag rule.
    References absent from `quantiles` are skipped, and no forecaster is compared with itself.

    Args:
        index: one row per forecast with the columns ticker, base_date, horizon, in any order.
        y: the outcomes (rows,), in the units of the quantiles.
        quantiles: forecaster -> (rows, Q) quantiles at `levels`.
        levels: the Q quantile levels.
        references: the forecasters to compare against, e.g. ("garch", "champion").

    Returns:
        COMPARISON_COLUMNS, one row per forecaster, reference and horizon ("all", 1, 2, ...). Read every
        figure as "the forecaster is better" when positive: gain = 1 - pinball / reference's pinball, t
        > 0 when the forecaster's loss is the lower, p_value one-sided for "the forecaster is better".
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.size != len(index):
        raise ValueError(f"y must have one outcome per index row ({len(index)}), got {y.size}")
    levels = _levels(levels, quantiles, len(index))
    if len(index) == 0 or not any(ref in quantiles for ref in references):
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    day, days = pd.factorize(index["base_date"], sort=True)  # (rows,) codes in date order
    step = index["horizon"].to_numpy(np.int64)  # (rows,)
    # rows sorted by step, so that each step's rows are one slice
    order = np.argsort(step, kind="stable")  # (rows,)
    step, day = step[order], day[order]
    edges = np.flatnonzero(np.r_[True, step[1:] != step[:-1], True])  # (S + 1,)
    # "all" takes the largest step for the lag rule
    scopes: list[tuple[str | int, slice, int]] = [("all", slice(0, step.size), int(step[-1]))]
    scopes += [(int(step[a]), slice(a, b), int(step[a])) for a, b in zip(edges[:-1], edges[1:])]
    # (scope, forecaster) -> its daily mean pinball loss (date order) and its mean over the scope's rows:
    # the daily difference of two forecasters is the difference of their daily means (same rows per day)
    daily: dict[tuple[str | int, str], tuple[np.ndarray, float]] = {}
    for name, q in quantiles.items():
        loss = _pinball_rows(q, y, levels)[order]  # (rows,)
        if not np.isfinite(loss).all():
            raise ValueError(f"the pinball loss of {name!r} is not finite on every forecast (NaN quantile or outcome)")
        for scope, rows, _ in scopes:
            daily[scope, name] = (_daily_means(loss[rows], day[rows], len(days)), float(loss[rows].mean()))
    records = []
    for name in quantiles:
        for ref in references:
            if ref not in quantiles or ref == name:
                continue
            for scope, _, horizon in scopes:
                # a = the reference, b = the forecaster: DM's "b is better" is "the forecaster is better"
                (ref_daily, ref_mean), (daily_loss, mean) = daily[scope, ref], daily[scope, name]
                dm = _dm_on_days(ref_daily - daily_loss, ref_mean, mean, horizon)
                records.append((name, ref, scope, dm.gain, dm.t, dm.p_value, dm.n_days, dm.lags))
    return pd.DataFrame.from_records(records, columns=list(COMPARISON_COLUMNS))
