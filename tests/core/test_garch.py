"""The garch baseline against arch's own fit and forecast; no look-ahead; EWMA where a fit fails; servable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from arch import arch_model
from price_frames import gjr_garch_returns, make_prices

from tickerflow_model.baselines import (
    BaselineForecaster,
    GarchFit,
    ewma,
    fit_garch,
    garch,
    garch_quantiles,
)
from tickerflow_model.quantiles import QUANTILE_LEVELS, quantile_columns

LEVELS = QUANTILE_LEVELS


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
    two_day = (mean.sum(1, keepdims=True) + np.sqrt(var.sum(1, keepdims=True)) * z[None, :]) / 100
    np.testing.assert_allclose(ours[:, 1, :], two_day, rtol=1e-9, atol=1e-12)
    assert (np.diff(ours, axis=-1) > 0).all()


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
    assert list(out.columns) == ["ticker", "date", "horizon", "forecast_close", *quantile_columns(LEVELS)]
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
