"""Quantile-head overhead: seconds per training epoch of the quantile GRU against the point GRU, same run.

    .venv/bin/python bench/quantile_overhead.py [--windows 30000] [--epochs 3] [--rounds 2]

(p) the point model: nn.GRU(1, 64, 2, batch_first=True) + Linear(64, horizon) on the last step, MSE loss.
(q) the project's GRUForecaster: the same GRU reading the window plus its EWMA-standardized returns,
    a Linear(64, horizon * 7) quantile head made non-crossing (softplus gaps), the pinball loss in
    volatility units (tickerflow_model.trainer.quantile_loss).

Both train with the same loop: Adam lr 1e-3, the default TrainConfig's batch size, gradient clipping,
precision and CPU threads, on the same synthetic windows (GARCH(1,1) returns, horizon 1, lookback 60).
An epoch is one pass over the training windows. Rounds alternate the order (p q, q p, ...) so that load
drifting on a shared machine hits both alike. Prints each epoch's seconds and the ratio of the median
seconds per epoch, (q) / (p); 1.10 would be 10% slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "models")]

from tickerflow_model.config import TrainConfig  # noqa: E402
from tickerflow_model.gru import GRUForecaster  # noqa: E402
from tickerflow_model.trainer import (  # noqa: E402
    autocast_context,
    intra_op_threads,
    quantile_loss,
    resolve_device,
    resolve_precision,
)

LOOKBACK = 60


def garch_windows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x (n, L, 1) standardized GARCH(1,1) returns, y (n, 1) the next one."""
    rng = np.random.default_rng(seed)
    r = np.empty(n + LOOKBACK)
    var = 1.0
    for t in range(len(r)):
        r[t] = np.sqrt(var) * rng.standard_normal()
        var = 0.05 + 0.10 * r[t] ** 2 + 0.85 * var
    r = (r - r.mean()) / r.std()
    x = np.lib.stride_tricks.sliding_window_view(r[:-1], LOOKBACK)[:n]  # (n, L)
    return x[:, :, None].astype(np.float32), r[LOOKBACK : LOOKBACK + n, None].astype(np.float32)


class PointGRU(nn.Module):
    def __init__(self, hidden: int, layers: int, horizon: int) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)  # (B, L, H)
        return self.head(out[:, -1, :])  # (B, horizon)


def point_loss(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(net(xb).float(), yb)


def epoch_seconds(net, loss_fn, x, y, config: TrainConfig, device, precision, epochs: int) -> list[float]:
    torch.manual_seed(config.seed)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    out = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        net.train()
        perm = torch.randperm(len(x))
        for start in range(0, len(x), config.batch_size):
            idx = perm[start : start + config.batch_size]
            with autocast_context(device, precision):
                loss = loss_fn(net, x[idx], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            opt.step()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=30_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpu-threads", type=int, default=0, help="TrainConfig.cpu_threads (1 on a busy machine)")
    args = parser.parse_args(argv)
    config = TrainConfig(device="cpu", cpu_threads=args.cpu_threads)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    x_np, y_np = garch_windows(args.windows)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    print(
        f"# quantile-head overhead: {args.windows} windows, lookback {LOOKBACK}, horizon 1, batch "
        f"{config.batch_size}, {args.epochs} epochs x {args.rounds} rounds, {device} ({os.uname().machine}), "
        f"precision {precision}, torch {torch.__version__}, threads {config.cpu_threads or torch.get_num_threads()}"
    )
    seconds = {"p": [], "q": []}
    with intra_op_threads(device, config.cpu_threads):
        for rnd in range(args.rounds):
            for which in ("p", "q") if rnd % 2 == 0 else ("q", "p"):
                torch.manual_seed(0)
                if which == "p":
                    net, loss_fn = PointGRU(config.gru.hidden_size, config.gru.num_layers, 1), point_loss
                else:
                    net, loss_fn = GRUForecaster(config.net_config(1, 1)), quantile_loss
                s = epoch_seconds(net, loss_fn, x, y, config, device, precision, args.epochs)
                seconds[which] += s
                print(f"round {rnd + 1} ({which}): " + ", ".join(f"{v:.2f}" for v in s) + " s per epoch", flush=True)
    p, q = statistics.median(seconds["p"]), statistics.median(seconds["q"])
    print("\n| model | median s/epoch | samples/s |\n|---|---|---|")
    print(f"| (p) point GRU, MSE | {p:.2f} | {args.windows / p:.0f} |")
    print(f"| (q) quantile GRU, pinball | {q:.2f} | {args.windows / q:.0f} |")
    print(f"\nratio (q)/(p) of median seconds per epoch: {q / p:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
