"""Train: fit the GRU on the window dataset, every epoch logged to MLflow and to the Prefect logs."""

from __future__ import annotations

import time

import mlflow
from prefect import task
from prefect.logging import get_run_logger

from tasks.storage import home_subdir, stable_hash
from tasks.window import WindowDataset, read_split
from tickerflow_model.forecaster import Forecaster, ModelSpec
from tickerflow_model.trainer import EpochStats, TrainConfig, fit_shrinkage, train_model

__all__ = ["TrainConfig", "train", "checkpoint_dir_for"]


def checkpoint_dir_for(dataset: WindowDataset, config: TrainConfig):
    """Same data + same config -> same folder, so a restarted command finds its checkpoint."""
    return home_subdir("checkpoints", stable_hash({"dataset": dataset.dataset_id, "train": config.to_dict()}))


def fit_forecaster(dataset: WindowDataset, config: TrainConfig, run_id: str | None, log) -> Forecaster:
    """Plain function behind the task (also used by benchmarks)."""
    x_train, y_train, _ = read_split(dataset, "train")
    x_val, y_val, _ = read_split(dataset, "val")
    client = mlflow.MlflowClient() if run_id else None

    def on_epoch(s: EpochStats) -> None:
        log.info(
            "epoch %d/%d train_loss=%.5f val_loss=%.5f lr=%.2e %.1fs %.0f samples/s%s",
            s.epoch, config.epochs, s.train_loss, s.val_loss, s.lr, s.epoch_seconds,
            s.samples_per_second, " *best*" if s.best else "",
        )
        if client:
            metrics = {
                "train_loss": s.train_loss,
                "val_loss": s.val_loss,
                "lr": s.lr,
                "epoch_seconds": s.epoch_seconds,
                "samples_per_second": s.samples_per_second,
            }
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[mlflow.entities.Metric(k, float(v), now, s.epoch) for k, v in metrics.items()],
            )

    def on_resume(epoch: int) -> None:
        log.warning("resuming from epoch %d (checkpoint of an unfinished run with the same data and config)", epoch)

    result = train_model(
        x_train, y_train, x_val, y_val, config,
        checkpoint_dir=checkpoint_dir_for(dataset, config), on_epoch=on_epoch, on_resume=on_resume,
    )
    shrinkage = fit_shrinkage(result.net, x_val, y_val)
    log.info(
        "best epoch %d (val_loss %.5f) on %s; validation shrinkage toward naive: %s",
        result.best_epoch, result.best_val_loss, result.device, ", ".join(f"{a:.3f}" for a in shrinkage),
    )
    if client:
        client.log_metric(run_id, "best_val_loss", result.best_val_loss)
        client.log_metric(run_id, "best_epoch", result.best_epoch)
        for k, a in enumerate(shrinkage, start=1):
            client.log_metric(run_id, f"shrinkage_h{k}", a)
    spec = ModelSpec(
        window=dataset.spec,
        gru=result.net.config,
        scaler=dataset.scaler,
        price_column=dataset.price_column,
        shrinkage=shrinkage,
    )
    return Forecaster(spec, result.net)


@task(name="train")
def train(dataset: WindowDataset, config: TrainConfig, run_id: str) -> Forecaster:
    return fit_forecaster(dataset, config, run_id, get_run_logger())
