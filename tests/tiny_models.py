"""Tiny models and data the tests share: a random (untrained) GRU forecaster, a small trainer config and
windows with a learnable signal."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from tickerflow_model.config import BacktestConfig, GRUConfig, TrainConfig, WindowConfig, WindowSpec
from tickerflow_model.forecaster import Forecaster, ModelSpec
from tickerflow_model.gru import GRUForecaster
from tickerflow_model.names import MODEL_NAME
from tickerflow_model.windows import Scaler

MODEL = MODEL_NAME  # the registered name of the `champion` fixture's model


def untrained_forecaster(dataset, shrinkage: float, seed: int = 0, lookback: int | None = None) -> Forecaster:
    """A random tiny GRU; shrinkage 0 makes it exactly the naive forecast."""
    torch.manual_seed(seed)
    spec = (
        dataset.spec
        if lookback is None
        else WindowSpec(lookback=lookback, horizon=dataset.spec.horizon, features=dataset.spec.features)
    )
    gru = GRUConfig(input_size=spec.n_features, hidden_size=4, num_layers=1, horizon=spec.horizon)
    model_spec = ModelSpec(spec, gru, dataset.scaler, dataset.price_column, (shrinkage,) * spec.horizon)
    return Forecaster(model_spec, GRUForecaster(gru))


TINY = TrainConfig(epochs=4, batch_size=32, gru={"hidden_size": 8, "num_layers": 1}, patience=10, lr=5e-3, seed=7)


def tiny_data(n=160, lookback=10, seed=0, sign=1.0):
    """Windows whose target is a learnable function of the inputs (sign=-1 flips it)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, lookback, 1)).astype(np.float32)  # (N, L, F)
    y = (sign * (0.8 * x[:, -1, :] - 0.4 * x[:, -2, :])).astype(np.float32)  # (N, 1)
    return x, y


def split(n_train=160, n_val=48):
    x, y = tiny_data(n_train + n_val)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# the evaluation tests' windows, walk-forward folds and a training run small enough for a test
EVAL_WINDOWS = WindowConfig(lookback=10, horizon=2, min_history=50)
BACKTEST = BacktestConfig(folds=2, step=30)
TINY_TRAIN = TrainConfig(epochs=2, gru={"hidden_size": 4, "num_layers": 1}, batch_size=64, seed=0, device="cpu")


class Interrupt(Exception):
    """Stands in for the process dying between epochs."""


def interrupt_after(epoch):
    def on_epoch(stats):
        if stats.epoch == epoch:
            raise Interrupt

    return on_epoch


def fake_dataset(monkeypatch, dataset_id="ds-test"):
    """A WindowDataset stand-in whose splits come from `split()` instead of Parquet files."""
    import tickerflow_model.fitting as fitting

    x, y, xv, yv = split()
    arrays = {"train": (x, y, None), "val": (xv, yv, None)}
    monkeypatch.setattr(fitting, "read_split", lambda dataset, name, with_index=True: arrays[name])
    return SimpleNamespace(
        dataset_id=dataset_id,
        spec=WindowSpec(lookback=10, horizon=1),
        scaler=Scaler(mean=(0.0,), std=(0.01,)),
        price_column="close",
    )
