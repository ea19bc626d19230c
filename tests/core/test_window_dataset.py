"""Windows (core): shapes, the chronological split without leakage, the manifest, determinism, features."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from price_frames import staggered_prices

from tickerflow_model.config import WindowConfig
from tickerflow_model.features import compute_features, market_features, market_on
from tickerflow_model.window_dataset import SPLITS, WindowError, build_window_dataset, read_split
from tickerflow_model.windows import fit_scaler, make_windows

CONFIG = WindowConfig(lookback=10, horizon=3, purge_gap=5, min_history=100, part_rows=600)


def _target_dates(frame: pd.DataFrame, index: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """First/last target day of each window, looked up in its ticker's own calendar."""
    rows = []
    for ticker, base_date in zip(index["ticker"], index["base_date"]):
        days = frame.loc[frame["ticker"] == ticker, "date"].to_numpy()
        t = int(np.searchsorted(days, np.datetime64(base_date)))
        rows.append((days[t - CONFIG.lookback + 1], days[t + 1], days[t + horizon]))
    return pd.DataFrame(rows, columns=["first_input", "first_target", "last_target"])


def test_make_windows_shapes_and_targets():
    rng = np.random.default_rng(0)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 50)))
    feats = compute_features(
        prices, ("log_return", "log_volume_change"), {"volume": rng.integers(1, 9, 50).astype(float)}
    )

    x, y, base = make_windows(prices, feats, lookback=7, horizon=3)

    n = 50 - 7 - 3
    assert x.shape == (n, 7, 2) and y.shape == (n, 3) and base.shape == (n,)
    for i in (0, 17, n - 1):
        t = base[i]
        assert t == i + 7
        np.testing.assert_array_equal(x[i], feats[t - 7 : t])  # feature rows of days t-6..t
        np.testing.assert_allclose(y[i], np.log(prices[t + 1 : t + 4] / prices[t]))


def test_split_has_purge_gaps_and_no_window_crosses_a_period(tf_home):
    frame = staggered_prices()
    ds = build_window_dataset(frame, CONFIG, "src", tf_home / "windows")
    cut = ds.manifest["split_dates"]
    train_end, val_end = np.datetime64(cut["train_end"]), np.datetime64(cut["val_end"])
    after_train = np.busday_offset(train_end, CONFIG.purge_gap, roll="forward")
    after_val = np.busday_offset(val_end, CONFIG.purge_gap, roll="forward")

    dates = {}
    for split in SPLITS:
        _, _, index = read_split(ds, split)
        dates[split] = _target_dates(frame, index, CONFIG.horizon).apply(lambda c: c.to_numpy("datetime64[D]"))
    assert (dates["train"]["last_target"] <= train_end).all()
    assert (dates["val"]["first_target"] > after_train).all() and (dates["val"]["last_target"] <= val_end).all()
    assert (dates["test"]["first_target"] > after_val).all()
    # the gap is real: some window would have used it
    assert dates["val"]["first_target"].min() <= np.busday_offset(after_train, 1, roll="forward")
    # one calendar for all tickers: CCC, listed after the training period, has no training windows
    assert ds.manifest["tickers"]["CCC"]["splits"]["train"]["windows"] == 0
    assert ds.manifest["tickers"]["CCC"]["splits"]["test"]["windows"] > 0


def test_scaler_and_training_windows_do_not_depend_on_later_data(tf_home):
    """Rewrite everything after the training period: if anything leaked, training data would change."""
    frame = staggered_prices()
    ds = build_window_dataset(frame, CONFIG, "src", tf_home / "a")
    train_end = np.datetime64(ds.manifest["split_dates"]["train_end"])
    later = frame["date"] > train_end
    shocked = frame.copy()
    rng = np.random.default_rng(7)
    shocked.loc[later, "close"] *= np.exp(np.cumsum(rng.normal(0.05, 0.3, later.sum())))  # wild, trending
    ds2 = build_window_dataset(shocked, CONFIG, "shocked", tf_home / "b")

    x1, y1, i1 = read_split(ds, "train")
    x2, y2, i2 = read_split(ds2, "train")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    pd.testing.assert_frame_equal(i1, i2)
    assert ds.manifest["scaler"] == ds2.manifest["scaler"]
    assert not np.array_equal(read_split(ds, "test")[1], read_split(ds2, "test")[1])  # the shock is visible later

    # and the scaler is exactly the statistics of training-period rows, the market's included
    features = tuple(ds.manifest["window_spec"]["features"])
    assert {"rv_66", "market_vol"} <= set(features)  # `auto` features read long memory and the market
    early = frame[frame["date"] <= train_end]
    market = market_features(early, ds.price_column)
    train_feats = [
        compute_features(
            g[ds.price_column].to_numpy(),
            features,
            {c: g[c].to_numpy() for c in g.columns},
            market_on(market, g["date"].to_numpy("datetime64[ns]")),
        )
        for _, g in early.sort_values("date").groupby("ticker")
        if len(g) > 1
    ]
    expected = fit_scaler(np.concatenate(train_feats))
    np.testing.assert_allclose(ds.scaler.mean, expected.mean, rtol=1e-9)
    np.testing.assert_allclose(ds.scaler.std, expected.std, rtol=1e-9)


def test_manifest_describes_the_dataset(tf_home):
    frame = staggered_prices()
    ds = build_window_dataset(frame, CONFIG, "abc123", tf_home / "windows")
    manifest = json.loads((tf_home / "windows" / ds.dataset_id / "manifest.json").read_text())

    assert manifest["source_hash"] == "abc123" and manifest["dataset_id"] == ds.dataset_id
    assert manifest["schema_version"] >= 2 and manifest["config"]["lookback"] == 10
    assert set(manifest["scaler"]) == {"mean", "std"}
    aaa = manifest["tickers"]["AAA"]
    assert (aaa["rows"], aaa["first_date"], aaa["last_date"]) == (600, "2015-01-01", "2017-04-19")
    for split in SPLITS:
        x, y, index = read_split(ds, split)
        assert manifest["counts"][split] == len(x) == len(y) == len(index)
        assert (
            x.dtype == y.dtype == np.float32
            and x.shape[1:] == (10, len(manifest["window_spec"]["features"]))
            and y.shape[1:] == (3,)
        )
        assert sum(t["splits"][split]["windows"] for t in manifest["tickers"].values()) == len(x)
        aaa_dates = index.loc[index["ticker"] == "AAA", "base_date"]
        assert aaa["splits"][split]["first_base_date"] == str(aaa_dates.min().date())
        assert aaa["splits"][split]["last_base_date"] == str(aaa_dates.max().date())
    # part_rows=600: AAA (600 rows), BBB (600) and CCC (150) each get a part; symbols never name files
    assert manifest["parts"]["train"] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [manifest["tickers"][t]["part"] for t in ("AAA", "BBB", "CCC")] == manifest["parts"]["train"]
    merged = build_window_dataset(
        frame, WindowConfig(**{**CONFIG.to_dict(), "part_rows": 10_000}), "abc123", tf_home / "w"
    )
    assert merged.manifest["parts"]["train"] == ["part-00000.parquet"]
    np.testing.assert_array_equal(read_split(merged, "train")[0], read_split(ds, "train")[0])


def test_same_input_gives_the_same_bytes_and_an_existing_dataset_is_reused(tf_home):
    frame = staggered_prices()
    a = build_window_dataset(frame, CONFIG, "src", tf_home / "a")
    shuffled = frame.sample(frac=1, random_state=1)  # not in canonical order: sorted on the way in
    b = build_window_dataset(shuffled, CONFIG, "src", tf_home / "b")
    for split in SPLITS:
        assert [p.read_bytes() for p in a.part_files(split)] == [p.read_bytes() for p in b.part_files(split)]

    marker = tf_home / "a" / a.dataset_id / "train" / "part-00000.parquet"
    before = marker.stat().st_mtime_ns
    again = build_window_dataset(frame, CONFIG, "src", tf_home / "a")
    assert again.dataset_id == a.dataset_id and marker.stat().st_mtime_ns == before


def test_price_choice_defaults_to_adjusted(tf_home):
    frame = staggered_prices().assign(adj_close=lambda f: f["close"] / 3)
    auto = build_window_dataset(frame, CONFIG, "s", tf_home / "w")
    close = build_window_dataset(frame, WindowConfig(**{**CONFIG.to_dict(), "price": "close"}), "s", tf_home / "w")
    assert auto.price_column == "adj_close" and close.price_column == "close"
    np.testing.assert_allclose(
        read_split(auto, "test")[2]["base_price"] * 3, read_split(close, "test")[2]["base_price"]
    )
    with pytest.raises(WindowError, match="price column 'adj_close' requested"):
        build_window_dataset(staggered_prices(), WindowConfig(price="adj_close"), "s", tf_home / "w")


def test_volume_feature_and_too_little_history(tf_home):
    cfg = WindowConfig(lookback=10, horizon=2, min_history=100, features=("log_return", "log_volume_change"))
    x, _, _ = read_split(build_window_dataset(staggered_prices(), cfg, "s", tf_home / "w"), "val")
    assert x.shape[1:] == (10, 2)
    with pytest.raises(WindowError, match="no ticker has the 700 rows"):
        build_window_dataset(staggered_prices(), WindowConfig(min_history=700), "s", tf_home / "w")


def test_spread_features_are_the_size_of_the_move_and_the_days_range():
    prices = np.array([100.0, 110.0, 99.0, 99.0])
    high = np.array([101.0, 112.0, 105.0, 99.5])
    low = np.array([99.0, 100.0, 98.0, 98.5])
    feats = compute_features(prices, ("log_return", "abs_log_return", "hl_range"), {"high": high, "low": low})  # (3, 3)
    r = np.diff(np.log(prices))
    np.testing.assert_allclose(feats[:, 0], r)
    np.testing.assert_allclose(feats[:, 1], np.abs(r))
    # row t describes day t+1: its own range, nothing from a later day
    np.testing.assert_allclose(feats[:, 2], np.log(high[1:] / low[1:]))
    with pytest.raises(ValueError, match="'hl_range' needs a 'high' column"):
        compute_features(prices, ("log_return", "hl_range"))


def test_range_feature_windows_and_a_missing_column_named(tf_home):
    cfg = WindowConfig(lookback=10, horizon=2, min_history=100, features=("log_return", "abs_log_return", "hl_range"))
    assert cfg.spec.columns == ("high", "low")
    x, _, _ = read_split(build_window_dataset(staggered_prices(), cfg, "s", tf_home / "w"), "val")
    assert x.shape[1:] == (10, 3) and np.isfinite(x).all()
    with pytest.raises(WindowError, match=r"no column\(s\) \['high', 'low'\]"):
        build_window_dataset(staggered_prices().drop(columns=["high", "low"]), cfg, "s2", tf_home / "w")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"features": ("log_return", "range")},
            r"features\n +Value error, unknown feature\(s\) 'range'; the features are 'auto' or any of log_return, ",
        ),
        ({"features": ("abs_log_return",)}, r"the first feature must be 'log_return', got \('abs_log_return',\)"),
        ({"features": ()}, r"features\n +Value error, features: 'auto' or a list of at least one feature, got \(\)"),
        ({"lookback": 1}, r"lookback\n +Input should be greater than or equal to 2 .*input_value=1\b"),
        ({"horizon": 0}, r"horizon\n +Input should be greater than or equal to 1 .*input_value=0\b"),
        ({"price": "open"}, r"price\n +Input should be 'auto', 'close' or 'adj_close' .*input_value='open'"),
        (
            {"train_fraction": 0.9, "val_fraction": 0.2},
            "train_fraction and val_fraction must sum below 1 .* got 0.9 and 0.2",
        ),
        ({"purge_gap": -1}, r"purge_gap\n +Input should be greater than or equal to 0 .*input_value=-1"),
        ({"compression": "zip"}, r"compression\n +Input should be .*input_value='zip'"),
        ({"part_rows": 0}, r"part_rows\n +Input should be greater than or equal to 1 .*input_value=0\b"),
        ({"lookbak": 5}, r"lookbak\n +Extra inputs are not permitted"),
    ],
)
def test_config_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WindowConfig(**kwargs)
