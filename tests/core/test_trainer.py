"""The training loop (core, no Prefect): config rejection, determinism, early stopping, NaN/OOM errors,
checkpoints and an exact resume."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tiny_models import TINY, Interrupt, interrupt_after, split, tiny_data

import tickerflow_model.gru as gru_module
import tickerflow_model.trainer as trainer
from tickerflow_model.config import TrainConfig
from tickerflow_model.gru import predict_batched
from tickerflow_model.trainer import CHECKPOINT_FILE, TrainingError, load_checkpoint, resolve_precision, train_model


def weights(result):
    return {k: v.clone() for k, v in result.net.state_dict().items()}


def losses(history):
    return [(h.epoch, h.train_loss, h.val_loss, h.lr, h.best) for h in history]


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
        val_pinball = trainer.quantile_loss(result.net, torch.from_numpy(xv), torch.from_numpy(yv), config.loss_weight)
    assert float(val_pinball) == pytest.approx(result.best_val_loss, rel=1e-5)


def test_learning_rate_drops_on_a_plateau():
    x, y = tiny_data(160)
    xv, yv = tiny_data(48, seed=1, sign=-1.0)
    result = train_model(x, y, xv, yv, TINY.updated(epochs=8, patience=8, lr_patience=1, lr_factor=0.5))
    lrs = [h.lr for h in result.history]
    assert lrs[0] == TINY.lr and min(lrs) < TINY.lr


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


def test_checkpoint_after_each_epoch_holds_the_whole_training_state(tmp_path):
    with pytest.raises(Interrupt):
        train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck", on_epoch=interrupt_after(2))
    ckpt = load_checkpoint(tmp_path / "ck" / CHECKPOINT_FILE)
    assert ckpt["epoch"] == 2 and ckpt["finished"] is False
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "best_model",
        "best_val",
        "bad_epochs",
        "shuffle_rng",
        "torch_rng",
        "numpy_rng",
        "python_rng",
    ):
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


def test_an_unreadable_checkpoint_is_set_aside_with_a_clear_warning(tmp_path):
    """It used to stop every later run with the same data and config until someone deleted it by hand."""
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match=re.escape(f"checkpoint {tmp_path / 'ck' / CHECKPOINT_FILE} cannot be read")):
        result = train_model(*split(), TINY, checkpoint_dir=tmp_path / "ck")
    assert result.resumed_from_epoch == 0
    assert [p.read_bytes() for p in (tmp_path / "ck").glob(f"{CHECKPOINT_FILE}.corrupt-*")] == [b"not a checkpoint"]


def test_resumed_training_matches_uninterrupted_training_exactly(tmp_path):
    straight = train_model(*split(), TINY, checkpoint_dir=tmp_path / "a")

    with pytest.raises(Interrupt):
        train_model(*split(), TINY, checkpoint_dir=tmp_path / "b", on_epoch=interrupt_after(2))
    resumed_at = []
    seen = []
    resumed = train_model(
        *split(),
        TINY,
        checkpoint_dir=tmp_path / "b",
        on_resume=resumed_at.append,
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
    # The best epoch's validation predictions come back only when that epoch ran in this call, and they
    # are the ones the served network gives.
    assert resumed.val_predictions is None
    quantiles, scale = straight.val_predictions
    assert quantiles.dtype == np.float32
    np.testing.assert_array_equal(quantiles.astype(np.float64), predict_batched(straight.net, xv)[0])
    np.testing.assert_array_equal(scale.astype(np.float64), predict_batched(straight.net, xv)[1])


def test_the_validation_pass_builds_no_autograd_graph_and_runs_in_inference_batches(monkeypatch):
    monkeypatch.setattr(gru_module, "INFERENCE_BATCH_SIZE", 16)
    seen = []
    real_pass = trainer.validation_pass

    def watched(net, data, loss_weight):
        handle = net.head.register_forward_hook(
            lambda module, inputs, output: seen.append((torch.is_grad_enabled(), output.requires_grad, len(inputs[0])))
        )
        try:
            return real_pass(net, data, loss_weight)
        finally:
            handle.remove()

    monkeypatch.setattr(trainer, "validation_pass", watched)
    result = train_model(*split(n_val=40), TINY.updated(epochs=2))
    # 40 windows, each epoch (in whichever order the inference threads take them)
    assert sorted(seen) == sorted([(False, False, 16), (False, False, 16), (False, False, 8)] * 2)
    assert result.val_predictions[0].shape == (40, 1, len(TINY.gru.quantiles))


def test_an_accelerator_is_fed_larger_inference_batches_than_the_cpu():
    cpu = gru_module.inference_batch_size(torch.device("cpu"))
    assert cpu == gru_module.INFERENCE_BATCH_SIZE
    assert gru_module.inference_batch_size(torch.device("cuda")) == gru_module.DEVICE_INFERENCE_BATCH_SIZE > cpu


def test_the_per_step_loss_weighs_each_step_about_the_same():
    """In return units a 9-day return's loss is 3 times a 1-day one's for the same standardized miss;
    `return_per_step` divides each step's by sqrt(k), so both weigh the same."""
    from tickerflow_model.trainer import weighted_pinball

    levels = (0.1, 0.5, 0.9)
    steps = torch.tensor([1.0, 3.0])  # sqrt(1), sqrt(9): steps 1 and 9 of a cumulative return
    scale = torch.tensor([[0.01, 0.03]])  # (B, H): sigma * sqrt(k)
    z = torch.zeros((1, 2, 3))  # quantiles at 0
    y = torch.tensor([[0.01, 0.03]])  # a one-scale miss at each step
    per_step = [
        weighted_pinball(
            z[:, k : k + 1], scale[:, k : k + 1], y[:, k : k + 1], levels, "return_per_step", steps[k : k + 1]
        )
        for k in (0, 1)
    ]
    in_returns = [
        weighted_pinball(z[:, k : k + 1], scale[:, k : k + 1], y[:, k : k + 1], levels, "return", steps[k : k + 1])
        for k in (0, 1)
    ]
    assert float(in_returns[1]) == pytest.approx(3 * float(in_returns[0]))
    assert float(per_step[1]) == pytest.approx(float(per_step[0]))
