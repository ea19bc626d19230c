"""Universe scale: the lean split reader, one validation pass, ticker runs, inference under the thread cap and
bounded-memory scoring each give exactly what the code they replaced gave (no Prefect, no MLflow, no timing)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from price_frames import make_prices
from tiny_models import TINY, untrained_forecaster

import tickerflow_model.fitting as fitting
import tickerflow_model.forecaster as forecaster_module
from tickerflow_model.config import GRUConfig, WindowConfig
from tickerflow_model.evaluation import evaluate_forecaster, predict_test_split, ticker_runs
from tickerflow_model.fitting import fit_forecaster
from tickerflow_model.forecaster import Forecaster, ModelSpec
from tickerflow_model.gru import GRUForecaster, predict_batched
from tickerflow_model.metrics import distribution_terms, point_terms
from tickerflow_model.quantiles import QUANTILE_LEVELS
from tickerflow_model.scoring import _finish, metric_frames
from tickerflow_model.splits import WindowError
from tickerflow_model.trainer import fit_shrinkage, weighted_pinball
from tickerflow_model.window_dataset import _schema, build_window_dataset, read_split

# several parts (part_rows) of several row groups each (row_group_size): the reader meets many chunks
CONFIG = WindowConfig(
    lookback=10,
    horizon=2,
    min_history=50,
    features=("log_return", "log_volume_change"),
    part_rows=300,
    row_group_size=16,
)


@pytest.fixture
def prices() -> pd.DataFrame:
    # histories that start on different days and end on the same one: runs of windows of unequal lengths
    frames = [
        make_prices(n_days=260, tickers=(t,), seed=i).iloc[260 - n :]
        for i, (t, n) in enumerate((("CCC", 260), ("AAA", 200), ("BBB", 230)))
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def dataset(prices, tmp_path):
    return build_window_dataset(prices, CONFIG, "src", tmp_path / "windows")


# ---- 1. read_split: arrays allocated once, filled part by part ----------------------------------------


def read_split_as_whole_tables(dataset, split: str):
    """The reader it replaced: every part into one table, combined, copied into writable arrays."""
    spec = dataset.spec
    tables = [pq.read_table(path) for path in dataset.part_files(split)]
    table = pa.concat_tables(tables) if tables else _schema(spec).empty_table()
    n = table.num_rows
    x = table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False, writable=True)
    y = table.column("y").combine_chunks().flatten().to_numpy(zero_copy_only=False, writable=True)
    index = table.select(["ticker", "base_date", "base_price"]).to_pandas()
    return x.reshape(n, spec.lookback, spec.n_features), y.reshape(n, spec.horizon), index


def test_read_split_gives_the_arrays_and_index_of_whole_tables(dataset):
    assert len(dataset.part_files("train")) > 1
    assert pq.ParquetFile(dataset.part_files("train")[0]).metadata.num_row_groups > 1
    for split in ("train", "val", "test"):
        x, y, index = read_split(dataset, split)
        x0, y0, index0 = read_split_as_whole_tables(dataset, split)
        assert x.dtype == x0.dtype == np.float32 and y.dtype == np.float32
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)
        pd.testing.assert_frame_equal(index, index0)
        assert x.flags.writeable and x.flags.c_contiguous
        x_bare, y_bare, none = read_split(dataset, split, with_index=False)
        assert none is None
        np.testing.assert_array_equal(x_bare, x0)
        np.testing.assert_array_equal(y_bare, y0)


def test_read_split_names_parts_that_disagree_with_the_manifest(dataset):
    dataset.manifest["counts"]["val"] += 1
    with pytest.raises(WindowError, match="val parts .* hold"):
        read_split(dataset, "val")


# ---- 2 and 4. the fit: one validation pass, under the training's thread cap -------------------------


def test_the_fit_reuses_the_best_epochs_validation_pass_and_gets_the_numbers_of_a_fresh_pass(dataset, monkeypatch):
    passes = []

    def counted(net, x, *args, **kwargs):
        passes.append((len(x), torch.get_num_threads()))
        return predict_batched(net, x, *args, **kwargs)

    monkeypatch.setattr(fitting, "predict_batched", counted)
    config = TINY.updated(epochs=2, cpu_threads=1, precision="bf16")  # trained under bf16 autocast
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit = fit_forecaster(dataset, config)
        assert passes == []  # no pass after training: the best epoch's validation predictions serve
        assert torch.get_num_threads() == 2  # the process gets its setting back

        # A fit whose best epoch was trained before a resume makes one pass, at the training's thread
        # cap, and gets the same forecaster to the bit.
        real_train_model = fitting.train_model
        monkeypatch.setattr(
            fitting, "train_model", lambda *a, **k: dataclasses.replace(real_train_model(*a, **k), val_predictions=None)
        )
        refit = fit_forecaster(dataset, config)
    finally:
        torch.set_num_threads(before)
    n_val = dataset.manifest["counts"]["val"]
    assert passes == [(n_val, 1)]
    assert refit.forecaster.spec == fit.forecaster.spec

    # the same numbers as the separate shrinkage and calibration passes
    x_val, y_val, _ = read_split(dataset, "val")
    net = fit.forecaster.net
    shrinkage = fit_shrinkage(net, x_val, y_val)
    spec = ModelSpec(dataset.spec, net.config, dataset.scaler, dataset.price_column, shrinkage)
    assert fit.shrinkage == shrinkage
    assert fit.forecaster.spec == Forecaster(spec, net).calibrate(x_val, y_val).spec
    assert fit.margins and len(fit.margins) == dataset.spec.horizon

    # the validation loss that chose the epoch is the fp32 loss of the network as it is served, in the
    # units the training's loss weight names
    q, scale = predict_batched(net, x_val)
    served = weighted_pinball(
        torch.from_numpy(q / scale[:, :, None]),
        torch.from_numpy(scale),
        torch.from_numpy(y_val),
        QUANTILE_LEVELS,
        config.loss_weight,
        net.horizon_scale,
    )
    assert fit.best_val_loss == pytest.approx(float(served), rel=1e-6)


@pytest.mark.parametrize("calibration, narrow", [("widen", False), ("cqr", True)])
def test_the_fit_calibrates_as_the_train_config_says(dataset, monkeypatch, calibration, narrow):
    asked = []
    real = Forecaster.calibrated_on

    def recorded(self, *args, **kwargs):
        asked.append(kwargs.get("narrow"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Forecaster, "calibrated_on", recorded)
    fit = fit_forecaster(dataset, TINY.updated(epochs=1, cpu_threads=1, calibration=calibration))
    assert asked == [narrow]
    if not narrow:
        assert all(m >= 0 for row in fit.margins for m in row)


def test_evaluation_runs_the_network_under_the_thread_cap(prices, dataset, monkeypatch):
    threads = []

    def recorded(net, x, *args, **kwargs):
        threads.append(torch.get_num_threads())
        return predict_batched(net, x, *args, **kwargs)

    monkeypatch.setattr(forecaster_module, "predict_batched", recorded)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate_forecaster(untrained_forecaster(dataset, 1.0), dataset, prices, cpu_threads=1)
        assert threads == [1]
        evaluate_forecaster(untrained_forecaster(dataset, 1.0), dataset, prices)  # 0: torch's own setting
        assert threads == [1, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ---- 3. each ticker's test windows found once --------------------------------------------------------


def test_ticker_runs_are_the_contiguous_rows_of_each_ticker():
    runs = ticker_runs(pd.Series(["BB", "BB", "A", "C", "C", "C"], dtype="str"))
    assert runs == {"BB": slice(0, 2), "A": slice(2, 3), "C": slice(3, 6)}
    assert ticker_runs(pd.Series([], dtype="str")) == {}
    with pytest.raises(ValueError, match="not one contiguous run"):
        ticker_runs(pd.Series(["A", "B", "A"]))


def test_each_ticker_gets_the_forecasts_of_its_own_test_windows(prices, dataset):
    forecaster = untrained_forecaster(dataset, 1.0)
    preds, quantiles, _ = predict_test_split(forecaster, dataset, prices)
    x, _, index = read_split(dataset, "test")
    expected = forecaster.predict_quantiles(x)  # (N, H, Q)
    horizon = dataset.spec.horizon
    assert set(preds["ticker"]) == {"AAA", "BBB", "CCC"}
    for ticker in ("AAA", "BBB", "CCC"):
        rows = np.flatnonzero(index["ticker"].to_numpy() == ticker)
        mine = preds["ticker"].to_numpy() == ticker
        assert mine.sum() == len(rows) * horizon
        np.testing.assert_array_equal(
            preds.loc[mine, "base_date"].to_numpy()[::horizon], index["base_date"].to_numpy()[rows]
        )
        np.testing.assert_array_equal(quantiles["model"][mine], expected[rows].reshape(-1, expected.shape[2]))


# ---- 5. scoring: grouped means without stacking every forecaster's terms ------------------------------


def metric_frames_stacked(predictions, point_columns, quantiles, levels):
    """The scoring it replaced: every forecaster's terms stacked into one frame, then one grouped mean."""
    actual_pct = 100.0 * np.log(predictions["actual"].to_numpy() / predictions["base_price"].to_numpy())
    blocks = []
    for name, column in point_columns.items():
        terms = point_terms(
            predictions[column], predictions["actual"], predictions["base_price"], predictions["mase_scale"]
        )
        if name in quantiles:
            terms.update(distribution_terms(100.0 * quantiles[name], actual_pct, levels))
        block = pd.DataFrame(terms)
        block["forecaster"], block["ticker"], block["horizon"] = (
            name,
            predictions["ticker"].to_numpy(),
            predictions["horizon"].to_numpy(),
        )
        blocks.append(block)
    terms = pd.concat(blocks, ignore_index=True)
    terms["forecaster"] = pd.Categorical(terms["forecaster"], categories=list(point_columns), ordered=True)
    cols = [c for c in terms.columns if c not in ("forecaster", "ticker", "horizon")]
    frames = []
    for by in ([], ["ticker"], ["horizon"]):
        means = terms.groupby([*by, "forecaster"], sort=True, observed=True)[cols].mean()
        frames.append(_finish(means, by))
    return tuple(frames)


def random_predictions(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    tickers = np.repeat(["MM", "B", "ZZZ", "A"], [900, 600, 1200, 300])  # unsorted, unequal runs
    preds = pd.DataFrame(
        {
            "ticker": tickers,
            "horizon": np.tile([1, 2, 3], n // 3),
            "actual": 100 + rng.normal(size=n),
            "base_price": 100 + rng.normal(size=n),
            "mase_scale": 1 + rng.random(n),
            "forecast": 100 + rng.normal(size=n),
            "naive": 100 + rng.normal(size=n),
            "drift": 100 + rng.normal(size=n),
        }
    )
    preds["seasonal_naive"] = np.where(rng.random(n) < 0.05, np.nan, 100 + rng.normal(size=n))  # undefined at times
    q = len(QUANTILE_LEVELS)
    quantiles = {name: np.sort(rng.normal(0, 0.02, (n, q)), axis=1) for name in ("model", "ewma")}
    return preds, quantiles


@pytest.mark.parametrize("with_quantiles", [True, False])
def test_scores_equal_those_of_one_grouped_mean_over_every_forecasters_terms(with_quantiles):
    preds, quantiles = random_predictions()
    if not with_quantiles:
        quantiles = {}  # as the backtest scores its pooled folds
    columns = {
        "model": "forecast",
        "naive": "naive",
        "drift": "drift",
        "seasonal_naive": "seasonal_naive",
        "ewma": "naive",
    }
    old = metric_frames_stacked(preds, columns, quantiles, QUANTILE_LEVELS)
    new = metric_frames(preds, columns, quantiles, QUANTILE_LEVELS)
    for before, after in zip(old, new):
        # the same index (group, forecaster in the given order), columns and values, to the last bit
        assert list(after.index) == list(before.index)
        assert list(after.columns) == list(before.columns)
        np.testing.assert_array_equal(after.to_numpy(), before.to_numpy())


def test_inference_threads_each_run_their_own_batches_and_give_the_one_thread_numbers(monkeypatch):
    torch.manual_seed(0)
    net = GRUForecaster(GRUConfig(input_size=2, horizon=2, hidden_size=16))
    x = np.random.default_rng(1).normal(size=(300, 12, 2)).astype(np.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = predict_batched(net, x, batch_size=32)
        torch.set_num_threads(3)
        seen = []
        net.head.register_forward_hook(
            lambda module, inputs, output: seen.append((threading.current_thread().name, torch.get_num_threads()))
        )
        shared = predict_batched(net, x, batch_size=32)
        assert torch.get_num_threads() == 3  # given back
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(shared[0], alone[0])
    np.testing.assert_array_equal(shared[1], alone[1])
    # 10 batches over 3 Python threads of one intra-op thread each
    assert len(seen) == 10 and {n for _, n in seen} == {1}
    assert {name for name, _ in seen} == {"tickerflow-inference-0", "tickerflow-inference-1", "tickerflow-inference-2"}
