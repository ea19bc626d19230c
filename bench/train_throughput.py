"""Training throughput: the tutorial's bare GRU loop against the project's train stage, same data, one run.

    .venv/bin/python bench/train_throughput.py [--windows 50000] [--epochs 3] [--device cpu|cuda|auto]

(a) the tutorial loop: nn.GRU(1, 64, 2, batch_first=True) + Linear on the last step, fp32, Adam, MSE, the
    project's default batch size, tensors already in memory (on the device for CUDA), no framework.
(b) the project's training as the train stage runs it (tickerflow_model.trainer.train_model with the
    stage's callbacks): default TrainConfig for the device, per-epoch MLflow metrics into a temporary
    SQLite store, a checkpoint per epoch, the per-epoch log line and (on a terminal) the progress bar.

Both time an epoch as one pass over the training windows plus the validation loss, and report
samples/s = training windows / epoch seconds (median over epochs), the wall-clock rate over the whole
call (set-up, checkpoints and logging included), the same per CPU-second of this process (what a
dedicated core would give: on a shared machine other processes' load moves the wall-clock rates a lot,
this much less), and the validation MSE after the last epoch (for (b), whose loss is the pinball loss
of its quantiles, the MSE of its median). The
arithmetic rate uses the GRU's FLOP count (see `train_flops_per_sample`) and is quoted as a share of a
large fp32 torch.matmul measured in the same run. Prints a Markdown table; nothing is written outside
a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tickerflow.runtime import environment

environment.apply()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "models")]

from tickerflow_model.config import TrainConfig  # noqa: E402
from tickerflow_model.trainer import resolve_device, resolve_precision  # noqa: E402

LOOKBACK, FEATURES, HORIZON = 60, 1, 1


# --- data ------------------------------------------------------------------------------------


def synthetic_windows(n: int, lookback: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized windows of a noisy AR(2) series with two cycles: learnable, but not trivially.

    Returns x (n, lookback, 1) float32 and y (n, 1) float32 (the next value).
    """
    rng = np.random.default_rng(seed)
    t_len = n + lookback + 1
    noise = rng.normal(size=t_len)
    series = np.zeros(t_len)
    for t in range(2, t_len):
        series[t] = 0.6 * series[t - 1] - 0.3 * series[t - 2] + noise[t]
    t = np.arange(t_len)
    series += 1.5 * np.sin(2 * np.pi * t / 23.0) + np.sin(2 * np.pi * t / 71.0)
    series = (series - series.mean()) / series.std()
    x = np.lib.stride_tricks.sliding_window_view(series[:-1], lookback)[:n]  # (n, L)
    y = series[lookback : lookback + n]  # (n,)
    return x[:, :, None].astype(np.float32), y[:, None].astype(np.float32)


# --- arithmetic ------------------------------------------------------------------------------


def train_flops_per_sample(lookback: int, input_size: int, hidden: int, layers: int, horizon: int) -> float:
    """Forward FLOPs per window = L * sum_l 2*3H*(I_l + H)  (three gates, input and hidden matmuls)
    + 2*H*horizon (head); training ~ 3x forward (backward costs about twice the forward)."""
    forward = 0.0
    for layer in range(layers):
        i = input_size if layer == 0 else hidden
        forward += lookback * 2 * 3 * hidden * (i + hidden)
    forward += 2 * hidden * horizon
    return 3.0 * forward


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, dtype=torch.float32, size: int | None = None, reps: int = 5) -> float:
    """Best of `reps` large square matmuls (2*n^3 FLOPs each)."""
    n = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    sync(device)
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


# --- (a) the tutorial's bare loop ------------------------------------------------------------


class TutorialGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(1, 64, 2, batch_first=True)
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        out, _ = self.gru(x)  # (B, L, 64)
        return self.fc(out[:, -1, :])  # (B, 1)


def bare_loop(x, y, xv, yv, epochs: int, batch_size: int, device: torch.device, max_batches: int | None = None) -> dict:
    """fp32 Adam/MSE, data already on `device`; epoch = training pass + validation loss."""
    torch.manual_seed(0)
    model = TutorialGRU().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    x, y, xv, yv = (torch.from_numpy(a).to(device) for a in (x, y, xv, yv))
    rates, val = [], float("nan")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x), device=device)
        seen = 0
        for b, start in enumerate(range(0, len(x), batch_size)):
            if max_batches is not None and b >= max_batches:
                break
            idx = perm[start : start + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(idx)
        if max_batches is None:
            model.eval()
            with torch.no_grad():
                val = sum(
                    float(torch.sum((model(xv[s : s + 8192]) - yv[s : s + 8192]) ** 2)) for s in range(0, len(xv), 8192)
                ) / len(xv)
        sync(device)
        rates.append(seen / (time.perf_counter() - t0))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    done = len(x) * epochs
    return {"rates": rates, "val_loss": val, "wall_rate": done / wall, "cpu_rate": done / cpu}


# --- (b) the project's train stage -----------------------------------------------------------


def project_stage(x, y, xv, yv, config: TrainConfig, workdir: Path) -> dict:
    import mlflow

    from tickerflow.reporting.training import epoch_metrics
    from tickerflow.tasks.train import ProgressBar, epoch_line, gpu_slot
    from tickerflow_model.trainer import train_model

    store = workdir / f"mlflow-{config.batch_size}.db"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment(
        f"bench-{config.batch_size}", artifact_location=(workdir / "mlartifacts").as_uri()
    )  # a SQLite store would otherwise put artifacts in ./mlruns of the folder the bench runs in
    run_id = client.create_run(experiment).info.run_id
    log = logging.getLogger("bench.train")
    with gpu_slot(config):  # on CUDA: connect to Prefect before the clock starts, as the pipeline has
        pass
    t0, cpu0 = time.perf_counter(), time.process_time()
    bar = ProgressBar(config.epochs, sys.stderr)

    def on_epoch(s) -> None:  # what the train stage and the flow's reporter do after each epoch
        log.info("%s", epoch_line(s, config.epochs))
        bar.on_epoch(s)
        now = int(time.time() * 1000)
        client.log_batch(
            run_id, metrics=[mlflow.entities.Metric(k, float(v), now, s.epoch) for k, v in epoch_metrics(s).items()]
        )

    try:
        result = train_model(
            x,
            y,
            xv,
            yv,
            config,
            checkpoint_dir=workdir / f"ckpt-{config.batch_size}",
            on_epoch=on_epoch,
            on_batch=bar.on_batch,
        )
    finally:
        bar.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    logged = [m.step for m in client.get_metric_history(run_id, "samples_per_second")]
    assert logged == list(range(1, config.epochs + 1)), logged  # every epoch reached MLflow
    return {
        "rates": [h.samples_per_second for h in result.history],
        # the stage trains quantiles on the pinball loss: its point forecast is the median (q50), scored by MSE here
        "val_loss": median_mse(result.net, xv, yv),
        "wall_rate": len(x) * config.epochs / wall,
        "cpu_rate": len(x) * config.epochs / cpu,
        "precision": result.precision,
    }


def median_mse(net, xv, yv) -> float:
    from tickerflow_model.gru import predict_batched
    from tickerflow_model.quantiles import median_index

    q, _ = predict_batched(net, xv)  # (M, H, Q)
    return float(np.mean((q[:, :, median_index(net.config.quantiles)] - yv) ** 2))


# --- report ----------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=50_000, help="training windows (validation: a fifth more)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="(a)/(b) rounds, order alternating")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cpu-threads", type=int, default=None, help="override TrainConfig.cpu_threads (0: torch's)")
    parser.add_argument("--extra-batch-size", type=int, default=0, help="also run (b) at this batch size")
    parser.add_argument(
        "--default-threads-batches",
        type=int,
        default=5,
        help="CPU: also time this many batches of (a) at torch's default thread count (0: skip)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    device = resolve_device(args.device)
    default_threads = torch.get_num_threads()
    config = TrainConfig(device=str(device), epochs=args.epochs, patience=args.epochs + 1)
    if args.cpu_threads is not None:
        config = config.updated(cpu_threads=args.cpu_threads)
    batch = config.batch_size
    n_val = max(args.windows // 5, 1000)
    x_all, y_all = synthetic_windows(args.windows + n_val, LOOKBACK)
    x, y, xv, yv = x_all[: args.windows], y_all[: args.windows], x_all[args.windows :], y_all[args.windows :]
    flops = train_flops_per_sample(LOOKBACK, FEATURES, config.gru.hidden_size, config.gru.num_layers, HORIZON)

    print(
        f"# train throughput: {args.windows} training + {n_val} validation windows, lookback {LOOKBACK}, "
        f"{args.epochs} epochs, batch {batch}"
    )
    print(
        f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else os.uname().machine})"
        f", torch {torch.__version__}, torch default threads {default_threads}, (b) cpu_threads "
        f"{config.cpu_threads if device.type == 'cpu' else 'n/a'}, (b) precision "
        f"{resolve_precision(config.precision, device)}"
    )
    print(f"FLOPs per training sample: {flops / 1e6:.2f} M (3 x forward; forward = L*sum_l 6H(I_l+H) + 2H*horizon)")

    # On a shared CPU, one thread can beat all of them; the peak is the best either way.
    peaks = {}
    for threads in sorted({1, default_threads}) if device.type == "cpu" else [default_threads]:
        torch.set_num_threads(threads)
        peaks[threads] = (matmul_peak_gflops(device), matmul_peak_gflops(device, torch.bfloat16))
    torch.set_num_threads(default_threads)
    peak = max(p[0] for p in peaks.values())
    print(
        "fp32 matmul peak: "
        + ", ".join(f"{p[0]:.0f} GFLOP/s at {t} thread(s) (bf16 {p[1]:.0f})" for t, p in peaks.items())
        + f"; using {peak:.0f}"
    )

    # The bare loop runs at the thread count (b) uses, so the ratio isolates what the stage adds or saves.
    threads_b = config.cpu_threads if device.type == "cpu" and config.cpu_threads > 0 else default_threads
    # Rounds alternate the order (a b, b a, ...) so that load drifting on a shared machine hits both alike.
    runs: dict[str, list[dict]] = {"a": [], "b": [], "c": []}
    with tempfile.TemporaryDirectory(prefix="tickerflow-bench-") as tmp:
        for rnd in range(args.rounds):
            for which in ("a", "b") if rnd % 2 == 0 else ("b", "a"):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                if which == "a":
                    torch.set_num_threads(threads_b)
                    r = bare_loop(x, y, xv, yv, args.epochs, batch, device)
                    torch.set_num_threads(default_threads)
                else:
                    r = project_stage(x, y, xv, yv, config, Path(tmp) / f"round-{rnd}")
                r["mem"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
                runs[which].append(r)
                print(
                    f"round {rnd + 1} ({which}): " + ", ".join(f"{v:.0f}" for v in r["rates"]) + " samples/s",
                    file=sys.stderr,
                )
        if args.extra_batch_size:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            c = project_stage(x, y, xv, yv, config.updated(batch_size=args.extra_batch_size), Path(tmp) / "extra")
            c["mem"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            runs["c"].append(c)

    def merged(results: list[dict]) -> dict:
        return {
            "rates": [v for r in results for v in r["rates"]],
            "val_loss": results[0]["val_loss"],  # seeded: every round reaches the same loss
            "wall_rate": statistics.median(r["wall_rate"] for r in results),
            "cpu_rate": statistics.median(r["cpu_rate"] for r in results),
            "mem": max((r["mem"] for r in results if r["mem"] is not None), default=None),
            "precision": results[0].get("precision", "fp32"),
        }

    a, b = merged(runs["a"]), merged(runs["b"])
    rows = [
        ("(a) tutorial loop, fp32", batch, threads_b, a, a["mem"]),
        (f"(b) project train stage, {b['precision']}", batch, threads_b, b, b["mem"]),
    ]
    if runs["c"]:
        c = merged(runs["c"])
        rows.append((f"(b) project train stage, {c['precision']}", args.extra_batch_size, threads_b, c, c["mem"]))

    print()
    print(
        "| run | batch | threads | samples/s (median) | per epoch | wall-clock samples/s | samples per CPU-second "
        "| GFLOP/s | share of fp32 peak | val MSE after last epoch | peak GPU GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, bs, threads, r, mem in rows:
        med = statistics.median(r["rates"])
        gflops = med * flops / 1e9
        per_epoch = ", ".join(f"{v:.0f}" for v in r["rates"])
        mem_s = f"{mem:.2f}" if mem is not None else "-"
        print(
            f"| {name} | {bs} | {threads} | {med:.0f} | {per_epoch} | {r['wall_rate']:.0f} | {r['cpu_rate']:.0f} | {gflops:.1f} | "
            f"{gflops / peak:.1%} | {r['val_loss']:.5f} | {mem_s} |"
        )
    ratio = statistics.median(b["rates"]) / statistics.median(a["rates"])
    per_round = [
        statistics.median(rb["rates"]) / statistics.median(ra["rates"]) for ra, rb in zip(runs["a"], runs["b"])
    ]
    val_gap = (b["val_loss"] - a["val_loss"]) / a["val_loss"]
    print()
    print(
        f"ratio (b)/(a), median samples/s over all rounds: {ratio:.2f}x (per round: "
        + ", ".join(f"{v:.2f}x" for v in per_round)
        + f");  wall-clock: {b['wall_rate'] / a['wall_rate']:.2f}x;  "
        f"per CPU-second (insensitive to other processes' load): {b['cpu_rate'] / a['cpu_rate']:.2f}x"
    )
    print(f"val MSE (b) vs (a): {val_gap:+.2%} ({'within' if val_gap <= 0.02 else 'WORSE than'} the 2% allowance)")

    if device.type == "cpu" and args.default_threads_batches and default_threads != threads_b:
        torch.set_num_threads(default_threads)
        d = bare_loop(x, y, xv, yv, 1, batch, device, max_batches=args.default_threads_batches)
        print(
            f"(a) at torch's default {default_threads} threads, first {args.default_threads_batches} batches: "
            f"{d['rates'][0]:.0f} samples/s  -> (b)/(a@{default_threads} threads) {statistics.median(b['rates']) / d['rates'][0]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
