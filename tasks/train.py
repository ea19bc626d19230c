"""Train stage: fit the forecaster on the window dataset (`tickerflow_model.fitting`), each epoch in the
Prefect logs and handed to the caller's `on_epoch` (the flow reports it to MLflow).

On CUDA the training holds one slot of the Prefect global concurrency limit `gpu`, so scheduled runs
on one machine queue for the GPU instead of fighting over its memory. Create the limit once per
Prefect server (`prefect gcl create gpu --limit 1`); without it Prefect logs a warning and runs
unthrottled.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from tickerflow.run_log import DETAIL, run_logger
from tickerflow.tasks.retries import retry_unless
from tickerflow.tracking.home import home_lock, home_subdir
from tickerflow.tracking.processes import process_alive, this_process
from tickerflow_model.atomic_io import stable_hash, write_file_atomic
from tickerflow_model.config import TrainConfig
from tickerflow_model.fitting import FitResult, fit_forecaster
from tickerflow_model.quantiles import central_pairs
from tickerflow_model.trainer import EpochStats, TrainingError, resolve_device
from tickerflow_model.window_dataset import WindowDataset

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["TrainConfig", "FitResult", "train", "checkpoint_dir_for", "release_checkpoint_dir", "GPU_CONCURRENCY_LIMIT"]

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
    """A tqdm bar over each epoch's batches, only when a person is watching a terminal.

    Log lines printed while it is drawn (a warning; Prefect's console handler writes to the same terminal)
    would be glued to the bar and leave dead copies of it on screen: while the bar lives, every log handler
    that writes to its terminal writes around it (`LinesAroundTheBar`), and the bar leaves nothing behind."""

    def __init__(self, epochs: int, stream=None) -> None:
        self.epochs = epochs
        self.stream = stream if stream is not None else sys.stderr
        self.bar: tqdm | None = None
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._rerouted: list[tuple[logging.Handler, str, Any]] = []

    def on_batch(self, epoch: int, batch: int, n_batches: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm  # only needed when someone watches

            sized = all(terminal_size(self.stream))
            # tqdm sizes its bar from the terminal, and draws nothing on one that reports 0 x 0 (a pty nobody
            # sized: `script`, `docker run -t`, some CI runners); such a terminal gets a fixed size instead
            fixed = {} if sized else {"ncols": FALLBACK_SIZE[0], "nrows": FALLBACK_SIZE[1]}
            self.bar = tqdm(total=n_batches, file=self.stream, unit="batch", leave=False, dynamic_ncols=sized, **fixed)
            self._rerouted = route_around(self.bar, self.stream)
        if batch == 1:
            self.bar.reset(total=n_batches)
            self.bar.set_description(f"epoch {epoch}/{self.epochs}")
        self.bar.update(1)

    def on_epoch(self, s: EpochStats) -> None:
        if self.bar is not None:
            self.bar.set_postfix(train_loss=f"{s.train_loss:.4f}", val_loss=f"{s.val_loss:.4f}", refresh=True)

    def close(self) -> None:
        try:
            if self.bar is not None:
                self.bar.close()  # leave=False: the bar's line is cleared
                self.bar = None
        finally:
            for handler, attribute, stream in reversed(self._rerouted):
                _set_output(handler, attribute, stream)
            self._rerouted = []


class LinesAroundTheBar:
    """The terminal as a log handler sees it while a bar is drawn there: each write clears the bar, writes
    the line where the bar was, and draws the bar again below it."""

    def __init__(self, stream, bar: tqdm) -> None:
        self.stream, self.bar = stream, bar

    def write(self, text: str) -> int:
        with self.bar.get_lock():
            self.bar.clear(nolock=True)
            written = self.stream.write(text)
            self.stream.flush()  # before the bar is drawn again, whichever object the bar writes through
            self.bar.refresh(nolock=True)
        return written

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding: the terminal's own
        return getattr(self.stream, name)


def route_around(bar: tqdm, terminal) -> list[tuple[logging.Handler, str, Any]]:
    """Point every log handler that writes to `terminal` at a `LinesAroundTheBar`; returns what to restore.

    A handler keeps its level, filters (the console's redaction and quiet mode) and format; only its output
    changes. Prefect's console handler writes through a rich Console, whose file is rerouted the same way."""
    known = list(logging.Logger.manager.loggerDict.values())  # a copy: another thread may add a logger meanwhile
    loggers = [logging.getLogger(), *(lg for lg in known if isinstance(lg, logging.Logger))]
    handlers = list(dict.fromkeys(h for lg in loggers for h in lg.handlers))
    rerouted: list[tuple[logging.Handler, str, Any]] = []
    for handler in handlers:
        for attribute in ("stream", "console.file"):
            output = _output(handler, attribute)
            if output is not None and _same_terminal(output, terminal):
                rerouted.append((handler, attribute, output))
                _set_output(handler, attribute, LinesAroundTheBar(output, bar))
    return rerouted


def _output(handler: logging.Handler, attribute: str) -> Any:
    owner_name, _, name = attribute.rpartition(".")
    owner = getattr(handler, owner_name, None) if owner_name else handler
    return getattr(owner, name, None) if owner is not None else None


def _set_output(handler: logging.Handler, attribute: str, stream: Any) -> None:
    owner_name, _, name = attribute.rpartition(".")
    setattr(getattr(handler, owner_name) if owner_name else handler, name, stream)


def _same_terminal(stream, terminal) -> bool:
    if stream is terminal:
        return True
    try:
        return os.path.sameopenfile(stream.fileno(), terminal.fileno())
    except (AttributeError, OSError, ValueError):  # no file behind it (a StringIO, a closed stream)
        return False


FALLBACK_SIZE = (80, 24)  # columns, rows


def terminal_size(stream) -> tuple[int, int]:
    """(columns, rows) of the terminal behind `stream`; (0, 0) when it reports none or is no terminal."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


def epoch_line(s: EpochStats, epochs: int) -> str:
    return (
        f"epoch {s.epoch}/{epochs} train_loss={s.train_loss:.5f} val_loss={s.val_loss:.5f} lr={s.lr:.2e} "
        f"{s.epoch_seconds:.1f}s {s.samples_per_second:.0f} samples/s" + (" *best*" if s.best else "")
    )


def fit_line(result: FitResult) -> str:
    pairs = central_pairs(result.forecaster.spec.quantiles)
    return (
        f"best epoch {result.best_epoch} (val_loss {result.best_val_loss:.5f}) on {result.device} ({result.precision}); "
        f"validation shrinkage toward naive: {', '.join(f'{a:.3f}' for a in result.shrinkage)}; "
        "conformal margins (volatility units) h1: "
        + ", ".join(f"{cov:.0%} {m:+.3f}" for (_, _, cov), m in zip(pairs, result.margins[0]))
    )


# Training on the sample runs at about 4,500 samples/s on a quiet 2-core CPU (docs/BENCHMARKS.md). Far
# below that, with more threads than the machine has room for, torch's threads are waiting on each other.
SLOW_CPU_SAMPLES_PER_SECOND = 1000


def throughput_hint(samples_per_second: float, device: str, threads: int, load: float, cores: int) -> str | None:
    """One line for a user whose CPU training crawls because the machine is busy: the threads torch uses
    compete with other processes (load average above the core count), and fewer threads are faster."""
    if device != "cpu" or samples_per_second >= SLOW_CPU_SAMPLES_PER_SECOND or threads <= 1 or load <= cores:
        return None
    return (
        f"training at {samples_per_second:.0f} samples/s on {threads} CPU threads while the load average is "
        f"{load:.1f} on {cores} cores: the machine is busy, and fewer threads are often several times faster "
        f"(config train: cpu_threads: 1)"
    )


def machine_load() -> tuple[float, int]:
    """(1-minute load average, CPU cores); (0, cores) where the system reports no load average."""
    cores = os.cpu_count() or 1
    try:
        return os.getloadavg()[0], cores
    except (AttributeError, OSError):
        return 0.0, cores


# Retry what may pass on a second try (a dropped connection to the tracking server); a NaN loss,
# running out of memory or bad data would only fail again.
is_transient = retry_unless(TrainingError, ValueError)


# A retry continues from the last epoch's checkpoint (same data and config, same folder). No cache:
# the callback is a live reporter, not an input that identifies a result.
@task(name="train", retries=1, retry_delay_seconds=0, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
def train(
    dataset: WindowDataset,
    config: TrainConfig,
    on_epoch: Callable[[EpochStats], None] | None = None,
    progress_stream=None,
) -> FitResult:
    """Fit the forecaster: a log line per epoch, a progress bar on a terminal, `on_epoch(stats)` after
    each epoch, the `gpu` slot on CUDA, checkpoints that a later run resumes if this one dies."""
    log = run_logger()
    bar = ProgressBar(config.epochs, progress_stream)
    device = resolve_device(config.device).type
    hinted: list[str] = []

    def epoch_done(s: EpochStats) -> None:
        log.info("%s", epoch_line(s, config.epochs), extra=DETAIL)
        bar.on_epoch(s)
        if not hinted and (
            hint := throughput_hint(s.samples_per_second, device, torch.get_num_threads(), *machine_load())
        ):
            hinted.append(hint)
            log.warning("%s", hint)
        if on_epoch is not None:
            on_epoch(s)

    def resumed(epoch: int) -> None:
        log.warning("resuming from epoch %d (checkpoint of an unfinished run with the same data and config)", epoch)

    checkpoint_dir = checkpoint_dir_for(dataset, config)
    try:
        with gpu_slot(config):
            result = fit_forecaster(
                dataset,
                config,
                checkpoint_dir=checkpoint_dir,
                on_epoch=epoch_done,
                on_batch=bar.on_batch,
                on_resume=resumed,
            )
    finally:
        bar.close()
    release_checkpoint_dir(checkpoint_dir)  # kept on failure: a later run may resume once this process is gone
    log.info("%s", fit_line(result))
    return result
