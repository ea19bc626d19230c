"""Inference on CPU: one Python thread driving torch's OpenMP threads, against `predict_batched`'s worker
threads (one per torch thread, each with one intra-op thread), same network and windows, one process.

    .venv/bin/python bench/inference_threads.py [--windows 40960] [--rounds 3] [--batch-sizes 256,512,1024,2048]

Prints windows/s of each, per round (alternating order), their ratio, and whether the two gave the
same numbers bit for bit; then `predict_batched`'s windows/s at each batch size (rounds in turn, the
order of the sizes reversed every other round). The network is the default quantile GRU (hidden 64,
two layers), untrained.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from tickerflow.runtime import environment

environment.apply()

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "models")]

import tickerflow_model.gru as gru  # noqa: E402


def one_thread_driving_omp(net: gru.GRUForecaster, x: np.ndarray) -> np.ndarray:
    """What predict_batched did before: every batch from the calling thread, torch's threads inside each op."""
    out = np.empty((len(x), net.config.horizon, net.config.n_quantiles))
    with torch.inference_mode():
        for start in range(0, len(x), gru.INFERENCE_BATCH_SIZE):
            z, scale = net.standardized(torch.from_numpy(x[start : start + gru.INFERENCE_BATCH_SIZE]))
            out[start : start + len(z)] = (z * scale[:, :, None]).double().numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=40960)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="256,512,1024,2048", help="comma-separated; empty: skip the sweep")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = gru.GRUForecaster(gru.GRUConfig(input_size=1, horizon=1)).eval()
    x = (np.random.default_rng(0).standard_normal((args.windows, 60, 1)) * 0.01).astype(np.float32)
    print(
        f"{args.windows} windows of 60 days, batches of {gru.INFERENCE_BATCH_SIZE}, torch threads {torch.get_num_threads()}"
    )
    rates: dict[str, list[float]] = {"one thread + OpenMP": [], "worker threads": []}
    same = True
    for r in range(args.rounds):
        order = list(rates) if r % 2 == 0 else list(reversed(rates))
        for name in order:
            t0 = time.perf_counter()
            q = one_thread_driving_omp(net, x) if name == "one thread + OpenMP" else gru.predict_batched(net, x)[0]
            rates[name].append(args.windows / (time.perf_counter() - t0))
            if name == "worker threads":
                worker_q = q
            else:
                omp_q = q
        same = same and np.array_equal(worker_q, omp_q)
    for name, values in rates.items():
        print(
            f"{name:<22} {statistics.median(values):>9,.0f} windows/s (rounds: {', '.join(f'{v:,.0f}' for v in values)})"
        )
    ratio = statistics.median(rates["worker threads"]) / statistics.median(rates["one thread + OpenMP"])
    print(f"ratio worker threads / one thread: {ratio:.2f}x; same numbers bit for bit: {same}")
    sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    by_size: dict[int, list[float]] = {b: [] for b in sizes}
    for r in range(args.rounds):
        for b in sizes if r % 2 == 0 else reversed(sizes):
            t0 = time.perf_counter()
            gru.predict_batched(net, x, batch_size=b)
            by_size[b].append(args.windows / (time.perf_counter() - t0))
    for b, values in by_size.items():
        default = " (default on CPU)" if b == gru.INFERENCE_BATCH_SIZE else ""
        print(
            f"batch {b:>5}: {statistics.median(values):>9,.0f} windows/s (rounds: {', '.join(f'{v:,.0f}' for v in values)}){default}"
        )


if __name__ == "__main__":
    main()
