"""The risk backtests against values computed by hand, loop-by-hand oracles and simulated data with a known answer.

The literal likelihood ratios below were computed independently of `risk.py`, with mpmath at 30 digits
from the simplified forms written next to each (e.g. Kupiec's LR as 2 [(n - x) ln((1 - x/n) / (1 - p)) +
x ln((x/n) / p)]); the p-values are checked against scipy, which the core may not import but a test may.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tickerflow_model.risk import (
    chi2_sf,
    christoffersen,
    dm_test,
    hac_t,
    independence_lr,
    kupiec_pof,
    newey_west_lags,
    normal_cdf,
)

# ---- distributions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("x", [0.0, 1e-6, 0.5, 1.0, 3.841458820694124, 6.6348966, 20.0, 80.0])
def test_chi2_survival_and_normal_cdf_match_scipy(x):
    assert chi2_sf(x, 1) == pytest.approx(stats.chi2.sf(x, 1), rel=1e-12, abs=1e-300)
    assert chi2_sf(x, 2) == pytest.approx(stats.chi2.sf(x, 2), rel=1e-12, abs=1e-300)
    assert normal_cdf(x - 3.0) == pytest.approx(stats.norm.cdf(x - 3.0), rel=1e-12)
    with pytest.raises(ValueError, match="df=3"):
        chi2_sf(x, 3)


# ---- Kupiec -----------------------------------------------------------------------------------------


def test_kupiec_by_hand_five_breaks_in_250_days_at_one_percent():
    # LR = 2 [245 ln(0.98 / 0.99) + 5 ln(0.02 / 0.01)] = 2 [245 ln(98/99) + 5 ln 2]
    result = kupiec_pof(5, 250, 0.01)
    assert result.lr == pytest.approx(1.9568097882306296, rel=1e-12)
    assert result.p_value == pytest.approx(stats.chi2.sf(1.9568097882306296, 1), rel=1e-12)
    assert result.rate == 0.02 and result.n == 250 and result.exceedances == 5


def test_kupiec_at_the_nominal_rate_is_zero_with_p_value_one():
    result = kupiec_pof(25, 500, 0.05)  # x = n p
    assert result.lr == pytest.approx(0.0, abs=1e-9)
    assert result.p_value == pytest.approx(1.0)


def test_kupiec_with_no_break_and_with_every_break():
    # x = 0: the fitted term is 250 ln 1 = 0, so LR = -2 * 250 ln 0.99
    none = kupiec_pof(0, 250, 0.01)
    assert none.lr == pytest.approx(5.0251679267507206, rel=1e-12)
    assert none.p_value == pytest.approx(stats.chi2.sf(5.0251679267507206, 1), rel=1e-12)
    # x = n: LR = -2 n ln p = 8 ln 2 for n = 4, p = 0.5
    every = kupiec_pof(4, 4, 0.5)
    assert every.lr == pytest.approx(5.5451774444795625, rel=1e-12)
    assert every.rate == 1.0


@pytest.mark.parametrize(("x", "n", "p"), [(3, 2, 0.01), (-1, 10, 0.01), (1, 0, 0.01), (1, 10, 0.0), (1, 10, 1.0)])
def test_kupiec_refuses_impossible_counts_and_rates(x, n, p):
    with pytest.raises(ValueError):
        kupiec_pof(x, n, p)


# ---- Christoffersen ---------------------------------------------------------------------------------

# Two tickers' hits. Transitions, within each sequence only:
#   A: 00 01 11 10 00 00 01 10 00 -> n00 4, n01 2, n10 2, n11 1
#   B: 01 10 00 00 00 01 11 11 10 -> n00 3, n01 2, n10 2, n11 2
# pooled: n00 7, n01 4, n10 4, n11 3; 7 hits in 20 days.
HITS_A = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
HITS_B = np.array([0, 1, 0, 0, 0, 0, 1, 1, 1, 0], dtype=bool)


def test_christoffersen_counts_and_independence_lr_by_hand():
    result = christoffersen([HITS_A, HITS_B], 0.05)
    assert (result.n00, result.n01, result.n10, result.n11) == (7, 4, 4, 3)
    # pi01 = 4/11, pi11 = 3/7, pi = 7/18:
    # LR = -2 [11 ln(11/18) + 7 ln(7/18)] + 2 [7 ln(7/11) + 4 ln(4/11) + 4 ln(4/7) + 3 ln(3/7)]
    assert result.independence_lr == pytest.approx(0.07563270428614676, rel=1e-12)
    assert result.independence_p == pytest.approx(stats.chi2.sf(0.07563270428614676, 1), rel=1e-12)
    # conditional coverage: Kupiec on all 20 days (7 hits) plus the independence LR, chi-square(2)
    assert result.kupiec == kupiec_pof(7, 20, 0.05)
    assert result.cc_lr == pytest.approx(result.kupiec.lr + 0.07563270428614676, rel=1e-12)
    assert result.cc_p == pytest.approx(stats.chi2.sf(result.cc_lr, 2), rel=1e-12)


def test_christoffersen_never_counts_a_transition_across_two_tickers():
    # the last day of the first ticker and the first day of the second are both hits
    first, second = np.array([0, 0, 0, 1], dtype=bool), np.array([1, 0, 0, 0], dtype=bool)
    apart = christoffersen([first, second], 0.05)
    assert (apart.n00, apart.n01, apart.n10, apart.n11) == (4, 1, 1, 0)
    # pi01 = 1/5, pi11 = 0, pi = 1/6: LR = -2 [5 ln(5/6) + ln(1/6)] + 2 [4 ln(4/5) + ln(1/5)]
    assert apart.independence_lr == pytest.approx(0.40271027101377747, rel=1e-12)
    # joined into one sequence, the 1 -> 1 across the boundary would count: n11 = 1 and another LR
    joined = christoffersen([np.r_[first, second]], 0.05)
    assert joined.n11 == 1
    assert joined.independence_lr == pytest.approx(0.5991612825719413, rel=1e-12)


@pytest.mark.parametrize(
    "sequences",
    [
        [np.zeros(10, bool), np.zeros(5, bool)],  # no hit
        [np.ones(10, bool), np.ones(3, bool)],  # every day a hit
        [np.r_[np.zeros(9, bool), True]],  # one hit, on the last day: no transition out of state 1
        [np.array([True]), np.array([False]), np.array([], dtype=bool)],  # no transition at all
    ],
)
def test_christoffersen_degenerate_counts_are_finite_with_zero_independence_lr(sequences):
    result = christoffersen(sequences, 0.01)
    assert result.independence_lr == 0.0 and result.independence_p == 1.0
    assert all(np.isfinite(v) for v in (result.kupiec.lr, result.cc_lr, result.cc_p, result.kupiec.p_value))
    assert result.cc_lr == pytest.approx(result.kupiec.lr)


def test_independence_lr_is_zero_for_a_chain_without_memory():
    # pi01 = pi11 = 1/4: the Markov chain fits nothing the iid null does not
    assert independence_lr(30, 10, 3, 1) == pytest.approx(0.0, abs=1e-12)
    assert independence_lr(30, 10, 1, 3) > 3.0  # pi11 = 3/4 against pi01 = 1/4: clustered hits


# ---- Newey-West -------------------------------------------------------------------------------------


def loop_hac_t(d: list[float], lags: int) -> float:
    """The Newey-West t statistic written out with plain loops."""
    n = len(d)
    mean = sum(d) / n
    var = 0.0
    for lag in range(lags + 1):
        gamma = sum((d[t] - mean) * (d[t - lag] - mean) for t in range(lag, n)) / n
        var += gamma if lag == 0 else 2.0 * (1.0 - lag / (lags + 1.0)) * gamma
    return mean / math.sqrt(var / n)


@pytest.mark.parametrize("lags", [0, 1, 3, 7])
def test_hac_t_matches_a_loop_computation(lags):
    rng = np.random.default_rng(3)
    d = 0.2 + np.convolve(rng.standard_normal(80), np.ones(4) / 4, mode="valid")  # an MA(3): autocorrelated
    assert hac_t(d, lags) == pytest.approx(loop_hac_t(list(d), lags), rel=1e-12)


def test_hac_t_without_lags_is_the_iid_t():
    d = np.array([0.3, -0.1, 0.8, 0.25, 0.4, -0.2, 0.6])
    assert hac_t(d, 0) == pytest.approx(d.mean() / (d.std(ddof=0) / math.sqrt(d.size)), rel=1e-12)


def test_hac_t_is_zero_without_variance_or_observations():
    assert hac_t(np.full(50, 0.1), 3) == 0.0  # 0.1 is not exact in binary: the centred values are rounding noise
    assert hac_t(np.zeros(10), 2) == 0.0
    assert hac_t(np.array([1.5]), 0) == 0.0


def test_newey_west_lags_rule():
    assert newey_west_lags(100, 1) == 4  # floor(4 * 1^(2/9))
    assert newey_west_lags(500, 1) == math.floor(4 * 5 ** (2 / 9))  # 5
    assert newey_west_lags(100, 10) == 9  # the h - 1 overlap dominates
    assert newey_west_lags(0, 1) == 0


# ---- Diebold-Mariano --------------------------------------------------------------------------------

DAYS = pd.bdate_range("2024-01-02", periods=300).to_numpy()


def test_dm_t_is_positive_when_b_has_the_lower_loss():
    rng = np.random.default_rng(0)
    loss_a = 1.0 + 0.1 * rng.standard_normal(300)
    loss_b = 0.5 + 0.1 * rng.standard_normal(300)
    b_better = dm_test(loss_a, loss_b, DAYS, horizon=1)
    assert b_better.t > 5 and b_better.p_value < 1e-6
    assert b_better.gain == pytest.approx(1 - loss_b.mean() / loss_a.mean())
    assert b_better.gain > 0.4
    a_better = dm_test(loss_b, loss_a, DAYS, horizon=1)  # swapped: a is now the better one
    assert a_better.t == pytest.approx(-b_better.t) and a_better.p_value > 1 - 1e-6 and a_better.gain < 0


def test_dm_averages_the_tickers_of_one_date_into_one_observation():
    rng = np.random.default_rng(1)
    days = np.repeat(DAYS[:120], 2)  # two tickers a day
    loss_a, loss_b = rng.gamma(2.0, size=240), rng.gamma(2.0, size=240)
    shuffle = rng.permutation(240)  # the rows in any order: the dates set the order
    result = dm_test(loss_a[shuffle], loss_b[shuffle], days[shuffle], horizon=3)
    daily = (loss_a - loss_b).reshape(120, 2).mean(axis=1)  # (days,) date order
    assert result.n_days == 120
    assert result.lags == newey_west_lags(120, 3)
    assert result.t == pytest.approx(hac_t(daily, result.lags), rel=1e-12)
    # two tickers whose differences cancel on every date leave nothing to test
    cancel = dm_test(
        np.r_[np.ones(120), np.zeros(120)], np.r_[np.zeros(120), np.ones(120)], np.r_[DAYS[:120], DAYS[:120]], 1
    )
    assert cancel.t == 0.0 and cancel.n_days == 120


def test_dm_noise_is_not_significant_and_a_shift_is():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(300)
    assert abs(dm_test(noise, np.zeros(300), DAYS, horizon=1).t) < 2.0
    assert dm_test(noise + 0.4, np.zeros(300), DAYS, horizon=1).t > 4.0  # expected t = 0.4 sqrt(300) ~ 6.9


def test_dm_refuses_mismatched_or_missing_losses():
    with pytest.raises(ValueError, match="one length"):
        dm_test(np.ones(3), np.ones(4), DAYS[:3], 1)
    with pytest.raises(ValueError, match="finite"):
        dm_test(np.array([1.0, np.nan]), np.ones(2), DAYS[:2], 1)
