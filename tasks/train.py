"""Train: fit the GRU on the window dataset, every epoch logged to MLflow and to the Prefect logs.

On CUDA the training holds one slot of the Prefect global concurrency limit `gpu`, so scheduled runs
on one machine queue for the GPU instead of fighting over its memory. Create the limit once per
Prefect server (`prefect gcl create gpu --limit 1`); without it Prefect logs a warning and runs
unthrottled.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

import mlflow
from prefect import task
from prefect.concurrency.sync import concurrency
from prefect.logging import get_run_logger

from tickerflow.tasks.retries import retry_unless
from tickerflow.tasks.storage import home_subdir, stable_hash, write_file_atomic
from tickerflow.tasks.tracking import home_lock, process_alive, this_process, use_tracking
from tickerflow.tasks.window import WindowDataset, read_split
from tickerflow_model.forecaster import Forecaster, ModelSpec
from tickerflow_model.quantiles import central_pairs
from tickerflow_model.trainer import (
    EpochStats,
    TrainConfig,
    TrainingError,
    TrainResult,
    fit_shrinkage,
    resolve_device,
    train_model,
)

__all__ = ["TrainConfig", "train", "checkpoint_dir_for", "release_checkpoint_dir", "fit_forecaster", "train_on_windows", "GPU_CONCURRENCY_LIMIT"]

GPU_CONCURRENCY_LIMIT = "gpu"


OWNER_FILE = "owner.json"


def owner_is_alive(owner: dict) -> bool:
    """Whether the process that wrote `owner` (see `this_process`) still runs (on another host: assume it does)."""
    try:
        return process_alive(int(owner["pid"]), owner["host"], float(owner["started"]))
    except (KeyError, TypeError, ValueError):  # a malformed owner file names no live process
        return False


def read_owner(folder: Path) -> dict | None:
    try:
        return json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def checkpoint_dir_for(dataset: WindowDataset, config: TrainConfig) -> Path:
    """The checkpoint folder this run owns: the shared one for its data + config when it is free.

    Same data + same config -> same folder, so a restarted command finds its checkpoint. The folder
    belongs to one process at a time (`owner.json`: pid, host, start time): a run resumes only a
    checkpoint whose owner is gone. When a live process owns it, this run trains afresh in a folder of
    its own, so two runs at once never resume or overwrite each other's checkpoint.
    """
    key = stable_hash({"dataset": dataset.dataset_id, "train": config.to_dict()})
    me = this_process()
    with home_lock(f"checkpoint-{key}"):
        folder = home_subdir("checkpoints", key)
        owner = read_owner(folder)
        if owner is not None and owner_is_alive(owner) and owner != me:
            folder = home_subdir("checkpoints", f"{key}-{uuid.uuid4().hex[:8]}")
        folder.mkdir(parents=True, exist_ok=True)
        write_file_atomic(folder / OWNER_FILE, lambda tmp: tmp.write_text(json.dumps(me)))
    return folder


def release_checkpoint_dir(folder: Path) -> None:
    """Give up ownership once training finished: the next run with the same key may use the folder."""
    (Path(folder) / OWNER_FILE).unlink(missing_ok=True)


def gpu_slot(config: TrainConfig):
    """One slot of the `gpu` concurrency limit while training on CUDA; nothing to hold on CPU."""
    if resolve_device(config.device).type != "cuda":
        return nullcontext()
    return concurrency(GPU_CONCURRENCY_LIMIT, occupy=1)


class ProgressBar:
    """A tqdm bar over each epoch's batches, only when a person is watching a terminal."""

    def __init__(self, epochs: int, stream=None) -> None:
        self.epochs = epochs
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def on_batch(self, epoch: int, batch: int, n_batches: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm  # only needed when someone watches

            self.bar = tqdm(total=n_batches, file=self.stream, unit="batch", leave=False, dynamic_ncols=True)
        if batch == 1:
            self.bar.reset(total=n_batches)
            self.bar.set_description(f"epoch {epoch}/{self.epochs}")
        self.bar.update(1)

    def on_epoch(self, s: EpochStats) -> None:
        if self.bar is not None:
            self.bar.set_postfix(train_loss=f"{s.train_loss:.4f}", val_loss=f"{s.val_loss:.4f}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def epoch_metrics(s: EpochStats) -> dict[str, float]:
    return {
        "train_loss": s.train_loss,
        "val_loss": s.val_loss,
        "lr": s.lr,
        "epoch_seconds": s.epoch_seconds,
        "samples_per_second": s.samples_per_second,
    }


def train_on_windows(
    x_train, y_train, x_val, y_val, config: TrainConfig, checkpoint_dir: Path, run_id: str | None, log,
    progress_stream=None,
) -> TrainResult:
    """The train stage's loop as the pipeline runs it: per-epoch MLflow metrics (step=epoch), a log line
    per epoch, a progress bar on a terminal, the `gpu` slot on CUDA, checkpoints in `checkpoint_dir`."""
    client = use_tracking() if run_id else None
    bar = ProgressBar(config.epochs, progress_stream)

    def on_epoch(s: EpochStats) -> None:
        log.info(
            "epoch %d/%d train_loss=%.5f val_loss=%.5f lr=%.2e %.1fs %.0f samples/s%s",
            s.epoch, config.epochs, s.train_loss, s.val_loss, s.lr, s.epoch_seconds,
            s.samples_per_second, " *best*" if s.best else "",
        )
        bar.on_epoch(s)
        if client:
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[mlflow.entities.Metric(k, float(v), now, s.epoch) for k, v in epoch_metrics(s).items()],
            )

    def on_resume(epoch: int) -> None:
        log.warning("resuming from epoch %d (checkpoint of an unfinished run with the same data and config)", epoch)

    try:
        with gpu_slot(config):
            return train_model(
                x_train, y_train, x_val, y_val, config,
                checkpoint_dir=checkpoint_dir, on_epoch=on_epoch, on_resume=on_resume, on_batch=bar.on_batch,
            )
    finally:
        bar.close()


def fit_forecaster(dataset: WindowDataset, config: TrainConfig, run_id: str | None, log, progress_stream=None) -> Forecaster:
    """Plain function behind the task: train, fit the shrinkage toward naive and the conformal
    calibration on the validation split, bundle a Forecaster."""
    x_train, y_train, _ = read_split(dataset, "train")
    x_val, y_val, _ = read_split(dataset, "val")
    checkpoint_dir = checkpoint_dir_for(dataset, config)
    result = train_on_windows(x_train, y_train, x_val, y_val, config, checkpoint_dir, run_id, log, progress_stream)
    release_checkpoint_dir(checkpoint_dir)  # kept on failure: a later run may resume once this process is gone
    shrinkage = fit_shrinkage(result.net, x_val, y_val)
    spec = ModelSpec(
        window=dataset.spec,
        gru=result.net.config,
        scaler=dataset.scaler,
        price_column=dataset.price_column,
        shrinkage=shrinkage,
    )
    forecaster = Forecaster(spec, result.net).calibrate(x_val, y_val)
    margins = forecaster.spec.calibration  # (H, P), widest interval first
    pairs = central_pairs(spec.quantiles)
    log.info(
        "best epoch %d (val_loss %.5f) on %s (%s); validation shrinkage toward naive: %s; "
        "conformal margins (volatility units) h1: %s",
        result.best_epoch, result.best_val_loss, result.device, result.precision,
        ", ".join(f"{a:.3f}" for a in shrinkage),
        ", ".join(f"{cov:.0%} {m:+.3f}" for (_, _, cov), m in zip(pairs, margins[0])),
    )
    if run_id:
        client = use_tracking()
        client.log_metric(run_id, "best_val_loss", result.best_val_loss)
        client.log_metric(run_id, "best_epoch", result.best_epoch)
        for k, a in enumerate(shrinkage, start=1):
            client.log_metric(run_id, f"shrinkage_h{k}", a)
            for (_, _, cov), m in zip(pairs, margins[k - 1]):
                client.log_metric(run_id, f"cqr_margin_{round(cov * 100)}_h{k}", m)
        client.set_tag(run_id, "train.device", result.device)
        client.set_tag(run_id, "train.precision", result.precision)
    return forecaster


# Retry what may pass on a second try (a dropped connection to the tracking server); a NaN loss,
# running out of memory or bad data would only fail again.
is_transient = retry_unless(TrainingError, ValueError)


# A retry continues from the last epoch's checkpoint (same data and config, same folder).
@task(name="train", retries=1, retry_delay_seconds=0, retry_condition_fn=is_transient)
def train(dataset: WindowDataset, config: TrainConfig, run_id: str) -> Forecaster:
    return fit_forecaster(dataset, config, run_id, get_run_logger())
