"""The training loop: mini-batch Adam on MSE, early stopping, atomic per-epoch checkpoints, resume.

Plain PyTorch: no Prefect, no MLflow. The caller observes progress through `on_epoch`.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .gru import GRUConfig, GRUForecaster

CHECKPOINT_FILE = "checkpoint.pt"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, out of memory); the checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    patience: int = 5
    lr_patience: int = 2
    lr_factor: float = 0.5
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        self.gru_config(1, 1)  # rejects hidden_size / num_layers / dropout early, naming the value

    def gru_config(self, input_size: int, horizon: int) -> GRUConfig:
        return GRUConfig(
            input_size=input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            horizon=horizon,
        )

    def to_dict(self) -> dict:
        return asdict(self)


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
    stopped_early: bool = False
    extra: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _save_atomic(obj: dict, path: Path) -> None:
    """Write aside, then rename: a kill mid-write never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


@torch.no_grad()
def evaluate_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, autocast) -> float:
    net.eval()
    total = 0.0
    for start in range(0, len(x), batch_size):
        with autocast():
            pred = net(x[start : start + batch_size])  # (B, H)
        total += torch.sum((pred.float() - y[start : start + batch_size]) ** 2).item()
    return total / (len(x) * y.shape[1])


def train_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> TrainResult:
    """Fit a GRUForecaster on scaled windows x (N, L, F) -> targets y (N, H).

    With `checkpoint_dir`, the full training state is saved there after every epoch; an unfinished
    checkpoint found there is resumed, a finished one is ignored (a new run trains afresh).
    """
    if len(x_train) == 0 or len(x_val) == 0:
        raise TrainingError(f"need training and validation windows, got {len(x_train)} and {len(x_val)}")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    net = GRUForecaster(config.gru_config(x_train.shape[2], y_train.shape[1])).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
    )
    if device.type == "cuda":
        # bf16 autocast: GRU/Linear matmuls in bf16, loss and optimizer state in fp32
        def autocast():
            return torch.autocast("cuda", dtype=torch.bfloat16)
    else:
        def autocast():
            return torch.autocast("cpu", enabled=False)

    # The whole dataset moves to the device once; batches are index slices (no host->device copies).
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)).to(device)  # (N, L, F)
    yt = torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.float32)).to(device)  # (N, H)
    xv = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32)).to(device)
    yv = torch.from_numpy(np.ascontiguousarray(y_val, dtype=np.float32)).to(device)
    shuffle_gen = torch.Generator().manual_seed(config.seed)

    history: list[EpochStats] = []
    best_val, best_epoch, best_state, bad_epochs, start_epoch = math.inf, 0, None, 0, 1
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    ckpt = load_checkpoint(ckpt_path) if ckpt_path else None
    if ckpt is not None and not ckpt.get("finished", False):
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        shuffle_gen.set_state(ckpt["shuffle_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        np.random.set_state(ckpt["numpy_rng"])
        random.setstate(ckpt["python_rng"])
        best_val, best_epoch, bad_epochs = ckpt["best_val"], ckpt["best_epoch"], ckpt["bad_epochs"]
        best_state = ckpt["best_model"]
        history = [EpochStats(**h) for h in ckpt["history"]]
        start_epoch = ckpt["epoch"] + 1
        if on_resume:
            on_resume(ckpt["epoch"])

    loss_fn = nn.MSELoss()
    n = len(xt)
    stopped_early = False
    for epoch in range(start_epoch, config.epochs + 1):
        if bad_epochs >= config.patience:
            stopped_early = True
            break
        net.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=shuffle_gen).to(device)
        running = 0.0
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            with autocast():
                pred = net(xt[idx])  # (B, H)
                loss = loss_fn(pred.float(), yt[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            optimizer.step()
            running += loss.detach() * len(idx)
        train_loss = float(running) / n
        val_loss = evaluate_loss(net, xv, yv, max(config.batch_size, 4096), autocast)
        seconds = time.perf_counter() - t0
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingError(
                f"non-finite loss at epoch {epoch} (train_loss={train_loss}, val_loss={val_loss}); "
                f"last good checkpoint kept at {ckpt_path}" if ckpt_path else
                f"non-finite loss at epoch {epoch} (train_loss={train_loss}, val_loss={val_loss})"
            )
        lr_now = optimizer.param_groups[0]["lr"]
        scheduler.step(val_loss)
        improved = val_loss < best_val
        if improved:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad_epochs += 1
        stats = EpochStats(epoch, train_loss, val_loss, lr_now, seconds, n / seconds, improved)
        history.append(stats)
        if ckpt_path:
            _save_atomic(
                {
                    "epoch": epoch,
                    "finished": False,
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "shuffle_rng": shuffle_gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                    "python_rng": random.getstate(),
                    "best_val": best_val,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "best_model": best_state,
                    "history": [asdict(h) for h in history],
                },
                ckpt_path,
            )
        if on_epoch:
            on_epoch(stats)
    else:
        stopped_early = bad_epochs >= config.patience

    net.load_state_dict(best_state)  # restore the best epoch's weights
    net = net.cpu().eval()
    if ckpt_path:
        _save_atomic({"finished": True, "best_model": best_state, "best_epoch": best_epoch}, ckpt_path)
    return TrainResult(
        net=net,
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        resumed_from_epoch=start_epoch - 1,
        device=str(device),
        stopped_early=stopped_early,
    )


@torch.no_grad()
def fit_shrinkage(net: nn.Module, x_val: np.ndarray, y_val: np.ndarray) -> tuple[float, ...]:
    """Per-horizon least-squares multiplier in [0, 1] of the network's output, fit on validation data.

    It blends the model with the naive forecast (multiplier 0 = naive) so that a network without real
    skill falls back to "tomorrow = today" instead of adding noise to it.
    """
    net.eval()
    pred = net(torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32))).double().numpy()  # (N, H)
    y = np.asarray(y_val, dtype=np.float64)
    num = np.sum(pred * y, axis=0)
    den = np.sum(pred * pred, axis=0)
    alpha = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return tuple(float(a) for a in np.clip(alpha, 0.0, 1.0))
