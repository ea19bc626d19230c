"""The training loop: mini-batch Adam on the pinball loss, early stopping, atomic per-epoch checkpoints, resume.

The loss is the mean pinball (multi-quantile) loss of the network's quantiles (`loss_weight`): by
default in the targets' own units, as the evaluation scores it, so turbulent windows weigh more; or
in units of each window's volatility scale (see `gru.py`), every window weighing the same. The
validation loss that drives early stopping is the same quantity.

Plain PyTorch: no Prefect, no MLflow, no progress-bar library. The caller observes training through
the `on_epoch`, `on_batch` and `on_resume` callbacks and decides how to report it.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import time
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .errors import TickerflowError
from .gru import GRUForecaster, inference_batch_size, intra_op_threads, predict_batched, run_batches
from .quantiles import median_index, pinball_loss

CHECKPOINT_FILE = "checkpoint.pt"
# The dataset stays on the GPU only while it takes at most this share of the free device memory.
RESIDENT_SHARE_OF_FREE_MEMORY = 0.5


class TrainingError(TickerflowError, RuntimeError):
    """Training cannot go on (non-finite loss, out of memory); the checkpoint is kept."""


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    lr: float
    epoch_seconds: float
    samples_per_second: float
    best: bool


@dataclass
class TrainResult:
    net: GRUForecaster
    history: list[EpochStats]
    best_epoch: int
    best_val_loss: float
    resumed_from_epoch: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    stopped_early: bool = False
    # The best epoch's quantiles (M, H, Q) and scale (M, H) on the validation windows, float32, as
    # `predict_batched` gives them; None when that epoch was trained before a resume.
    val_predictions: tuple[np.ndarray, np.ndarray] | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Device, precision, threads


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run faster than fp32 instead of being emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private probe: absent or failing means "don't rely on it"
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast: GRU/Linear matmuls in bf16; weights, loss and optimizer state stay fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Data placement


@dataclass
class DeviceData:
    """Training and validation tensors; on the device when they fit, else pinned host memory."""

    x_train: torch.Tensor  # (N, L, F)
    y_train: torch.Tensor  # (N, H)
    x_val: torch.Tensor  # (M, L, F)
    y_val: torch.Tensor  # (M, H)
    device: torch.device
    resident: bool

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resident:
            return x[idx], y[idx]  # an on-device gather: no host->device copy
        idx = idx.cpu()
        return (
            x[idx].pin_memory().to(self.device, non_blocking=True),
            y[idx].pin_memory().to(self.device, non_blocking=True),
        )


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def place_data(x_train, y_train, x_val, y_val, device: torch.device) -> DeviceData:
    tensors = [_as_tensor(a) for a in (x_train, y_train, x_val, y_val)]
    resident = True
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        needed = sum(t.numel() * t.element_size() for t in tensors)
        resident = needed <= RESIDENT_SHARE_OF_FREE_MEMORY * free
    if resident:
        tensors = [t.to(device) for t in tensors]
    x_tr, y_tr, x_v, y_v = tensors
    return DeviceData(x_tr, y_tr, x_v, y_v, device=device, resident=resident)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _save_atomic(obj: dict, path: Path) -> None:
    """Write aside, then rename: a kill mid-write never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


CORRUPT_SUFFIX = ".corrupt"  # checkpoint.pt.corrupt-<UTC time>: a checkpoint that could not be read, set aside


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at `path`, loaded as tensors and plain values only (`weights_only=True`: no pickled
    code runs from a file someone else could have put there). None when there is none; when it was
    written in an older format that held pickled objects (a warning says it is ignored); or when it
    cannot be read at all: then it is renamed aside (`set_aside`) with a warning, and training starts
    afresh instead of failing on it in every later run."""
    if not path.exists():
        return None
    try:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: this is a damaged file
            raise ValueError("not a checkpoint archive")
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        warnings.warn(
            f"checkpoint {path} holds pickled objects (an older format) and is not loaded; training afresh",
            stacklevel=2,
        )
        return None
    except ValueError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is set aside the same way
        # PyTorch's own message advises retrying with weights_only=False, which is wrong for a damaged file
        reason = (
            f"{type(exc).__name__}"
            if "weights_only" in str(exc)
            else f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        )
    aside = set_aside(path)
    warnings.warn(
        f"checkpoint {path} cannot be read ({reason}); moved aside to {aside.name}, training afresh", stacklevel=2
    )
    return None


def set_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint out of the way (kept for a look; `tickerflow gc` removes it)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}-{stamp}-{os.getpid()}")
    os.replace(path, aside)
    return aside


@dataclass
class LoopState:
    """What the loop carries from epoch to epoch besides the model, optimizer and scheduler."""

    history: list[EpochStats] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    bad_epochs: int = 0
    epoch: int = 0  # the last finished epoch


def _rng_states(shuffle_gen: torch.Generator) -> dict:
    """Every RNG's state as tensors, ints and lists, so the checkpoint loads with `weights_only=True`."""
    # the dict form, which numpy's stubs type exactly (they type the default, legacy tuple as tuple | dict)
    np_state = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    states = {
        "shuffle_rng": shuffle_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "cached_gauss": float(np_state["gauss"]),
        },
        "python_rng": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        states["cuda_rng"] = torch.cuda.get_rng_state_all()  # dropout masks on the GPU
    return states


def _restore_rng_states(ckpt: dict, shuffle_gen: torch.Generator) -> None:
    shuffle_gen.set_state(ckpt["shuffle_rng"])
    torch.set_rng_state(ckpt["torch_rng"])
    npr = ckpt["numpy_rng"]
    np.random.set_state(
        ("MT19937", npr["key"].numpy().astype(np.uint32), npr["pos"], npr["has_gauss"], npr["cached_gauss"])
    )
    pyr = ckpt["python_rng"]
    random.setstate((pyr["version"], tuple(pyr["internal"]), pyr["gauss"]))
    if "cuda_rng" in ckpt and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])


def save_epoch_checkpoint(path: Path, state: LoopState, net, optimizer, scheduler, shuffle_gen) -> None:
    _save_atomic(
        {
            "finished": False,
            "epoch": state.epoch,
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            **_rng_states(shuffle_gen),
            "best_val": state.best_val,
            "best_epoch": state.best_epoch,
            "bad_epochs": state.bad_epochs,
            "best_model": state.best_state,
            "history": [asdict(h) for h in state.history],
        },
        path,
    )


def resume_from(ckpt: dict, net, optimizer, scheduler, shuffle_gen) -> LoopState:
    net.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _restore_rng_states(ckpt, shuffle_gen)
    return LoopState(
        history=[EpochStats(**h) for h in ckpt["history"]],
        best_val=ckpt["best_val"],
        best_epoch=ckpt["best_epoch"],
        best_state=ckpt["best_model"],
        bad_epochs=ckpt["bad_epochs"],
        epoch=ckpt["epoch"],
    )


# ---------------------------------------------------------------------------------------------
# One epoch


def weighted_pinball(
    z: torch.Tensor, scale: torch.Tensor, y: torch.Tensor, levels, loss_weight: str, steps: torch.Tensor
) -> torch.Tensor:
    """Mean pinball loss of quantiles z (B, H, Q) in units of `scale` (B, H) against targets y (B, H).

    "volatility": in units of each window's scale, every window weighs the same; "return": in the
    targets' own units, as the evaluation scores them, so a turbulent window weighs more (and a later step,
    whose cumulative return spreads wider, more than an earlier one); "return_per_step": the same divided
    by sqrt(k) for step k (`steps`, (H,)), so turbulent windows still weigh more but every step about the same.
    """
    if loss_weight == "return":
        return pinball_loss(z * scale[:, :, None], y, levels)
    if loss_weight == "return_per_step":
        per_step = scale / steps  # (B, H): the window's one-day scale
        return pinball_loss(z * per_step[:, :, None], y / steps, levels)
    return pinball_loss(z, y / scale, levels)


def quantile_loss(
    net: GRUForecaster, x: torch.Tensor, y: torch.Tensor, loss_weight: str = "volatility"
) -> torch.Tensor:
    """Mean pinball loss of the net's quantiles for windows x (B, L, F) and targets y (B, H)."""
    z, scale = net.standardized(x)  # (B, H, Q), (B, H)
    return weighted_pinball(z, scale, y, net.config.quantiles, loss_weight, net.horizon_scale)


@dataclass
class ValidationPass:
    loss: float  # mean pinball loss, standardized units
    quantiles: np.ndarray  # (M, H, Q) float32, target units
    scale: np.ndarray  # (M, H) float32


def validation_pass(net: GRUForecaster, data: DeviceData, loss_weight: str = "volatility") -> ValidationPass:
    """The validation loss and the network's quantiles on the validation windows, in fp32 whatever the
    training precision: early stopping picks the epoch whose network, as it is served, scores best, and
    that epoch's predictions calibrate it without another pass. The batches and the arithmetic are those
    of `predict_batched` (`run_batches`), so the predictions are the ones it would give on the same device."""
    net.eval()
    n = len(data.x_val)
    horizon, n_q = net.config.horizon, net.config.n_quantiles
    q_out = np.empty((n, horizon, n_q), np.float32)
    s_out = np.empty((n, horizon), np.float32)
    batch_losses: dict[int, torch.Tensor] = {}

    def step(start: int, stop: int) -> None:
        xb, yb = data.batch(data.x_val, data.y_val, torch.arange(start, stop, device=data.device))  # (B, L, F), (B, H)
        z, scale = net.standardized(xb)  # (B, H, Q), (B, H)
        loss = weighted_pinball(z, scale, yb, net.config.quantiles, loss_weight, net.horizon_scale)
        batch_losses[start] = loss * (stop - start)
        q_out[start:stop] = (z * scale[:, :, None]).cpu().numpy()
        s_out[start:stop] = scale.cpu().numpy()

    run_batches(n, inference_batch_size(data.device), step, data.device)
    total = torch.zeros((), device=data.device)
    for start in sorted(batch_losses):  # summed in batch order, whichever thread computed each
        total += batch_losses[start]
    return ValidationPass(float(total) / n, q_out, s_out)


def train_one_epoch(
    net: GRUForecaster,
    optimizer: torch.optim.Optimizer,
    data: DeviceData,
    perm: torch.Tensor,
    config: TrainConfig,
    precision: str,
    on_batch: Callable[[int, int], None] | None,
) -> float:
    """One pass over the shuffled training windows; returns the mean training loss."""
    net.train()
    n = len(perm)
    n_batches = math.ceil(n / config.batch_size)
    running = torch.zeros((), device=data.device)  # summed on the device: no sync per batch
    for b, start in enumerate(range(0, n, config.batch_size), start=1):
        idx = perm[start : start + config.batch_size]
        xb, yb = data.batch(data.x_train, data.y_train, idx)  # (B, L, F), (B, H)
        with autocast_context(data.device, precision):
            loss = quantile_loss(
                net, xb, yb, config.loss_weight
            )  # (), float32: the head's output is cast up before the loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        running += loss.detach() * len(idx)
        if on_batch:
            on_batch(b, n_batches)
    return float(running) / n


def _make_optimizer(net: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # The fused CUDA kernel updates every parameter in one launch instead of several per tensor.
    fused = True if device.type == "cuda" else None
    return torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)


# ---------------------------------------------------------------------------------------------
# The loop


def train_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
) -> TrainResult:
    """Fit a GRUForecaster on scaled windows x (N, L, F) -> targets y (N, H).

    Args:
        checkpoint_dir: where the full training state is saved after every epoch. An unfinished
            checkpoint found there is resumed (`on_resume(epoch)` is called); a finished one is
            ignored, so a new run trains afresh.
        on_epoch: called with each epoch's stats, after that epoch's checkpoint is on disk.
        on_batch: called as `(epoch, batch, n_batches)` after every optimizer step (progress bars).

    Raises:
        TrainingError: no data, a non-finite loss (naming the epoch), or out of GPU memory; the
            last epoch's checkpoint is kept either way.
    """
    if len(x_train) == 0 or len(x_val) == 0:
        raise TrainingError(f"need training and validation windows, got {len(x_train)} and {len(x_val)}")
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    net_config = config.net_config(input_size=x_train.shape[2], horizon=y_train.shape[1])

    def fresh():
        seed_everything(config.seed)
        net = GRUForecaster(net_config).to(device)
        optimizer = _make_optimizer(net, config, device)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
        )
        return net, optimizer, scheduler, torch.Generator().manual_seed(config.seed)

    with (
        intra_op_threads(device, config.cpu_threads),
        out_of_memory_as_training_error(device, config, len(x_train), ckpt_path),
    ):
        net, optimizer, scheduler, shuffle_gen = fresh()
        data = place_data(x_train, y_train, x_val, y_val, device)

        state = LoopState()
        ckpt = load_checkpoint(ckpt_path) if ckpt_path else None
        if ckpt is not None and not ckpt.get("finished", False):
            try:
                state = resume_from(ckpt, net, optimizer, scheduler, shuffle_gen)
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                # A checkpoint of another model shape (or an older layout): its state does not fit this model.
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                warnings.warn(
                    f"checkpoint {ckpt_path} does not fit this model ({first}); training afresh", stacklevel=2
                )
                net, optimizer, scheduler, shuffle_gen = fresh()
                state = LoopState()
            else:
                if on_resume:
                    on_resume(state.epoch)
        resumed_from = state.epoch
        best_predictions = None  # of the best epoch, when it is trained in this call

        n = len(data.x_train)
        for epoch in range(state.epoch + 1, config.epochs + 1):
            if state.bad_epochs >= config.patience:
                break
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=shuffle_gen).to(device)  # (N,)
            batch_cb = (lambda b, nb, e=epoch: on_batch(e, b, nb)) if on_batch else None
            train_loss = train_one_epoch(net, optimizer, data, perm, config, precision, batch_cb)
            val = validation_pass(net, data, config.loss_weight)
            val_loss = val.loss
            seconds = time.perf_counter() - t0
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                kept = (
                    f"; the checkpoint of epoch {epoch - 1} is kept at {ckpt_path}" if ckpt_path and epoch > 1 else ""
                )
                raise TrainingError(
                    f"non-finite loss at epoch {epoch} (train_loss={train_loss}, val_loss={val_loss}): "
                    f"lower train.lr or check the input windows{kept}"
                )
            lr_now = optimizer.param_groups[0]["lr"]
            scheduler.step(val_loss)
            improved = val_loss < state.best_val
            if improved:
                state.best_val, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
                state.best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                best_predictions = (val.quantiles, val.scale)
            else:
                state.bad_epochs += 1
            stats = EpochStats(epoch, train_loss, val_loss, lr_now, seconds, n / seconds, improved)
            state.history.append(stats)
            state.epoch = epoch
            if ckpt_path:
                save_epoch_checkpoint(ckpt_path, state, net, optimizer, scheduler, shuffle_gen)
            if on_epoch:
                on_epoch(stats)

    net.load_state_dict(state.best_state)  # restore the best epoch's weights
    net = net.cpu().eval()
    if ckpt_path:
        # Marked finished: the next run with the same data and config trains afresh.
        _save_atomic({"finished": True, "best_model": state.best_state, "best_epoch": state.best_epoch}, ckpt_path)
    return TrainResult(
        net=net,
        history=state.history,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val,
        resumed_from_epoch=resumed_from,
        device=str(device),
        precision=precision,
        stopped_early=state.bad_epochs >= config.patience,
        val_predictions=best_predictions,
    )


@contextmanager
def out_of_memory_as_training_error(
    device: torch.device, config: TrainConfig, n_windows: int, ckpt_path: Path | None
) -> Iterator[None]:
    """A CUDA out-of-memory error becomes a TrainingError that says what to lower."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        kept = f"; the last finished epoch's checkpoint is kept at {ckpt_path}" if ckpt_path else ""
        raise TrainingError(
            f"out of GPU memory on {device} with batch_size={config.batch_size}, hidden_size="
            f"{config.gru.hidden_size}, {n_windows} training windows; lower train.batch_size{kept}"
        ) from exc


def fit_shrinkage(net: GRUForecaster, x_val: np.ndarray, y_val: np.ndarray) -> tuple[float, ...]:
    """Per-horizon multiplier in [0, 1] of the network's median toward naive, fit on validation data.

    Batched, without autograd; see `shrinkage_from_predictions` for the rule.
    """
    q, _ = predict_batched(net, x_val)  # (N, H, Q)
    return shrinkage_from_predictions(q[:, :, median_index(net.config.quantiles)], y_val)


# One-sided 5% level of the normal distribution: the median must beat naive at this confidence.
SHRINKAGE_Z = 1.645


def shrinkage_from_predictions(pred: np.ndarray, y: np.ndarray, z_crit: float = SHRINKAGE_Z) -> tuple[float, ...]:
    """Least-squares multiplier in [0, 1] per horizon step, kept only where it beats naive significantly.

    The multiplier blends the point forecast with naive (0 = "tomorrow = today"). With it alone, a
    network without real skill still gets a small positive multiplier from validation noise, and adds
    that noise to the test forecasts (skill slightly below 0). So a Diebold-Mariano test on validation
    (squared-error differential against naive, Newey-West variance with h-1 lags for the overlapping
    h-step windows) must reject "no better than naive" at one-sided 5%, or the step falls back to naive.

    Args:
        pred: the network's point forecasts (N, H); y: the outcomes (N, H), same units.
    """
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    num = np.sum(pred * y, axis=0)
    den = np.sum(pred * pred, axis=0)
    alpha = np.clip(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0), 0.0, 1.0)  # (H,)
    for k in range(pred.shape[1]):
        if alpha[k] > 0 and diebold_mariano(y[:, k] ** 2, (y[:, k] - alpha[k] * pred[:, k]) ** 2, lags=k) <= z_crit:
            alpha[k] = 0.0
    return tuple(float(a) for a in alpha)


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, lags: int = 0) -> float:
    """DM statistic of mean(loss_a - loss_b): > 0 when b is better. Bartlett-weighted (Newey-West) variance."""
    d = np.asarray(loss_a, np.float64) - np.asarray(loss_b, np.float64)
    n = len(d)
    if n < 2:
        return 0.0
    dc = d - d.mean()
    var = np.dot(dc, dc) / n
    for lag in range(1, min(lags, n - 1) + 1):
        var += 2 * (1 - lag / (lags + 1)) * np.dot(dc[lag:], dc[:-lag]) / n
    return float(d.mean() / np.sqrt(var / n)) if var > 0 else 0.0
