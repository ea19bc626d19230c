"""Windowing benchmark: the tutorial loop vs the project's windows, and the window stage vs the Parquet I/O floor.

On one synthetic long-format input (default 200 tickers x 5,000 business days = 1,000,000 rows,
lookback 60), in one run:

  (a) tutorial: `for i in range(len(data) - seq_length): seq = data[i:i+seq_length]; label = data[i+seq_length]`
      then `np.array(...)`, per ticker, on the same scaled feature series the project uses;
  (b) project window construction in memory: `make_windows` plus materialising x and y (float32), per ticker;
      its GB/s is compared with a plain numpy copy of the same number of bytes;
  (c) the whole window stage (`build_window_dataset`): canonical frame -> Parquet parts + manifest;
  (d) I/O floor: one bare `pyarrow.parquet.write_table` of an already-built table holding the same
      windows, same compression (with the stage's encoding options, and with pyarrow's defaults).

Times are medians over --repeats runs; (c)'s peak RSS is measured in a fresh subprocess. Usage:

    python bench/windowing.py [--tickers 200] [--days 5000] [--lookback 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "models")]

from tickerflow_model.config import WindowConfig  # noqa: E402
from tickerflow_model.features import compute_features  # noqa: E402
from tickerflow_model.window_dataset import SPLITS, build_window_dataset, ticker_slices  # noqa: E402
from tickerflow_model.windows import make_windows  # noqa: E402


def synthetic_prices(n_tickers: int, n_days: int, seed: int = 0) -> pd.DataFrame:
    """A canonical long frame (sorted by ticker, date) of random-walk prices with consistent OHLCV."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=n_days).to_numpy("datetime64[ns]")
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.015, (n_tickers, n_days)), axis=1))  # (T, D)
    tickers = np.array([f"T{i:04d}" for i in range(n_tickers)])
    frame = pd.DataFrame(
        {
            "date": np.tile(dates, n_tickers),
            "ticker": pd.array(np.repeat(tickers, n_days), dtype="string"),
            "open": (close * 0.999).ravel(),
            "high": (close * 1.01).ravel(),
            "low": (close * 0.99).ravel(),
            "close": close.ravel(),
            "volume": rng.integers(1_000, 1_000_000, n_tickers * n_days).astype(np.float64),
        }
    )
    return frame


def bench_config(lookback: int) -> WindowConfig:
    return WindowConfig(lookback=lookback, horizon=1, min_history=lookback + 2, features=("log_return",))


def scaled_series(frame: pd.DataFrame, config: WindowConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per ticker: (prices, standardized log-return features (T-1, 1) float32), the input both (a) and (b) window."""
    out = []
    for rows in ticker_slices(frame, "close", config):
        prices = rows.prices
        feats = compute_features(prices, config.resolved_features)
        out.append((prices, ((feats - feats.mean()) / feats.std()).astype(np.float32)))
    return out


def tutorial_windows(series, seq_length: int) -> int:
    """(a) The tutorial's loop; returns the bytes of the sequences it built."""
    total = 0
    for _, data in series:
        xs, ys = [], []
        for i in range(len(data) - seq_length):
            seq = data[i : i + seq_length]
            label = data[i + seq_length]
            xs.append(seq)
            ys.append(label)
        x, _ = np.array(xs), np.array(ys)
        total += x.nbytes
    return total


def project_windows(series, lookback: int, horizon: int) -> int:
    """(b) make_windows plus materialising x (N, L, F) and y (N, H) as float32; returns x's bytes."""
    total = 0
    for prices, feats in series:
        x, y, _ = make_windows(prices, feats, lookback, horizon)
        x = np.ascontiguousarray(x, dtype=np.float32)  # (N, L, F)
        y = y.astype(np.float32)  # (N, H)
        total += x.nbytes
    return total


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def time_numpy_copy(nbytes: int, repeats: int) -> float:
    """The memory-bandwidth reference: one contiguous copy of `nbytes`."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.zeros_like(src)  # touched, so the timing is the copy and not page faults
    seconds, _ = timed(lambda: np.copyto(dst, src), repeats)
    return seconds


def stage_against_floor(frame, config: WindowConfig, tmp: Path, repeats: int) -> dict:
    """(c) and (d) alternately, so both see the same machine load; (c)/(d) is the median of paired ratios.

    (d) writes one table of the windows (c) produced, built beforehand, with the stage's options (same
    compression, dictionary only for the ticker) and, as a second reference, pyarrow's defaults.
    """
    ds = build_window_dataset(frame, config, "bench", tmp / "c-first")
    table = pa.concat_tables(pq.read_table(p) for s in SPLITS for p in ds.part_files(s)).combine_chunks()
    floors = {
        "d": dict(compression=config.compression, use_dictionary=["ticker"]),
        "d0": dict(compression=config.compression),
    }
    times: dict[str, list[float]] = {"c": [], "d": [], "d0": []}
    for i in range(repeats):
        start = time.perf_counter()
        build_window_dataset(frame, config, "bench", tmp / f"c{i}")
        times["c"].append(time.perf_counter() - start)
        for name, options in floors.items():
            start = time.perf_counter()
            pq.write_table(table, tmp / f"{name}.parquet", **options)
            times[name].append(time.perf_counter() - start)
    ratios = {name: statistics.median(c / d for c, d in zip(times["c"], times[name])) for name in floors}
    return {
        "t": {k: statistics.median(v) for k, v in times.items()},
        "bytes": {"c": folder_bytes(ds.path), **{k: (tmp / f"{k}.parquet").stat().st_size for k in floors}},
        "ratio": ratios,
        "windows": table.num_rows,
    }


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def read_status(field: str) -> int:
    """A /proc/self/status memory field in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure_stage_rss(args: argparse.Namespace) -> dict:
    """Child process: build the input, warm up, reset the RSS high-water mark, run (c), report the peak.

    With `--release-caches`, the allocators first hand freed memory back to the OS, so the stage cannot
    silently reuse pages left over from building its input; its RSS rise then includes the allocators'
    own growth (arenas, segments).
    """
    frame = synthetic_prices(args.tickers, args.days)
    config = bench_config(args.lookback)
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up on two tickers: lazy imports, codec and thread-pool start-up are not the stage's memory
        build_window_dataset(synthetic_prices(2, args.days, seed=1), config, "warm-up", Path(tmp))
    # a proxy pool counts only what the stage allocates through Arrow (the parent's high-water mark
    # would include building the input frame)
    if args.release_caches:
        pa.default_memory_pool().release_unused()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    pa.set_memory_pool(pool)
    baseline = read_status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    # RSS alone can hide the stage's memory (the allocator reuses pages freed while building the
    # input), so the Python/numpy heap peak (tracemalloc) and Arrow's pool peak are reported too.
    tracemalloc.start()
    with tempfile.TemporaryDirectory() as tmp:
        build_window_dataset(frame, config, "bench", Path(tmp))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "baseline_rss": baseline,
        "peak_rss": read_status("VmHWM"),
        "hwm_reset": reset,
        "traced_peak": traced_peak,
        "arrow_peak": pool.max_memory(),
        "arrow_backend": pool.backend_name,
    }


def measure_in_child(args: argparse.Namespace, extra: list[str]) -> dict:
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            f"--tickers={args.tickers}",
            f"--days={args.days}",
            f"--lookback={args.lookback}",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=200)
    parser.add_argument("--days", type=int, default=5000)
    parser.add_argument("--lookback", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--release-caches", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        print(json.dumps(measure_stage_rss(args)))
        return

    frame = synthetic_prices(args.tickers, args.days)
    rows = len(frame)
    frame_bytes = int(frame.memory_usage(deep=True).sum())
    config = bench_config(args.lookback)
    series = scaled_series(frame, config)
    largest = max(len(f) - config.lookback - config.horizon for _, f in series)
    largest_bytes = largest * config.lookback * config.spec.n_features * 4 + largest * config.horizon * 4

    t_a, bytes_a = timed(lambda: tutorial_windows(series, config.lookback), args.repeats)
    t_b, bytes_b = timed(lambda: project_windows(series, config.lookback, config.horizon), args.repeats)
    t_copy = time_numpy_copy(bytes_b, args.repeats)

    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-"))
    io = stage_against_floor(frame, config, tmp, args.repeats)
    (t_c, t_d, t_d0), n_windows = (io["t"][k] for k in ("c", "d", "d0")), io["windows"]
    bytes_c, bytes_d, bytes_d0 = (io["bytes"][k] for k in ("c", "d", "d0"))

    rss, released = (measure_in_child(args, extra) for extra in ([], ["--release-caches"]))
    stage_rss = rss["peak_rss"] - rss["baseline_rss"]
    released_rss = released["peak_rss"] - released["baseline_rss"]
    for p in sorted(tmp.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    tmp.rmdir()

    gb = 1e9
    print(
        f"input: {rows:,} rows ({args.tickers} tickers x {args.days} days), lookback {args.lookback}, "
        f"{n_windows:,} windows written (all splits), medians of {args.repeats}, {os.cpu_count()} CPUs"
    )
    print(f"{'step':<44} {'seconds':>9} {'rows/s':>13} {'out bytes':>14}")
    for name, t, out in [
        ("(a) tutorial loop + np.array", t_a, bytes_a),
        ("(b) project windows in memory", t_b, bytes_b),
        ("    numpy copy of the same bytes", t_copy, bytes_b),
        ("(c) window stage -> Parquet + manifest", t_c, bytes_c),
        ("(d) bare pq.write_table, same windows", t_d, bytes_d),
        ("    same, pyarrow default encodings", t_d0, bytes_d0),
    ]:
        print(f"{name:<44} {t:>9.3f} {rows / t:>13,.0f} {out:>14,}")
    print(f"(b) speed-up over (a): {t_a / t_b:.1f}x (target >= 5x)")
    print(
        f"(b) {bytes_b / t_b / gb:.2f} GB/s vs numpy copy {bytes_b / t_copy / gb:.2f} GB/s "
        f"({(bytes_b / t_b) / (bytes_b / t_copy):.2f} of copy bandwidth)"
    )
    print(
        f"(c) / (d), median of paired runs: {io['ratio']['d']:.2f}x (target <= 1.5x); "
        f"(c) / (d, pyarrow defaults): {io['ratio']['d0']:.2f}x"
    )
    heap = rss["traced_peak"] + rss["arrow_peak"]
    mib = 2**20
    print(
        f"(c) memory, fresh process: peak RSS {rss['peak_rss'] / mib:.1f} MiB, of which above the process with "
        f"its input loaded and warmed up: {stage_rss / mib:.1f} MiB (high-water mark reset: {rss['hwm_reset']}); "
        f"{released_rss / mib:.1f} MiB when the allocators' free pages were first returned to the OS"
    )
    print(
        f"(c) allocations during the stage: Python/numpy peak {rss['traced_peak'] / mib:.2f} MiB + Arrow pool "
        f"({rss['arrow_backend']}) peak {rss['arrow_peak'] / mib:.2f} MiB = {heap / mib:.2f} MiB"
    )
    print(
        f"largest ticker's windows {largest_bytes / mib:.2f} MiB: RSS rise {stage_rss / largest_bytes:.1f}x "
        f"({released_rss / largest_bytes:.1f}x with caches released), "
        f"allocation peak {heap / largest_bytes:.1f}x (target < 3x); input frame {frame_bytes / mib:.1f} MiB"
    )


if __name__ == "__main__":
    main()
