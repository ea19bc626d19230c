"""The garch baseline against arch's own fit, forecast and simulation; no look-ahead; EWMA where a fit fails;
reproducible; servable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from arch import arch_model
from arch.univariate import GARCH, ConstantMean, StudentsT
from price_frames import gjr_garch_returns, make_prices

from tickerflow_model.baselines import (
    GARCH_PATHS,
    BaselineForecaster,
    GarchFit,
    ewma,
    fit_garch,
    garch,
    garch_quantiles,
)
from tickerflow_model.forecaster import forecast_columns
from tickerflow_model.quantiles import QUANTILE_LEVELS, quantile_columns

LEVELS = QUANTILE_LEVELS
TAIL_LEVELS = (0.01, 0.025, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.975, 0.99)


def gjr_prices(n: int, seed: int = 0) -> np.ndarray:
    """Prices whose log returns follow a GJR-GARCH(1,1) with Student-t(6) innovations."""
    r = gjr_garch_returns(n, seed, omega=2e-6, alpha=0.05, gamma=0.08, beta=0.88, mu=2e-4, dof=6)
    return 50 * np.exp(np.cumsum(np.r_[0.0, r]))


P = gjr_prices(1500)
FIT_END = 1000  # the last day of the fit period


def test_garch_matches_arch_own_fit_and_forecast():
    fit = fit_garch(P, FIT_END)
    assert fit.fallback is None
    # arch used as its documentation shows: fit on the whole series up to last_obs, forecast from each origin
    r = 100 * np.diff(np.log(P))
    res = arch_model(r, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t").fit(last_obs=FIT_END, disp="off")
    np.testing.assert_allclose(list(fit.params.values()), res.params.to_numpy(), rtol=1e-4)

    base = np.arange(FIT_END, 1490)
    ours = garch_quantiles(P, base, 2, LEVELS, res.params.to_dict())  # (n, 2, Q)
    fc = res.forecast(horizon=2, start=FIT_END - 1, reindex=False)
    z = res.model.distribution.ppf(np.asarray(LEVELS), res.params.iloc[-1:])  # standardized t
    mean, var = fc.mean.to_numpy()[: len(base)], fc.variance.to_numpy()[: len(base)]
    one_day = (mean[:, :1] + np.sqrt(var[:, :1]) * z[None, :]) / 100  # (n, Q) one-day quantiles, log returns
    np.testing.assert_allclose(ours[:, 0, :], one_day, rtol=1e-9, atol=1e-12)
    assert (np.diff(ours, axis=-1) > 0).all()


H = 10
ARCH_PATHS = 100_000


def arch_cumulative_paths(params: dict[str, float], base_day: int, horizon: int, seed: int) -> np.ndarray:
    """arch's own simulation of the fitted model from one base day: (S, H) cumulative log returns."""
    r = 100 * np.diff(np.log(P[: base_day + 1]))  # the returns up to the base day, percent
    model = ConstantMean(r, volatility=GARCH(p=1, o=1, q=1), distribution=StudentsT(seed=seed))
    fc = model.forecast(
        pd.Series(params), horizon=horizon, start=len(r) - 1, method="simulation", simulations=ARCH_PATHS
    )
    paths = np.asarray(fc.simulations.values)  # (1, S, H) simulated returns, percent
    return np.cumsum(paths[0], axis=1) / 100  # (S, H)


def t_sum_quantiles(params: dict[str, float], base_day: int, horizon: int, levels) -> np.ndarray:
    """The former h-day read: summed step means and variances through the standardized t quantile. (H, Q)"""
    r = 100 * np.diff(np.log(P[: base_day + 1]))
    model = arch_model(r, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t")
    fc = model.forecast(pd.Series(params), horizon=horizon, start=len(r) - 1)
    mean, var = np.cumsum(fc.mean.to_numpy()[0]), np.cumsum(fc.variance.to_numpy()[0])  # (H,), (H,)
    z = np.asarray(model.distribution.ppf(np.asarray(levels), pd.Series(params).iloc[-1:]))  # (Q,)
    return (mean[:, None] + np.sqrt(var)[:, None] * z[None, :]) / 100


def test_multi_day_quantiles_match_arch_own_simulation():
    params = fit_garch(P, FIT_END).params
    # base days of low, middle and high volatility: each read from a different stretch of the grid
    base = np.arange(FIT_END, 1490)
    model = arch_model(100 * np.diff(np.log(P)), mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t")
    var1 = model.forecast(pd.Series(params), horizon=1, start=FIT_END - 1).variance.to_numpy()[: len(base), 0]
    order = np.argsort(var1)
    days = base[order[[0, len(order) // 2, -1]]]
    assert np.sqrt(var1.max() / var1.min()) > 2.5  # the three sit far apart on the grid

    tau = np.asarray(TAIL_LEVELS)
    ours = garch_quantiles(P, days, H, TAIL_LEVELS, params)  # (3, H, Q)
    # Compared in probability: the share of arch's paths below our quantile. Were both exact, it would be
    # tau; with our GARCH_PATHS and arch's ARCH_PATHS it is off by about
    # sqrt(tau (1 - tau) (1 / ARCH_PATHS + 1 / GARCH_PATHS)) (7.7e-4 at tau = 1%), plus the grid's
    # interpolation error, at most 0.4% of the quantile (bench/garch_sim_error.py), which moves that share
    # by about 2e-4 at tau = 1%. 4.5 standard deviations: about 300 correlated checks, no false alarm.
    tol = 4.5 * np.sqrt(tau * (1 - tau) * (1 / ARCH_PATHS + 1 / GARCH_PATHS))  # (Q,)
    t_sum_off = []
    for i, day in enumerate(days):
        paths = arch_cumulative_paths(params, int(day), H, seed=int(day))  # (S, H)
        share = (paths[:, 1:, None] <= ours[i, 1:][None]).mean(axis=0)  # (H-1, Q)
        assert np.all(np.abs(share - tau) <= tol), np.abs(share - tau) / tol
        # the check has teeth: the former t-sum read fails it
        old = t_sum_quantiles(params, int(day), H, TAIL_LEVELS)  # (H, Q)
        t_sum_off.append(np.max(np.abs((paths[:, 1:, None] <= old[None, 1:]).mean(axis=0) - tau) / tol))
        np.testing.assert_allclose(ours[i, 0], old[0], rtol=1e-9)  # day 1 is the same exact read
    assert min(t_sum_off) > 1.0, t_sum_off


def test_leverage_skews_the_h_day_return_left_where_the_t_sum_is_symmetric():
    """gamma > 0: a fall raises the next days' variance more than a rise of the same size does, so the
    h-day return is skewed left (at h = 2 its third moment is 3 gamma sigma_1^3 E[z^3; z < 0] < 0); the
    t-sum read is symmetric about its mean. The upper tail is thinner than the t-sum's: a sum of h
    shocks is closer to normal than one t(nu) shock, and the rising paths are the ones whose variance
    grew least (alpha alone). The lower tail is left alone: leverage fattens it, summing thins it."""
    params = fit_garch(P, FIT_END).params
    assert params["gamma[1]"] > 2 * params["alpha[1]"] > 0
    day = 1300
    ours = garch_quantiles(P, np.array([day]), H, TAIL_LEVELS, params)[0]  # (H, Q)
    old = t_sum_quantiles(params, day, H, TAIL_LEVELS)  # (H, Q)
    mean = old[:, TAIL_LEVELS.index(0.5)]  # (H,) the t-sum's median is the mean
    median = ours[:, TAIL_LEVELS.index(0.5)]  # (H,)
    down, up = median - ours[:, 0], ours[:, -1] - median  # (H,) distances to the 1% and 99% quantiles
    np.testing.assert_allclose(old[:, -1] - mean, mean - old[:, 0], rtol=1e-9)  # symmetric
    # the margins are several Monte Carlo standard errors (about 1.5% of a 1% tail's distance)
    assert down[-1] > 1.1 * up[-1], (down, up)
    assert ours[-1, -1] - mean[-1] < 0.95 * (old[-1, -1] - mean[-1])


def test_h_day_quantiles_are_reproducible_and_the_same_for_any_batch_of_base_days():
    params = fit_garch(P, FIT_END).params
    base = np.arange(FIT_END, 1490)
    state = np.random.get_state()
    first = garch_quantiles(P, base, H, TAIL_LEVELS, params)
    np.testing.assert_array_equal(first, garch_quantiles(P, base, H, TAIL_LEVELS, params))
    # one base day alone gets exactly its row of the batch: a served forecast is the one evaluation scored
    for i in (0, 137, len(base) - 1):
        np.testing.assert_array_equal(garch_quantiles(P, base[i : i + 1], H, TAIL_LEVELS, params)[0], first[i])
    # numpy's global generator is neither read nor moved
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_quantiles_increase_across_levels_with_the_tail_levels_evaluated_and_served(tmp_path):
    fit = fit_garch(P, FIT_END)
    base = np.arange(FIT_END, 1490)
    q = garch(P, base, H, TAIL_LEVELS, fit)  # (n, H, Q)
    assert np.isfinite(q).all() and (np.diff(q, axis=-1) > 0).all()
    served = BaselineForecaster.fit("garch", {"AAA": P}, {}, horizon=H, levels=TAIL_LEVELS, garch_fits={"AAA": fit})
    frame = pd.DataFrame({"ticker": "AAA", "date": pd.bdate_range("2020-01-01", periods=len(P)), "close": P})
    out = BaselineForecaster.load(served.save(tmp_path / "garch")).forecast_frame(frame)
    columns = quantile_columns(TAIL_LEVELS)
    assert columns[:2] == ["q01", "q025"] and columns[-2:] == ["q975", "q99"]
    last_day = garch(P, np.array([len(P) - 1]), H, TAIL_LEVELS, fit)[0]  # (H, Q)
    np.testing.assert_allclose(np.log(out[columns].to_numpy() / P[-1]), last_day, rtol=1e-9, atol=1e-15)


def test_garch_forecasts_read_nothing_after_their_base_day():
    fit = fit_garch(P, FIT_END)
    cut = 1200
    tampered = P.copy()
    tampered[cut + 1 :] *= np.exp(np.cumsum(np.random.default_rng(3).normal(0.0, 0.1, len(P) - cut - 1)))
    base = np.arange(FIT_END, cut + 1)
    np.testing.assert_array_equal(garch(P, base, 3, LEVELS, fit), garch(tampered, base, 3, LEVELS, fit))
    later = np.arange(cut + 2, 1400)
    assert not np.allclose(garch(P, later, 1, LEVELS, fit), garch(tampered, later, 1, LEVELS, fit))
    # and the fit reads nothing after the fit period
    assert fit_garch(tampered, FIT_END) == fit


@pytest.mark.parametrize(
    "prices, reason",
    [
        (gjr_prices(120), "only 120 returns"),
        (np.full(600, 10.0), "constant or not finite"),
    ],
)
def test_a_failed_fit_falls_back_to_ewma_with_the_reason(prices, reason):
    fit = fit_garch(prices, len(prices) - 1)
    assert fit.params is None and reason in fit.fallback
    base = np.arange(40, len(prices) - 1)
    np.testing.assert_array_equal(garch(prices, base, 1, LEVELS, fit), ewma(prices, base, 1, LEVELS))


def test_servable_garch_forecasts_with_its_fitted_parameters(tmp_path):
    frame = make_prices(n_days=700, tickers=("AAA", "BBB"), seed=4)
    histories = {t: g.sort_values("date")["close"].to_numpy() for t, g in frame.groupby("ticker")}
    fits = {"AAA": fit_garch(histories["AAA"], 500), "BBB": GarchFit(None, "the optimizer did not converge")}
    fitted = BaselineForecaster.fit("garch", histories, {}, horizon=2, garch_fits=fits)
    loaded = BaselineForecaster.load(fitted.save(tmp_path / "garch"))
    assert loaded.spec.garch == {"AAA": fits["AAA"].params}
    assert loaded.spec.fallback == {"BBB": "the optimizer did not converge"}

    out = loaded.forecast_frame(frame)
    assert list(out.columns) == forecast_columns(LEVELS)
    last_day = {t: len(p) - 1 for t, p in histories.items()}
    for ticker, expected in (
        ("AAA", garch_quantiles(histories["AAA"], np.array([last_day["AAA"]]), 2, LEVELS, fits["AAA"].params)),
        ("BBB", ewma(histories["BBB"], np.array([last_day["BBB"]]), 2, LEVELS)),  # its fit failed: EWMA
    ):
        rows = out[out["ticker"] == ticker]
        q = np.log(rows[quantile_columns(LEVELS)].to_numpy() / histories[ticker][-1])  # (H, Q)
        np.testing.assert_allclose(q, expected[0], rtol=1e-9)
    # a ticker it was never fit on is served EWMA, like a failed fit
    other = frame.assign(ticker=frame["ticker"].map({"AAA": "CCC", "BBB": "DDD"}))
    assert sorted(loaded.forecast_frame(other)["ticker"].unique()) == ["CCC", "DDD"]
    assert pd.api.types.is_datetime64_any_dtype(out["date"])
