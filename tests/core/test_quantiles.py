"""The quantile core: the pinball loss, level validation and column names, the non-crossing head,
conformal calibration, the bundle round trip, and inference without autograd (no Prefect, no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tickerflow_model.gru as gru_module
from tickerflow_model.calibration import apply_cqr, fit_cqr_margins
from tickerflow_model.config import GRUConfig, WindowSpec
from tickerflow_model.forecaster import Forecaster, ModelSpec
from tickerflow_model.gru import GRUForecaster, ewma_volatility
from tickerflow_model.quantiles import (
    LEGACY_LEVELS,
    QUANTILE_LEVELS,
    central_pairs,
    pinball,
    pinball_loss,
    quantile_column,
    quantile_columns,
    scored_intervals,
    validate_levels,
)
from tickerflow_model.trainer import fit_shrinkage
from tickerflow_model.windows import Scaler

# --- the pinball loss, by hand -----------------------------------------------------------------


def test_pinball_loss_matches_hand_computed_values():
    levels = (0.1, 0.5, 0.9)
    pred = torch.tensor([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])  # (2, Q)
    # y = 0.5: above q10 and q50, below q90 -> 0.1*1.5, 0.5*0.5, 0.1*0.5 = 0.15, 0.25, 0.05
    # y = -2:  below every quantile      -> 0.9*1,   0.5*2,   0.1*3   = 0.9,  1.0,  0.3
    y = torch.tensor([0.5, -2.0])
    expected = (0.15 + 0.25 + 0.05 + 0.9 + 1.0 + 0.3) / 6
    assert float(pinball_loss(pred, y, levels)) == pytest.approx(expected, abs=1e-7)
    # the median's pinball is half the absolute error
    assert float(pinball_loss(torch.tensor([[2.0]]), torch.tensor([-1.0]), (0.5,))) == pytest.approx(1.5)


def test_the_numpy_pinball_and_its_torch_twin_agree():
    rng = np.random.default_rng(1)
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    q = np.sort(rng.standard_normal((40, 3, len(levels))), axis=-1)  # (N, H, Q)
    y = rng.standard_normal((40, 3))  # (N, H)
    by_forecast = pinball(q, y, levels)  # (N, H)
    assert by_forecast.shape == (40, 3)
    assert float(pinball_loss(torch.from_numpy(q), torch.from_numpy(y), levels)) == pytest.approx(by_forecast.mean())
    # one forecast by hand: y = 1 above q = 0 at 0.05 costs 0.05; y = 1 below q = 3 at 0.95 costs 0.05 * 2
    assert pinball(np.array([0.0, 3.0]), 1.0, (0.05, 0.95)) == pytest.approx((0.05 + 0.1) / 2)


def test_pinball_loss_is_minimized_by_the_true_quantile():
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.standard_normal(20_000))
    grid = torch.linspace(0.8, 1.8, 101, dtype=torch.float64)
    losses = [float(pinball_loss(torch.full((len(y), 1), float(g), dtype=torch.float64), y, (0.9,))) for g in grid]
    best = float(grid[int(np.argmin(losses))])
    assert best == pytest.approx(1.2816, abs=0.04)  # the 90% quantile of N(0, 1)


# --- levels and names --------------------------------------------------------------------------


def test_column_names_follow_the_levels():
    assert quantile_columns(LEGACY_LEVELS) == ["q05", "q10", "q25", "q50", "q75", "q90", "q95"]
    # the default adds the risk desk's tails: 1% and 2.5% on each side
    assert quantile_columns(QUANTILE_LEVELS) == [
        "q01", "q025", "q05", "q10", "q25", "q50", "q75", "q90", "q95", "q975", "q99"
    ]  # fmt: skip
    assert quantile_column(0.975) == "q975" and quantile_column(0.025) == "q025"


@pytest.mark.parametrize(
    "levels, problem",
    [
        ((0.1, 0.9), "median"),
        ((0.1, 0.5, 0.8), "symmetric"),
        ((0.5, 0.1, 0.9), "increasing"),
        ((0.0, 0.5, 1.0), r"\(0, 1\)"),
        ("abc", "numbers"),
    ],
)
def test_bad_levels_are_rejected_naming_the_problem(levels, problem):
    with pytest.raises(ValueError, match=problem):
        validate_levels(levels)
    with pytest.raises(ValueError, match="quantiles"):
        GRUConfig(quantiles=levels)


def test_central_pairs_are_the_nested_intervals_widest_first():
    assert central_pairs(LEGACY_LEVELS) == [(0, 6, 0.9), (1, 5, 0.8), (2, 4, 0.5)]
    assert central_pairs(QUANTILE_LEVELS) == [(0, 10, 0.98), (1, 9, 0.95), (2, 8, 0.9), (3, 7, 0.8), (4, 6, 0.5)]
    assert scored_intervals(QUANTILE_LEVELS) == (0.80, 0.90, 0.95, 0.98) and scored_intervals(LEGACY_LEVELS) == (
        0.8,
        0.9,
    )


# --- the network -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_quantiles_never_cross_for_random_inputs_and_random_weights(seed):
    torch.manual_seed(seed)
    net = GRUForecaster(GRUConfig(input_size=2, hidden_size=8, horizon=3))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 3.0)  # far from the initialization: large, arbitrary gaps and medians
    x = torch.randn(64, 15, 2) * 10 ** torch.empty(64, 1, 1).uniform_(-3, 2)  # calm to wild windows
    q = net(x)  # (B, H, Q)
    assert q.shape == (64, 3, len(QUANTILE_LEVELS))
    assert torch.isfinite(q).all()
    assert (torch.diff(q, dim=-1) >= 0).all()


def test_untrained_net_predicts_gaussian_quantiles_scaled_by_ewma_volatility():
    torch.manual_seed(0)
    net = GRUForecaster(GRUConfig(hidden_size=8, horizon=2))
    with torch.no_grad():
        net.head.weight.zero_()  # only the bias speaks: the starting point of training
        x = torch.randn(4, 30, 1) * torch.tensor([0.5, 1.0, 2.0, 4.0])[:, None, None]
        q = net(x)  # (4, 2, Q)
    sigma = ewma_volatility(x[:, :, 0])  # (4,)
    normal = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(QUANTILE_LEVELS))
    expected = sigma[:, None, None] * torch.tensor([1.0, 2.0]).sqrt()[None, :, None] * normal  # (4, 2, Q)
    torch.testing.assert_close(q, expected, atol=1e-5, rtol=1e-4)


def test_ewma_volatility_weights_recent_returns_more_and_reads_only_the_window():
    calm_then_wild = torch.cat([torch.full((1, 30), 0.1), torch.full((1, 30), 2.0)], dim=1)
    wild_then_calm = calm_then_wild.flip(-1)
    r = calm_then_wild[0].double().numpy()
    w = 0.94 ** np.arange(59, -1, -1)  # the newest return weighs 1, one day older 0.94, ...
    assert float(ewma_volatility(calm_then_wild)) == pytest.approx(np.sqrt(np.sum(w * r**2) / w.sum()), rel=1e-5)
    assert float(ewma_volatility(calm_then_wild)) > 1.8 > 0.8 > float(ewma_volatility(wild_then_calm))
    assert float(ewma_volatility(torch.zeros(1, 10))) > 0  # a halted stock still has a finite scale


# --- conformal calibration ---------------------------------------------------------------------


def _coverage(q, y, lo, hi):
    return float(np.mean((y >= q[:, :, lo]) & (y <= q[:, :, hi])))


def _miscalibrated(factor: float, n: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of a model whose intervals are `factor` times the true ones: q (n, 2, Q), y (n, 2), scale (n, 2)."""
    true_z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(LEGACY_LEVELS)).numpy()  # (Q,)
    scale = np.exp(rng.normal(0, 0.5, size=(n, 2)))  # (n, H): heteroscedastic
    y = rng.standard_normal((n, 2)) * scale  # (n, H)
    return factor * true_z[None, None, :] * scale[:, :, None], y, scale


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_calibration_moves_coverage_to_nominal_on_a_miscalibrated_model(factor):
    """Two-sided CQR (`narrow=True`): a model too narrow (0.5) or too wide (2) is brought to nominal."""
    rng = np.random.default_rng(1)
    levels = LEGACY_LEVELS
    q_cal, y_cal, s_cal = _miscalibrated(factor, 4000, rng)
    q_test, y_test, s_test = _miscalibrated(factor, 20_000, rng)
    margins = fit_cqr_margins(q_cal, y_cal, s_cal, levels, narrow=True)  # (H, P)
    assert margins.shape == (2, 3)
    assert (margins > 0).all() if factor < 1 else (margins < 0).all()
    calibrated = apply_cqr(q_test, s_test, margins, levels)
    for lo, hi, nominal in central_pairs(levels):
        before, after = _coverage(q_test, y_test, lo, hi), _coverage(calibrated, y_test, lo, hi)
        assert abs(before - nominal) > 0.05  # really miscalibrated
        assert abs(after - nominal) < 0.015, (nominal, before, after)
    assert (np.diff(calibrated, axis=-1) >= 0).all()


def test_default_margins_widen_a_narrow_model_and_leave_a_wide_one_as_it_is():
    rng = np.random.default_rng(3)
    narrow_q, narrow_y, narrow_s = _miscalibrated(0.5, 4000, rng)
    np.testing.assert_array_equal(
        fit_cqr_margins(narrow_q, narrow_y, narrow_s, LEGACY_LEVELS),
        fit_cqr_margins(narrow_q, narrow_y, narrow_s, LEGACY_LEVELS, narrow=True),
    )
    wide_q, wide_y, wide_s = _miscalibrated(2.0, 4000, rng)
    margins = fit_cqr_margins(wide_q, wide_y, wide_s, LEGACY_LEVELS)
    assert (fit_cqr_margins(wide_q, wide_y, wide_s, LEGACY_LEVELS, narrow=True) < 0).all()
    np.testing.assert_array_equal(margins, np.zeros((2, 3)))
    np.testing.assert_array_equal(apply_cqr(wide_q, wide_s, margins, LEGACY_LEVELS), wide_q)


def test_calibrated_quantiles_stay_monotone_whatever_the_margins():
    rng = np.random.default_rng(2)
    q = np.sort(rng.normal(size=(50, 1, 7)), axis=-1)  # (N, H, Q)
    scale = rng.uniform(0.1, 3, size=(50, 1))
    margins = np.array([[-5.0, 3.0, -4.0]])  # shrink the outer interval, widen the inner one
    out = apply_cqr(q, scale, margins, LEGACY_LEVELS)
    assert (np.diff(out, axis=-1) >= 0).all()
    np.testing.assert_array_equal(out[:, :, 3], q[:, :, 3])  # the median is not moved


# --- the forecaster: bundle, point forecast, inference without autograd -------------------------


def small_forecaster(seed=0, horizon=2, lookback=12, calibration=()):
    torch.manual_seed(seed)
    config = GRUConfig(input_size=2, hidden_size=8, horizon=horizon)
    spec = ModelSpec(
        window=WindowSpec(lookback=lookback, horizon=horizon, features=("log_return", "abs_log_return")),
        gru=config,
        scaler=Scaler(mean=(0.0, 0.01), std=(0.02, 0.015)),
        price_column="close",
        shrinkage=(0.5,) * horizon,
        calibration=calibration,
    )
    return Forecaster(spec, GRUForecaster(config))


def prices_frame(n_days=80, tickers=("AAA", "BBB"), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-06", periods=n_days)
    return pd.concat(
        [
            pd.DataFrame({"ticker": t, "date": dates, "close": 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n_days)))})
            for t in tickers
        ],
        ignore_index=True,
    )


def test_bundle_round_trip_gives_identical_quantiles(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 12, 2)).astype(np.float32)
    y = rng.normal(size=(40, 2)).astype(np.float32)
    model = small_forecaster().calibrate(x, y)
    assert len(model.spec.calibration) == 2 and model.spec.quantiles == QUANTILE_LEVELS
    loaded = Forecaster.load(model.save(tmp_path / "bundle"))
    assert loaded.spec == model.spec
    np.testing.assert_array_equal(loaded.predict_quantiles(x), model.predict_quantiles(x))
    np.testing.assert_array_equal(loaded.predict_log_returns(x), model.predict_log_returns(x))


def test_point_forecast_is_the_shrunk_median_and_sits_on_q50():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 12, 2)).astype(np.float32)
    model = small_forecaster(calibration=((0.3, -0.2, 0.1, 0.2, 0.0), (0.5, 0.0, -0.1, 0.1, 0.3)))
    median = QUANTILE_LEVELS.index(0.5)
    raw = model.net(torch.from_numpy(x)).detach().numpy()  # (N, H, Q) target units, unshrunk
    point = model.predict_log_returns(x)
    np.testing.assert_allclose(point, 0.5 * raw[:, :, median] * 0.02, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(model.predict_quantiles(x)[:, :, median], point, rtol=1e-12)


def test_forecast_frame_has_monotone_quantile_columns_in_price_units():
    model = small_forecaster()
    prices = prices_frame()
    out = model.forecast_frame(prices, all_dates=True)
    cols = quantile_columns(QUANTILE_LEVELS)
    assert list(out.columns[:4]) == ["ticker", "date", "horizon", "forecast_close"] and set(cols) <= set(out.columns)
    values = out[cols].to_numpy()
    assert (np.diff(values, axis=1) >= 0).all() and (values > 0).all()
    np.testing.assert_allclose(out["forecast_close"], out["q50"], rtol=1e-12)
    last = model.forecast_frame(prices)  # one forecast per ticker and step, from the last day
    assert len(last) == 2 * 2 and set(cols) <= set(last.columns)


def test_inference_builds_no_autograd_graph_and_runs_in_batches(monkeypatch):
    model = small_forecaster()
    assert all(p.requires_grad for p in model.net.parameters())
    monkeypatch.setattr(gru_module, "INFERENCE_BATCH_SIZE", 16)
    seen = []

    def record(module, inputs, output):
        seen.append((torch.is_grad_enabled(), output.requires_grad, output.grad_fn, len(inputs[0])))

    model.net.head.register_forward_hook(record)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 12, 2)).astype(np.float32)
    y = rng.normal(size=(100, 2)).astype(np.float32)
    model.predict_quantiles(x)
    model.predict_log_returns(x)
    fit_shrinkage(model.net, x, y)
    model.calibrate(x, y)
    model.forecast_frame(prices_frame(n_days=60), all_dates=True)
    # every path ran, batch by batch: 4 over 100 windows (7 batches each), 2 tickers x 48 windows (3 each)
    assert len(seen) == 4 * 7 + 2 * 3
    assert all(grad is False and req is False and fn is None for grad, req, fn, _ in seen)
    assert max(n for *_, n in seen) <= 16


# --- the point forecast's guard toward naive -----------------------------------------------------


def test_shrinkage_keeps_a_real_signal_and_drops_noise_to_naive():
    from tickerflow_model.trainer import shrinkage_from_predictions

    rng = np.random.default_rng(4)
    signal = rng.normal(size=(5000, 2))
    y = 0.3 * signal + rng.normal(size=(5000, 2))  # step 1 and 2 both predictable by `signal`
    kept = shrinkage_from_predictions(signal, y)
    assert kept[0] == pytest.approx(0.3, abs=0.05) and kept[1] == pytest.approx(0.3, abs=0.05)
    # all but unrelated to y: least squares still finds a small positive multiplier, insignificant
    noise = rng.normal(size=5000) + 0.01 * y[:, 0]
    assert np.sum(noise * y[:, 0]) / np.sum(noise**2) > 0
    dropped = shrinkage_from_predictions(np.c_[noise, signal[:, 1]], y)
    assert dropped[0] == 0.0 and dropped[1] > 0.2


def test_diebold_mariano_sign_and_scale():
    from tickerflow_model.trainer import diebold_mariano

    rng = np.random.default_rng(5)
    worse, better = rng.uniform(1, 2, 400), rng.uniform(0, 1, 400)
    assert diebold_mariano(worse, better) > 10 and diebold_mariano(better, worse) < -10
    same = rng.uniform(0, 1, 400)
    assert abs(diebold_mariano(same, same + rng.normal(0, 1e-3, 400))) < 4


def test_forecast_frame_names_the_columns_a_feature_needs():
    torch.manual_seed(0)
    config = GRUConfig(input_size=2, hidden_size=8)
    spec = ModelSpec(
        WindowSpec(lookback=12, horizon=1, features=("log_return", "hl_range")),
        config,
        Scaler((0.0, 0.02), (0.02, 0.01)),
        "close",
    )
    model = Forecaster(spec, GRUForecaster(config))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['high', 'low'\]"):
        model.forecast_frame(prices_frame())
    prices = prices_frame().assign(high=lambda f: f["close"] * 1.01, low=lambda f: f["close"] * 0.99)
    assert (np.diff(model.forecast_frame(prices)[quantile_columns()].to_numpy(), axis=1) >= 0).all()


def test_forecasts_are_priced_in_the_users_close_whatever_price_the_model_reads():
    """A model of the adjusted close forecasts returns from it, priced on the last close the user has (AAPL's
    430 before its 7:1 split, not the adjusted 56): the base price and its column are in the output."""
    from dataclasses import replace

    model = small_forecaster()
    model = Forecaster(replace(model.spec, price_column="adj_close"), model.net)
    adjusted = prices_frame().rename(columns={"close": "adj_close"})
    raw = adjusted.assign(close=adjusted["adj_close"] * 7.0)  # every raw close 7 times the adjusted one
    on_adjusted, on_raw = model.forecast_frame(adjusted), model.forecast_frame(raw)
    assert set(on_adjusted["price_column"]) == {"adj_close"} and set(on_raw["price_column"]) == {"close"}
    last_close = raw.sort_values("date").groupby("ticker")["close"].last()
    np.testing.assert_allclose(on_raw["base_price"], on_raw["ticker"].map(last_close))
    cols = ["forecast_close", *quantile_columns(QUANTILE_LEVELS)]
    # the same returns, on a base 7 times higher
    np.testing.assert_allclose(on_raw[cols].to_numpy(), 7.0 * on_adjusted[cols].to_numpy(), rtol=1e-12)
