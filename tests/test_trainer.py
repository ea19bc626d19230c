"""The training loop: config rejection, determinism, early stopping, NaN/OOM errors, checkpoints, resume,
and the train task's observability (per-epoch MLflow metrics, progress bar, GPU concurrency slot)."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch

import tickerflow_model.trainer as trainer
from tickerflow_model.trainer import (
    CHECKPOINT_FILE,
    TrainConfig,
    TrainingError,
    load_checkpoint,
    resolve_precision,
    train_model,
)
from tickerflow_model.windows import Scaler, WindowSpec
from tiny_models import TINY, split, tiny_data

def weights(result):
    return {k: v.clone() for k, v in result.net.state_dict().items()}


def losses(history):
    return [(h.epoch, h.train_loss, h.val_loss, h.lr, h.best) for h in history]


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("batch_size", 0),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("weight_decay", -1e-4),
        ("grad_clip", -1.0),
        ("patience", 0),
        ("lr_factor", 1.0),
        ("lr_patience", -1),
        ("cpu_threads", -2),
        ("device", "tpu"),
        ("precision", "fp16"),
        ("gru.hidden_size", 0),
        ("gru.num_layers", 0),
        ("gru.dropout", 1.0),
    ],
)
def test_config_rejects_bad_values_naming_field_and_value(field, value):
    outer, _, inner = field.partition(".")
    with pytest.raises(ValueError, match=re.escape(field)) as info:
        TrainConfig(**{outer: {inner: value} if inner else value})
    assert str(value) in str(info.value)


def test_horizon_zero_is_rejected_by_the_model_config():
    with pytest.raises(ValueError, match=r"horizon\n +Input should be greater than or equal to 1 .*input_value=0"):
        TrainConfig().net_config(input_size=1, horizon=0)


def test_the_network_is_a_nested_config_sized_by_the_data():
    config = TrainConfig(gru={"hidden_size": 16, "num_layers": 1})
    assert config.gru.hidden_size == 16 and config.gru.num_layers == 1
    net = config.net_config(input_size=3, horizon=5)
    assert (net.input_size, net.horizon, net.hidden_size) == (3, 5, 16)
    with pytest.raises(ValueError, match=r"hidden_size\n +Extra inputs are not permitted"):
        TrainConfig(hidden_size=16)  # the network's fields live under `gru`, not beside it


def test_defaults_are_valid_and_explicit_precision_is_honoured():
    config = TrainConfig()
    assert config.epochs >= config.patience
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if trainer.cpu_has_native_bf16() else "fp32")


def test_cuda_requested_without_cuda_is_a_training_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TrainingError, match="'cuda' requested but CUDA is not available"):
        train_model(*split(), TINY.updated(device="cuda"))


def test_empty_splits_are_rejected_with_the_counts():
    x, y, xv, yv = split()
    with pytest.raises(TrainingError, match="got 160 and 0"):
        train_model(x, y, xv[:0], yv[:0], TINY)


# --- determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_same_seed_gives_identical_losses_and_weights(precision):
    config = TINY.updated(precision=precision)
    a = train_model(*split(), config)
    b = train_model(*split(), config)
    assert losses(a.history) == losses(b.history)
    for k, v in weights(a).items():
        assert torch.equal(v, weights(b)[k]), k
    c = train_model(*split(), config.updated(seed=8))
    assert losses(c.history) != losses(a.history)


def test_training_learns_the_signal():
    result = train_model(*split(), TINY.updated(epochs=15))
    assert result.history[-1].train_loss < 0.5 * result.history[0].train_loss
    assert result.best_val_loss == min(h.val_loss for h in result.history)


def test_cpu_thread_setting_is_restored_after_training():
    before = torch.get_num_threads()
    train_model(*split(), TINY.updated(epochs=1, cpu_threads=1))
    assert torch.get_num_threads() == before


# --- early stopping --------------------------------------------------------------------------


def test_early_stopping_restores_the_best_epochs_weights():
    # Validation targets are the negation of the training rule: the better the fit, the worse val gets.
    x, y = tiny_data(160)
    xv, yv = tiny_data(48, seed=1, sign=-1.0)
    config = TINY.updated(epochs=20, patience=2, precision="fp32")
    result = train_model(x, y, xv, yv, config)

    assert result.stopped_early
    assert len(result.history) == result.best_epoch + config.patience < config.epochs
    best = result.history[result.best_epoch - 1]
    assert best.best and best.val_loss == result.best_val_loss
    assert result.history[-1].val_loss > result.best_val_loss
    # the returned network reproduces the best epoch's validation loss, not the last epoch's
    with torch.no_grad():
        val_pinball = trainer.quantile_loss(result.net, torch.from_numpy(xv), torch.from_numpy(yv))
    assert float(val_pinball) == pytest.approx(result.best_val_loss, rel=1e-5)


def test_learning_rate_drops_on_a_plateau():
    x, y = tiny_data(160)
    xv, yv = tiny_data(48, seed=1, sign=-1.0)
    result = train_model(x, y, xv, yv, TINY.updated(epochs=8, patience=8, lr_patience=1, lr_factor=0.5))
    lrs = [h.lr for h in result.history]
    assert lrs[0] == TINY.lr and min(lrs) < TINY.lr


# --- NaN and OOM -----------------------------------------------------------------------------


def failing_epoch(monkeypatch, at_call: int, outcome):
    """Make the `at_call`-th epoch return `outcome` (a value) or raise it (an exception)."""
    real = trainer.train_one_epoch
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            if isinstance(outcome, BaseException):
                raise outcome
            real(*args, **kwargs)
            return outcome
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", wrapped)


def test_nan_in_the_data_stops_training_naming_epoch_1():
    x, y, xv, yv = split()
    y = y.copy()
    y[5, 0] = np.nan
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 1 \(train_loss=nan"):
        train_model(x, y, xv, yv, TINY)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_names_the_epoch_and_keeps_the_last_checkpoint(monkeypatch, tmp_path, bad):
    failing_epoch(monkeypatch, 3, bad)
    with pytest.raises(TrainingError, match="non-finite loss at epoch 3") as info:
        train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck")
    assert "checkpoint of epoch 2" in str(info.value)
    ckpt = load_checkpoint(tmp_path / "ck" / CHECKPOINT_FILE)
    assert ckpt["epoch"] == 2 and not ckpt["finished"]


def test_out_of_memory_is_a_training_error_and_keeps_the_checkpoint(monkeypatch, tmp_path):
    failing_epoch(monkeypatch, 2, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(TrainingError, match="out of GPU memory .* batch_size=32.*lower train.batch_size") as info:
        train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck")
    assert str(tmp_path / "ck" / CHECKPOINT_FILE) in str(info.value)
    assert load_checkpoint(tmp_path / "ck" / CHECKPOINT_FILE)["epoch"] == 1


# --- checkpoints and resume ------------------------------------------------------------------


class Interrupt(Exception):
    """Stands in for the process dying between epochs."""


def interrupt_after(epoch):
    def on_epoch(stats):
        if stats.epoch == epoch:
            raise Interrupt

    return on_epoch


def test_checkpoint_after_each_epoch_holds_the_whole_training_state(tmp_path):
    with pytest.raises(Interrupt):
        train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck", on_epoch=interrupt_after(2))
    ckpt = load_checkpoint(tmp_path / "ck" / CHECKPOINT_FILE)
    assert ckpt["epoch"] == 2 and ckpt["finished"] is False
    for key in ("model", "optimizer", "scheduler", "best_model", "best_val", "bad_epochs",
                "shuffle_rng", "torch_rng", "numpy_rng", "python_rng"):
        assert key in ckpt, key
    assert [h["epoch"] for h in ckpt["history"]] == [1, 2]
    assert [p.name for p in (tmp_path / "ck").iterdir()] == [CHECKPOINT_FILE]


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one_intact(monkeypatch, tmp_path):
    real_save = torch.save
    calls = {"n": 0}

    def save_then_die(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2's checkpoint: half the bytes, then the disk fills up
            with open(path, "wb") as fh:
                fh.write(b"PK\x03\x04 truncated")
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(trainer.torch, "save", save_then_die)
    with pytest.raises(OSError, match="No space left"):
        train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck" / CHECKPOINT_FILE)["epoch"] == 1
    assert [p.name for p in (tmp_path / "ck").iterdir()] == [CHECKPOINT_FILE]  # no half-written file left behind


def test_an_unreadable_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match=re.escape(f"checkpoint {tmp_path / 'ck' / CHECKPOINT_FILE} cannot be read")):
        train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck")


def test_resumed_training_matches_uninterrupted_training_exactly(tmp_path):
    straight = train_model(*split(), TINY, checkpoint_dir=tmp_path / "a")

    with pytest.raises(Interrupt):
        train_model(*split(), TINY, checkpoint_dir=tmp_path / "b", on_epoch=interrupt_after(2))
    resumed_at = []
    seen = []
    resumed = train_model(
        *split(), TINY, checkpoint_dir=tmp_path / "b", on_resume=resumed_at.append,
        on_epoch=lambda s: seen.append(s.epoch),
    )
    assert resumed_at == [2] and resumed.resumed_from_epoch == 2
    assert seen == [3, 4]  # only the remaining epochs run (and are reported)
    assert losses(resumed.history) == losses(straight.history)
    for k, v in weights(straight).items():
        assert torch.equal(v, weights(resumed)[k]), k


def test_a_finished_checkpoint_is_not_resumed(tmp_path):
    first = train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck" / CHECKPOINT_FILE)["finished"] is True
    resumed_at = []
    again = train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck", on_resume=resumed_at.append)
    assert resumed_at == [] and again.resumed_from_epoch == 0
    assert [h.epoch for h in again.history] == [1, 2, 3, 4]
    assert losses(again.history) == losses(first.history)


def test_resume_after_early_stopping_state_is_kept(tmp_path):
    # Interrupted while the patience counter runs: the resumed run stops at the same epoch.
    x, y = tiny_data(160)
    xv, yv = tiny_data(48, seed=1, sign=-1.0)
    config = TINY.updated(epochs=20, patience=2)
    straight = train_model(x, y, xv, yv, config)
    stop = straight.best_epoch + 1
    with pytest.raises(Interrupt):
        train_model(x, y, xv, yv, config, checkpoint_dir=tmp_path / "ck", on_epoch=interrupt_after(stop))
    resumed = train_model(x, y, xv, yv, config, checkpoint_dir=tmp_path / "ck")
    assert losses(resumed.history) == losses(straight.history)
    assert resumed.best_epoch == straight.best_epoch


# --- the train task: MLflow metrics, progress bar, GPU slot ----------------------------------


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


class RecordingLog:
    """Stands in for the Prefect run logger: keeps each formatted line."""

    def __init__(self):
        self.lines = []

    def _record(self, msg, *args):
        self.lines.append(msg % args)

    info = warning = _record


def recording_log(monkeypatch) -> RecordingLog:
    import tickerflow.tasks.train as train_task

    log = RecordingLog()
    monkeypatch.setattr(train_task, "get_run_logger", lambda: log)
    return log


def test_every_epoch_reaches_mlflow_with_its_step_and_the_fit_after_it(monkeypatch, mlflow_store):
    from tickerflow.flows.reporting import epoch_reporter, log_training
    from tickerflow.tasks.tracking import experiment_id, use_tracking
    from tickerflow_model.fitting import fit_forecaster

    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id
    seen_during_training = []
    report = epoch_reporter(run_id)

    def on_epoch(s):
        report(s)  # live: the epoch is in MLflow before the next one starts
        seen_during_training.append(len(client.get_metric_history(run_id, "val_loss")))

    result = fit_forecaster(fake_dataset(monkeypatch), TINY, on_epoch=on_epoch)
    log_training.fn(result, run_id)

    assert seen_during_training == [1, 2, 3, 4]
    client = mlflow.MlflowClient(mlflow_store)
    for name in ("train_loss", "val_loss", "lr", "epoch_seconds", "samples_per_second"):
        history = client.get_metric_history(run_id, name)
        assert [m.step for m in history] == [1, 2, 3, 4], name
        assert all(np.isfinite(m.value) for m in history)
    run = client.get_run(run_id)
    assert run.data.metrics["best_epoch"] == result.best_epoch >= 1
    assert run.data.metrics["best_val_loss"] == pytest.approx(result.best_val_loss)
    assert run.data.metrics["shrinkage_h1"] == pytest.approx(result.shrinkage[0])
    assert run.data.metrics["cqr_margin_90_h1"] == pytest.approx(result.margins[0][0])
    assert {"cqr_margin_80_h1", "cqr_margin_50_h1"} <= set(run.data.metrics)
    assert run.data.tags["train.device"] == "cpu" and run.data.tags["train.precision"] == result.precision
    assert len(result.forecaster.spec.shrinkage) == 1


def test_the_task_logs_a_line_per_epoch_and_the_fit(monkeypatch, tf_home):
    import tickerflow.tasks.train as train_task

    log = recording_log(monkeypatch)
    epochs = []
    result = train_task.train.fn(fake_dataset(monkeypatch), TINY, on_epoch=lambda s: epochs.append(s.epoch))
    assert epochs == [1, 2, 3, 4]
    epoch_lines = [line for line in log.lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("val_loss=" in line and "samples/s" in line for line in epoch_lines)
    assert log.lines[-1].startswith(f"best epoch {result.best_epoch} ") and "conformal margins" in log.lines[-1]


def test_the_task_says_it_resumes_and_reports_only_the_remaining_epochs(monkeypatch, mlflow_store):
    import tickerflow.tasks.train as train_task
    from tickerflow.flows.reporting import epoch_reporter
    from tickerflow.tasks.tracking import experiment_id, use_tracking

    dataset = fake_dataset(monkeypatch)
    x, y, xv, yv = split()
    with pytest.raises(Interrupt):
        train_model(
            x, y, xv, yv, TINY, checkpoint_dir=train_task.checkpoint_dir_for(dataset, TINY), on_epoch=interrupt_after(3)
        )
    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id
    log = recording_log(monkeypatch)
    train_task.train.fn(dataset, TINY, on_epoch=epoch_reporter(run_id))
    assert [line for line in log.lines if "resuming" in line][0].startswith("resuming from epoch 3 ")
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [4]


class FakeTerminal:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bar_only_on_a_terminal(tty):
    from tickerflow.tasks.train import ProgressBar

    stream = FakeTerminal(tty)
    bar = ProgressBar(epochs=2, stream=stream)
    result = train_model(*split(), TINY.updated(epochs=2), on_batch=bar.on_batch, on_epoch=bar.on_epoch)
    bar.close()
    assert len(result.history) == 2
    if tty:
        assert "epoch 2/2" in stream.text and "val_loss=" in stream.text
    else:
        assert stream.text == ""


def test_gpu_slot_is_taken_only_on_cuda(monkeypatch):
    import tickerflow.tasks.train as train_task

    taken = []
    monkeypatch.setattr(train_task, "concurrency", lambda name, occupy: taken.append((name, occupy)) or "slot")
    assert train_task.gpu_slot(TINY.updated(device="cpu")) is not None and taken == []
    monkeypatch.setattr(train_task, "resolve_device", lambda name: torch.device("cuda"))
    assert train_task.gpu_slot(TINY) == "slot"
    assert taken == [("gpu", 1)]


def test_a_missing_gpu_limit_warns_and_lets_training_run(prefect_harness, caplog):
    # Documented behaviour of Prefect 3.9: a limit that does not exist is skipped with a warning.
    from prefect.concurrency.sync import concurrency

    ran = []
    with caplog.at_level(logging.WARNING):
        with concurrency("gpu-limit-that-does-not-exist", occupy=1):
            ran.append(True)
    assert ran == [True]
    assert any("do not exist" in r.getMessage() for r in caplog.records)


def test_a_retried_train_task_resumes_from_the_checkpoint(monkeypatch, mlflow_store, prefect_harness):
    from prefect import flow

    import tickerflow.tasks.train as train_task
    from tickerflow.tasks.tracking import experiment_id, use_tracking

    import tickerflow_model.fitting as fitting
    from tickerflow.flows.reporting import epoch_reporter

    dataset = fake_dataset(monkeypatch)
    resumed = []
    monkeypatch.setattr(fitting, "train_model", _record_resume(fitting.train_model, resumed))
    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id
    report = epoch_reporter(run_id)
    failed = []

    def flaky_report(s):
        if s.epoch == 2 and not failed:  # the tracking server drops the connection once, after epoch 2
            failed.append(s.epoch)
            raise ConnectionError("tracking server went away")
        report(s)

    @flow
    def train_once():
        return train_task.train(dataset, TINY, on_epoch=flaky_report)

    fit = train_once()
    assert failed == [2] and resumed == [2]
    assert fit.forecaster.net.config.hidden_size == TINY.gru.hidden_size
    # epoch 2's metrics were lost with the connection; the retry logged the epochs it trained
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 3, 4]


def test_a_training_error_is_not_retried(monkeypatch, mlflow_store, prefect_harness):
    from prefect import flow

    import tickerflow.tasks.train as train_task

    import tickerflow_model.fitting as fitting

    dataset = fake_dataset(monkeypatch, dataset_id="ds-nan")
    calls = []

    def nan_training(*args, **kwargs):
        calls.append(1)
        raise TrainingError("non-finite loss at epoch 1")

    monkeypatch.setattr(fitting, "train_model", nan_training)

    @flow
    def train_once():
        return train_task.train(dataset, TINY)

    with pytest.raises(TrainingError, match="epoch 1"):
        train_once()
    assert calls == [1]


def _record_resume(train_model_fn, resumed):
    def wrapped(*args, on_resume=None, **kwargs):
        def note(epoch):
            resumed.append(epoch)
            on_resume(epoch)

        return train_model_fn(*args, on_resume=note, **kwargs)

    return wrapped
