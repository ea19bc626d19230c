"""The GRU forecaster: nn.GRU + a Linear on the last time step, with a non-crossing quantile head.

The network reads a window of standardized features and returns, for each horizon step k, quantiles
of the cumulative log return to day t+k (in the window dataset's target units). Two choices shape it:

- **Volatility standardization.** Each window's own returns give an EWMA volatility at its base date
  (RiskMetrics, lambda = 0.94; nothing after the base date). The returns are fed to the GRU divided
  by it, and the head predicts quantiles of the target divided by sigma * sqrt(k). The network thus
  learns the *shape* of the standardized distribution and corrections to the volatility forecast;
  a network with no skill falls back to about filtered historical simulation (EWMA volatility times
  the empirical quantiles of standardized returns), which already beats a Gaussian EWMA.
- **Non-crossing by construction.** The head outputs a median and, per level away from it, a gap
  passed through softplus and cumulated outward, so q_05 <= q_10 <= ... <= q_95 holds for any input
  and any weights, with no sorting afterwards.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import GRUConfig
from .quantiles import median_index

EWMA_LAMBDA = 0.94
# Floor of the EWMA volatility in the scaler's units (training-period std = 1): a window of zero
# returns (a halted stock) still gets a finite scale.
MIN_VOL = 1e-3


def ewma_volatility(returns: torch.Tensor, lam: float = EWMA_LAMBDA) -> torch.Tensor:
    """EWMA volatility at the last step of each window, from that window's returns only: (B, L) -> (B,).

    sigma^2 = sum_i w_i r_{t-i}^2 / sum_i w_i with w_i = lam^i over the window: the RiskMetrics
    recursion with its weights renormalized to the window (lam^60 = 0.02, so little is cut off).
    Elementwise ops and a sum: under bf16 autocast it stays in float32.
    """
    length = returns.shape[-1]
    w = lam ** torch.arange(length - 1, -1, -1, device=returns.device, dtype=torch.float32)  # (L,) newest = 1
    var = (returns.float().square() * w).sum(-1) / w.sum()  # (B,)
    return var.sqrt().clamp_min(MIN_VOL)  # (B,)


class GRUForecaster(nn.Module):
    """(B, L, F) windows -> (B, H, Q) non-crossing quantiles of the cumulative log return, target units."""

    horizon_scale: (
        torch.Tensor
    )  # (H,), a buffer: declared so that it reads as a tensor, not nn.Module's Tensor | Module

    def __init__(self, config: GRUConfig) -> None:
        super().__init__()
        self.config = config
        self.gru = nn.GRU(
            # the features, plus the returns divided by the window's EWMA volatility
            config.input_size + 1,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            # nn.GRU warns when dropout is set with a single layer: it only acts between layers
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden_size, config.horizon * config.n_quantiles)
        self.median_at = median_index(config.quantiles)
        self._start_at_gaussian_quantiles()
        # sqrt(k): the random-walk growth of the spread of a k-step cumulative return
        self.register_buffer(
            "horizon_scale", torch.arange(1, config.horizon + 1, dtype=torch.float32).sqrt(), persistent=False
        )

    @torch.no_grad()
    def _start_at_gaussian_quantiles(self) -> None:
        """Head bias such that an untrained net already predicts N(0, 1) quantiles of the standardized target."""
        normal = torch.distributions.Normal(0.0, 1.0)
        z = normal.icdf(torch.tensor(self.config.quantiles, dtype=torch.float64))  # (Q,)
        m = self.median_at
        gaps = torch.zeros_like(z)  # (Q,): the median's own slot is its value, 0
        gaps[m + 1 :] = z[m + 1 :] - z[m:-1]
        gaps[:m] = z[1 : m + 1] - z[:m]
        bias = torch.where(gaps > 0, torch.log(torch.expm1(gaps.clamp_min(1e-6))), gaps)  # softplus^-1
        self.head.bias.copy_(bias.float().repeat(self.config.horizon))  # (H*Q,)

    def standardized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> quantiles in units of sigma * sqrt(k), (B, H, Q), and that scale, (B, H)."""
        sigma = ewma_volatility(x[:, :, 0])  # (B,)
        scale = sigma[:, None] * self.horizon_scale  # (B, H)
        z_in = (x[:, :, :1] / sigma[:, None, None]).to(x.dtype)  # (B, L, 1)
        out, _ = self.gru(torch.cat([x, z_in], dim=-1))  # (B, L, hidden)
        raw = self.head(out[:, -1, :]).float()  # (B, H*Q)
        raw = raw.view(-1, self.config.horizon, self.config.n_quantiles)  # (B, H, Q)
        m = self.median_at
        median = raw[:, :, m : m + 1]  # (B, H, 1)
        # gaps between neighbouring levels: softplus > 0, cumulated outward from the median
        up = torch.cumsum(F.softplus(raw[:, :, m + 1 :]), dim=-1)  # (B, H, Q-m-1)
        down = torch.cumsum(F.softplus(raw[:, :, :m].flip(-1)), dim=-1).flip(-1)  # (B, H, m)
        z = torch.cat([median - down, median, median + up], dim=-1)  # (B, H, Q), non-decreasing along Q
        return z, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, scale = self.standardized(x)  # (B, H, Q), (B, H)
        return z * scale[:, :, None]  # (B, H, Q)


# Windows per inference batch on CPU. A batch's transient memory is about B x L x 5 x hidden x 4 bytes
# (gate projections and outputs of a layer), 20 MB at 256 x 60 x 64. Batches of 128 to 512 ran about a
# quarter faster than batches of 1024, and more so than larger ones (bench/inference_threads.py), a
# layer's working set staying in the core's cache. An accelerator is fed larger batches.
INFERENCE_BATCH_SIZE = 256
DEVICE_INFERENCE_BATCH_SIZE = 8192


def inference_batch_size(device: torch.device) -> int:
    return INFERENCE_BATCH_SIZE if device.type == "cpu" else DEVICE_INFERENCE_BATCH_SIZE


@contextmanager
def intra_op_threads(device: torch.device, n: int) -> Iterator[None]:
    """Cap torch's CPU threads to `n` (0: leave torch's setting) for a block, then give the process its setting back.

    Training and inference both run under it: the GRU's per-step ops are small, and on a machine whose
    cores are busy with other work, threads that meet at a barrier after each of them wait for each
    other's time slices.
    """
    before = torch.get_num_threads()
    if device.type == "cpu" and n > 0 and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def release_free_heap() -> None:
    """Hand the C heap's free pages back to the operating system (glibc's `malloc_trim`; a no-op where
    there is none). Worker threads allocate in arenas of their own, so without it the memory the calling
    thread freed (a training step's activations) stays resident beside what the workers take."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _libc():
    if not hasattr(_libc, "handle"):
        import ctypes

        try:
            _libc.handle = ctypes.CDLL(None)
        except OSError:  # no C library to load symbols from
            _libc.handle = None
    return _libc.handle


def run_batches(n: int, batch_size: int, step: Callable[[int, int], None], device: torch.device) -> None:
    """Call `step(start, stop)` for every batch of rows [0, n), under inference mode.

    On CPU, with torch set to k > 1 intra-op threads, k Python threads of one intra-op thread each take
    the batches in turn (torch's setting is given back after): the GRU's per-step ops are small, and k
    OpenMP threads that meet at a barrier after each of them run about a fifth slower than k threads
    that each run their own batches. Each batch is computed exactly as it would be alone, so the
    results do not depend on the number of threads; `step` must only write its own rows.
    """
    starts = range(0, n, batch_size)
    workers = min(torch.get_num_threads() if device.type == "cpu" else 1, len(starts))
    errors: list[BaseException] = []

    def work(mine: range) -> None:
        try:
            with torch.inference_mode():  # thread-local: entered in each worker
                for start in mine:
                    step(start, min(start + batch_size, n))
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread below
            errors.append(exc)

    if workers <= 1:
        work(starts)
    else:
        release_free_heap()
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            threads = [
                threading.Thread(target=work, args=(starts[i::workers],), name=f"tickerflow-inference-{i}")
                for i in range(workers)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            torch.set_num_threads(before)
    if errors:
        raise errors[0]


def predict_batched(net: GRUForecaster, x: np.ndarray, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles (N, H, Q) and scale (N, H), float64 numpy, in target units, for windows x (N, L, F).

    Batch by batch under inference mode (`run_batches`): no autograd graph is kept, so memory is bounded
    by the batches in flight (a strided window view is made contiguous one batch at a time), not by the
    number of windows.
    """
    net.eval()
    device = next(net.parameters()).device
    horizon, n_q = net.config.horizon, net.config.n_quantiles
    q_out = np.empty((len(x), horizon, n_q), np.float64)
    s_out = np.empty((len(x), horizon), np.float64)

    def step(start: int, stop: int) -> None:
        xb = torch.from_numpy(np.ascontiguousarray(x[start:stop], dtype=np.float32)).to(device)
        z, scale = net.standardized(xb)  # (B, H, Q), (B, H)
        q_out[start:stop] = (z * scale[:, :, None]).double().cpu().numpy()
        s_out[start:stop] = scale.double().cpu().numpy()

    run_batches(len(x), batch_size or inference_batch_size(device), step, device)
    return q_out, s_out
