"""From a window dataset to a calibrated Forecaster: train, shrink toward naive, calibrate.

The one training entry point: the train stage and the walk-forward backtest both call
`fit_forecaster`. It observes nothing itself; callers pass callbacks to watch the epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig
from .forecaster import Forecaster, ModelSpec
from .gru import intra_op_threads, predict_batched
from .quantiles import median_index
from .trainer import EpochStats, shrinkage_from_predictions, train_model
from .window_dataset import WindowDataset, read_split


@dataclass(frozen=True)
class FitResult:
    """The fitted forecaster and what the fit found on the way."""

    forecaster: Forecaster
    best_epoch: int
    best_val_loss: float
    device: str
    precision: str
    history: tuple[EpochStats, ...] = ()
    resumed_from_epoch: int = 0

    @property
    def shrinkage(self) -> tuple[float, ...]:
        """Per horizon step: multiplier of the network's median toward naive (0 = naive)."""
        return self.forecaster.spec.shrinkage

    @property
    def margins(self) -> tuple[tuple[float, ...], ...]:
        """(H, P) conformal margins in volatility units, widest central interval first."""
        return self.forecaster.spec.calibration


def fit_forecaster(
    dataset: WindowDataset,
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> FitResult:
    """Train on the train split (early stopping on val), then fit the shrinkage toward naive and the
    conformal calibration on the validation split. Callbacks as in `train_model`."""
    x_train, y_train, _ = read_split(dataset, "train", with_index=False)
    x_val, y_val, _ = read_split(dataset, "val", with_index=False)
    result = train_model(
        x_train,
        y_train,
        x_val,
        y_val,
        config,
        checkpoint_dir=checkpoint_dir,
        on_epoch=on_epoch,
        on_batch=on_batch,
        on_resume=on_resume,
    )
    del x_train, y_train
    net = result.net  # on the CPU, in eval mode
    # One set of network predictions on the validation windows serves both the shrinkage and the
    # calibration: the best epoch's own validation pass, or a pass now when that epoch was trained
    # before a resume.
    if result.val_predictions is not None:
        net_q, net_scale = (a.astype(np.float64) for a in result.val_predictions)  # (M, H, Q), (M, H)
    else:
        with intra_op_threads(torch.device("cpu"), config.cpu_threads):
            net_q, net_scale = predict_batched(net, x_val)
    spec = ModelSpec(
        window=dataset.spec,
        gru=net.config,
        scaler=dataset.scaler,
        price_column=dataset.price_column,
        shrinkage=shrinkage_from_predictions(net_q[:, :, median_index(net.config.quantiles)], y_val),
    )
    return FitResult(
        forecaster=Forecaster(spec, net).calibrated_on(net_q, net_scale, y_val, narrow=config.calibration == "cqr"),
        best_epoch=result.best_epoch,
        best_val_loss=result.best_val_loss,
        device=result.device,
        precision=result.precision,
        history=tuple(result.history),
        resumed_from_epoch=result.resumed_from_epoch,
    )
