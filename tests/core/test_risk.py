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

from tickerflow_model.quantiles import pinball
from tickerflow_model.risk import (
    COMPARISON_COLUMNS,
    TAIL_COLUMNS,
    chi2_sf,
    christoffersen,
    dm_test,
    exceedances,
    expected_rate,
    hac_t,
    independence_lr,
    kupiec_pof,
    newey_west_lags,
    non_overlapping_sample,
    normal_cdf,
    pinball_comparisons,
    tail_backtests,
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


# ---- exceedances ------------------------------------------------------------------------------------


def test_exceedances_lower_tail_below_upper_tail_above_and_no_median():
    y = np.array([-2.0, 0.0, 2.0])
    q = np.array([-1.0, -1.0, 1.0])
    assert exceedances(y, q, 0.05).tolist() == [True, False, False]
    assert exceedances(y, q, 0.95).tolist() == [False, True, True]
    assert expected_rate(0.05) == 0.05 and expected_rate(0.95) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="median"):
        exceedances(y, q, 0.5)


# ---- tail backtests ---------------------------------------------------------------------------------

LEVELS = (0.01, 0.05, 0.5, 0.95, 0.99)
Z = stats.norm.ppf(LEVELS)  # (Q,) the true quantiles of a standard normal


def panel(n_days: dict[str, int], steps: int, seed: int = 0) -> pd.DataFrame:
    """ticker, base_date, horizon for each ticker's first n base days and every step, shuffled."""
    rows = [(t, day, h) for t, n in n_days.items() for day in DAYS[:n] for h in range(1, steps + 1)]
    frame = pd.DataFrame(rows, columns=["ticker", "base_date", "horizon"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_tail_backtests_keep_every_h_th_base_date_per_ticker():
    index = panel({"AAA": 10, "BBB": 7}, steps=3)
    # a hit, at every level, exactly where the base date's position in its ticker is 0, 3, 6, 9
    position = index.groupby("ticker")["base_date"].rank(method="dense").to_numpy() - 1  # (rows,)
    y = np.where(position % 3 == 0, 10.0, 0.0)  # above every quantile at the marked days, inside otherwise
    q = np.tile([-1.0, -1.0, 0.0, 1.0, 1.0], (len(index), 1))
    frame = tail_backtests(index, y, {"f": q}, LEVELS)
    assert list(frame.columns) == list(TAIL_COLUMNS)
    out = frame.set_index(["horizon", "level"])
    # step 1: every day (10 + 7); step 2: days 0,2,4,6,8 and 0,2,4,6 (5 + 4); step 3: 0,3,6,9 and 0,3,6 (4 + 3)
    assert out.xs(0.99, level="level")["n"].to_dict() == {1: 17, 2: 9, 3: 7}
    # at step 3 the sample is exactly the marked days: every one an upper-tail hit
    assert out.loc[(3, 0.99), "exceedances"] == 7 and out.loc[(3, 0.99), "rate"] == 1.0
    assert out.loc[(1, 0.99), "exceedances"] == 4 + 3
    assert out.loc[(3, 0.01), "exceedances"] == 0  # 10 is above the lower quantiles too: no lower-tail break
    assert out.loc[(1, 0.99), "sampling"] == "every day"
    assert out.loc[(3, 0.99), "sampling"] == "non-overlapping: every 3rd day"


def test_tail_backtests_expected_rates_and_no_median_row():
    index = panel({"AAA": 5}, steps=1)
    out = tail_backtests(index, np.zeros(5), {"f": np.tile(Z, (5, 1))}, LEVELS)
    assert out["level"].tolist() == [0.01, 0.05, 0.95, 0.99]
    assert out["expected"].tolist() == pytest.approx([0.01, 0.05, 0.05, 0.01])


def test_tail_backtests_match_a_loop_over_tickers():
    # tickers of different lengths, quantiles of varying quality, three steps: every figure against
    # kupiec_pof and christoffersen on sequences built ticker by ticker with a loop
    rng = np.random.default_rng(5)
    index = panel({"AAA": 40, "BBB": 33, "CCC": 25}, steps=3, seed=1)
    y = rng.standard_normal(len(index))
    quantiles = {"good": np.tile(Z, (len(index), 1)), "narrow": 0.5 * np.tile(Z, (len(index), 1))}
    out = tail_backtests(index, y, quantiles, LEVELS)
    assert len(out) == 2 * 3 * 4
    for row in out.itertuples():
        sequences = []
        for _, g in index[index["horizon"] == row.horizon].groupby("ticker"):
            g = g.sort_values("base_date").iloc[:: row.horizon]  # every h-th base date, from the first
            k = LEVELS.index(row.level)
            sequences.append(exceedances(y[g.index], quantiles[row.forecaster][g.index, k], row.level))
        expected = christoffersen(sequences, row.expected)
        assert row.n == expected.kupiec.n and row.exceedances == expected.kupiec.exceedances
        assert row.kupiec_lr == pytest.approx(expected.kupiec.lr, abs=1e-12)
        assert row.independence_lr == pytest.approx(expected.independence_lr, abs=1e-12)
        assert row.cc_p == pytest.approx(expected.cc_p, abs=1e-12)


def test_tail_backtests_do_not_join_two_tickers_sequences():
    index = pd.DataFrame({"ticker": ["A"] * 4 + ["B"] * 4, "base_date": np.r_[DAYS[:4], DAYS[4:8]], "horizon": 1})
    y = np.array([0, 0, 0, 5, 5, 0, 0, 0], dtype=float)  # A's last day and B's first day break the 99% level
    q = np.tile([-1.0, -1.0, 0.0, 1.0, 1.0], (8, 1))
    row = tail_backtests(index, y, {"f": q}, LEVELS).set_index("level").loc[0.99]
    assert row["independence_lr"] == pytest.approx(0.40271027101377747, rel=1e-12)  # the by-hand (4, 1, 1, 0) case


def test_tail_backtests_accept_true_quantiles_and_reject_a_far_too_narrow_tail():
    # iid N(0, 1) outcomes, 20 tickers x 250 days, fixed seed: the true quantiles pass at 1%, a 1% quantile
    # at the true 10% quantile (10 times too many breaks) fails
    rng = np.random.default_rng(11)
    index = panel({f"T{i:02d}": 250 for i in range(20)}, steps=1)
    y = rng.standard_normal(len(index))
    truth = np.tile(Z, (len(index), 1))
    narrow = truth.copy()
    narrow[:, 0] = stats.norm.ppf(0.10)
    out = tail_backtests(index, y, {"truth": truth, "narrow": narrow}, LEVELS).set_index(["forecaster", "level"])
    assert (out.loc["truth", ["kupiec_p", "independence_p", "cc_p"]] > 0.01).all().all()
    assert out.loc[("narrow", 0.01), "rate"] > 0.08
    assert out.loc[("narrow", 0.01), "kupiec_p"] < 1e-6 and out.loc[("narrow", 0.01), "cc_p"] < 1e-6
    assert out.loc[("narrow", 0.99), "kupiec_p"] > 0.01  # the other tail is still the true one


def test_overlapping_windows_would_cluster_the_hits_that_the_sample_keeps_apart():
    # a random walk's true 5-step quantiles: on every base day the hits cluster (windows share 4 shocks),
    # on every 5th base day they do not
    rng = np.random.default_rng(7)
    n_days, h, tickers = 300, 5, 8
    index = panel({f"T{i}": n_days for i in range(tickers)}, steps=h)
    shocks = rng.standard_normal((tickers, n_days + h))
    ticker_no = index["ticker"].str[1:].astype(int).to_numpy()
    day_no = np.searchsorted(DAYS, index["base_date"].to_numpy())
    step = index["horizon"].to_numpy()
    cum = np.cumsum(shocks, axis=1)
    y = cum[ticker_no, day_no + step] - cum[ticker_no, day_no]  # (rows,) the step-h cumulative return
    truth = np.sqrt(step)[:, None] * Z  # (rows, Q)
    row = tail_backtests(index, y, {"truth": truth}, LEVELS).set_index(["horizon", "level"]).loc[(h, 0.05)]
    assert row["n"] == tickers * n_days // h
    assert row["independence_p"] > 0.01 and row["cc_p"] > 0.01
    every_day = [
        exceedances(y[g.sort_values("base_date").index], truth[g.sort_values("base_date").index, 1], 0.05)
        for _, g in index[index["horizon"] == h].groupby("ticker")
    ]
    assert christoffersen(every_day, 0.05).independence_p < 1e-6


def test_non_overlapping_sample_refuses_a_duplicated_forecast():
    index = pd.DataFrame({"ticker": ["A", "A"], "base_date": [DAYS[0], DAYS[0]], "horizon": [1, 1]})
    with pytest.raises(ValueError, match="two forecasts"):
        non_overlapping_sample(index)


# ---- pinball comparisons ----------------------------------------------------------------------------


def comparison_case():
    rng = np.random.default_rng(13)
    index = panel({f"T{i}": 150 for i in range(6)}, steps=2)
    y = rng.standard_normal(len(index))
    truth = np.tile(Z, (len(index), 1))
    quantiles = {"model": truth, "garch": 1.6 * truth, "ewma": 1.1 * truth}  # garch far too wide
    return index, y, quantiles


def test_pinball_comparisons_columns_scopes_and_no_self_comparison():
    index, y, quantiles = comparison_case()
    out = pinball_comparisons(index, y, quantiles, LEVELS, references=("garch", "champion"))  # no champion here
    assert list(out.columns) == list(COMPARISON_COLUMNS)
    assert set(out["reference"]) == {"garch"}
    assert not (out["forecaster"] == out["reference"]).any()
    assert out.groupby("forecaster")["horizon"].apply(list).to_dict() == {
        "model": ["all", 1, 2],
        "ewma": ["all", 1, 2],
    }
    assert pinball_comparisons(index, y, quantiles, LEVELS, references=("champion",)).empty


def test_pinball_comparisons_sign_reads_forecaster_better():
    index, y, quantiles = comparison_case()
    out = pinball_comparisons(index, y, quantiles, LEVELS, references=("garch", "model"))
    rows = out.set_index(["forecaster", "reference", "horizon"])
    better = rows.loc[("model", "garch", "all")]
    assert better["gain"] > 0 and better["t"] > 3 and better["p_value"] < 0.01
    worse = rows.loc[("garch", "model", "all")]
    assert worse["gain"] < 0 and worse["t"] == pytest.approx(-better["t"]) and worse["p_value"] > 0.99
    # the figures are dm_test's with the reference as a and the forecaster as b, on the step's rows
    loss = {name: pinball(q, y, LEVELS) for name, q in quantiles.items()}
    step2 = (index["horizon"] == 2).to_numpy()
    dm = dm_test(loss["garch"][step2], loss["model"][step2], index["base_date"][step2], horizon=2)
    assert rows.loc[("model", "garch", 2), "t"] == pytest.approx(dm.t, rel=1e-9)
    assert rows.loc[("model", "garch", 2), "gain"] == pytest.approx(dm.gain, rel=1e-9)
    assert rows.loc[("model", "garch", 2), "n_days"] == 150
    overall = dm_test(loss["garch"], loss["model"], index["base_date"], horizon=2)
    assert rows.loc[("model", "garch", "all"), "t"] == pytest.approx(overall.t, rel=1e-9)
    assert rows.loc[("model", "garch", "all"), "lags"] == newey_west_lags(150, 2)
