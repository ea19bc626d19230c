"""Universe scale: one `tickerflow run` on N synthetic tickers × D business days, measured from outside.

    python bench/scale.py --tickers 400 --days 2500            # 1,000,000 rows
    python bench/scale.py --tickers 1000 --days 2500           # 2,500,000 rows
    python bench/scale.py --tickers 400 --days 2500 --epochs 1 --keep /tmp/scale-1m

The universe is written once as a long Parquet file (date, ticker, OHLCV, adjusted close) of GARCH(1,1)
log returns, so its volatility clusters like real prices. Then `tickerflow run --data FILE --epochs E
--json` runs in a child process with a fresh TICKERFLOW_HOME and PREFECT_HOME (the CLI a user runs;
Prefect's ephemeral API, MLflow on SQLite; `--warm-home` first creates the two databases, as a home that
has run before holds them). The child exits as the console script does (`cli.entry`). It reports, after
the flow returns and from the same process: each task run's duration from the Prefect API, the MLflow
run's metric keys and artifact files, and the per-epoch `epoch_seconds` the trainer logged. The parent
adds the wall time from process start to exit, less the child's own queries for that report, and the
child's peak RSS (`wait4`).

Prints per-stage seconds, the training epochs, "work around training" = wall - sum(epoch seconds), its
ratio to one training epoch, the peak RSS, and the number of metric keys and artifacts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tickerflow.runtime import environment

ROOT = Path(__file__).resolve().parent.parent


def universe(tickers: int, days: int, seed: int = 0) -> pd.DataFrame:
    """GARCH(1,1) daily log returns per ticker (omega, alpha, beta = 2e-6, 0.08, 0.90), consistent OHLCV."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=days)
    omega, alpha, beta = 2e-6, 0.08, 0.90
    z = rng.standard_normal((days, tickers))
    r = np.empty((days, tickers))
    var = np.full(tickers, omega / (1 - alpha - beta))
    for t in range(days):  # (tickers,) per step: vectorised across the universe
        r[t] = np.sqrt(var) * z[t]
        var = omega + alpha * r[t] ** 2 + beta * var
    close = 20.0 * rng.uniform(1, 10, tickers) * np.exp(np.cumsum(r, axis=0))  # (days, tickers)
    spread = np.abs(rng.normal(0, 0.01, (days, tickers)))
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates.to_numpy(), tickers),
            "ticker": np.tile([f"T{i:05d}" for i in range(tickers)], days),
            "open": (close * np.exp(rng.normal(0, 0.003, (days, tickers)))).reshape(-1),
            "close": close.reshape(-1),
            "volume": rng.integers(10_000, 1_000_000, (days, tickers)).astype(float).reshape(-1),
        }
    )
    frame["high"] = np.maximum(frame["open"], frame["close"]) * (1 + spread.reshape(-1))
    frame["low"] = np.minimum(frame["open"], frame["close"]) * (1 - spread.reshape(-1))
    frame["adj_close"] = frame["close"]
    return frame.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)


def child_report(run_id: str) -> dict:
    """Inside the child, after the flow returned: Prefect task-run durations, MLflow keys and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tickerflow.tracking.store import use_tracking

    client = use_tracking()
    run = client.get_run(run_id)
    flow_run_id = run.data.tags.get("prefect.flow_run_id")
    stages: dict[str, float] = {}
    with get_client(sync_client=True) as prefect:
        runs = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    for tr in runs:
        seconds = tr.total_run_time.total_seconds() if tr.total_run_time else 0.0
        name = tr.name.rsplit("-", 1)[0]  # Prefect suffixes each task run: window-part-c0a -> window-part
        stages[name] = stages.get(name, 0.0) + seconds

    def count_files(path: str | None = None) -> int:
        n = 0
        for item in client.list_artifacts(run_id, path):
            n += count_files(item.path) if item.is_dir else 1
        return n

    epochs = [m.value for m in client.get_metric_history(run_id, "epoch_seconds")]
    from tickerflow.tracking.home import home_subdir

    manifest = json.loads(home_subdir("windows", run.data.tags["dataset_id"], "manifest.json").read_text())
    return {
        "windows": manifest["counts"],
        "params": run.data.params,
        "stages": stages,
        "metric_keys": len(run.data.metrics),
        "artifacts": count_files(),
        "evaluation_artifacts": sum(1 for _ in client.list_artifacts(run_id, "evaluation")),
        "epoch_seconds": epochs,
    }


def run_child(
    data: Path,
    epochs: int,
    home: Path,
    extra: list[str],
    probe: bool = False,
    cprofile: bool = False,
    warm: bool = False,
) -> tuple[dict, float, float]:
    """`tickerflow run` in a child process -> (its report, wall seconds, peak RSS in GiB)."""
    prefect_home = home / "prefect"
    prefect_home.mkdir(parents=True)
    env = {
        **os.environ,
        "TICKERFLOW_HOME": str(home / "tf"),
        "PREFECT_HOME": str(prefect_home),
    }
    environment.apply(env)
    for var in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        env.pop(var, None)
    report = home / "report.json"
    script = (
        "import atexit, json, sys, time\n"
        "sys.path[:0] = [sys.argv[1], sys.argv[1] + '/models', sys.argv[1] + '/bench']\n"
        # the console script's exit (cli.entry): every exit handler (the probe's too), then no teardown
        "from tickerflow import cli\nfrom tickerflow.cli import command_line\nfrom tickerflow.runtime import prefect_api\n"
        "status = {'code': 1}\n"
        "atexit.register(command_line._exit_now, status)\n"
        # the probe imports the pipeline to wrap its stages: begin the server start first, as main() does
        + (
            "from tickerflow.runtime import environment\nenvironment.apply()\nprefect_api.begin_prefect_api()\n"
            "import stage_probe\nstage_probe.install(sys.argv[2] + '.probe.json')\n"
            if probe
            else ""
        )
        + ("stage_probe.mark('cli imported')\n" if probe else "")
        + "import io, contextlib\n"
        "out = io.StringIO()\n"
        + ("import cProfile\nprof = cProfile.Profile()\nprof.enable()\n" if cprofile else "")
        + "with contextlib.redirect_stdout(out):\n"
        "    status['code'] = code = cli.main(sys.argv[3:])\n"
        "returned = time.time()\n"
        + ("prof.disable()\nprof.dump_stats(sys.argv[2] + '.cprofile')\n" if cprofile else "")
        + ("stage_probe.mark('flow returned')\n" if probe else "")
        + "sys.stdout.write(out.getvalue())\n"
        "if code:\n"
        "    sys.exit(code)\n"
        "summary = json.loads(out.getvalue().strip().splitlines()[-1])\n"
        "from scale import child_report\n"
        "rep = child_report(summary['mlflow_run_id'])\n"
        "rep['main_returned'], rep['report_done'] = returned, time.time()\n"
        "open(sys.argv[2], 'w').write(json.dumps(rep))\n"
    )
    command = [
        sys.executable,
        "-c",
        script,
        str(ROOT),
        str(report),
        "run",
        "--data",
        str(data),
        "--epochs",
        str(epochs),
        "--json",
        *extra,
    ]
    if warm:
        warm_up(env)
    run_child.popen_wall = time.time()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = home / "run.log"
    with open(log, "wb") as fh:
        for chunk in iter(lambda: proc.stdout.read(65536), b""):
            fh.write(chunk)
    _, status, usage = os.wait4(proc.pid, 0)
    ended = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"tickerflow run failed ({proc.returncode}); log {log}:\n{log.read_text()[-4000:]}")
    rep = json.loads(report.read_text())
    # process start to end, without the bench's own queries between the CLI's return and the exit
    wall = (rep["main_returned"] - run_child.popen_wall) + (ended - rep["report_done"])
    rep["bench_queries_seconds"] = rep["report_done"] - rep["main_returned"]
    rep["exit_seconds"] = ended - rep["report_done"]
    return rep, wall, usage.ru_maxrss / 2**20  # KiB -> GiB


def warm_up(env: dict) -> None:
    """What a home holds after its first run: Prefect's and MLflow's databases, created and migrated."""
    script = (
        "from tickerflow.runtime.prefect_api import prefect_api\n"
        "from tickerflow.tracking.store import use_tracking\n"
        "with prefect_api():\n"
        "    use_tracking().search_experiments()\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True)


def throughput(report: dict, epochs: list[float]) -> str:
    """Training samples/s of the run's epochs, and their FLOP rate as a share of this CPU's matmul peaks,
    measured now, after the run, in this process (torch's default threads)."""
    import torch
    from train_throughput import matmul_peak_gflops, train_flops_per_sample

    p, n = report["params"], report["windows"]
    features = len(json.loads(p["window.features"].replace("'", '"')))
    horizon, quantiles = int(p["window.horizon"]), len(json.loads(p["train.gru.quantiles"]))
    # the network reads each feature plus the first one in volatility units (gru.GRUForecaster.standardized)
    forward = (
        train_flops_per_sample(
            int(p["window.lookback"]),
            features + 1,
            int(p["train.gru.hidden_size"]),
            int(p["train.gru.num_layers"]),
            horizon * quantiles,
        )
        / 3
    )
    epoch = float(np.median(epochs))
    gflops = (3 * forward * n["train"] + forward * n["val"]) / epoch / 1e9  # training passes + validation pass
    cpu = torch.device("cpu")
    fp32, bf16 = matmul_peak_gflops(cpu), matmul_peak_gflops(cpu, torch.bfloat16)
    return (
        f"training: {n['train'] / epoch:,.0f} samples/s ({n['train']:,} training and {n['val']:,} validation "
        f"windows per {epoch:.1f} s epoch, {forward / 1e6:.2f} MFLOP per forward pass): {gflops:.1f} GFLOP/s = "
        f"{gflops / fp32:.1%} of this CPU's fp32 matmul peak ({fp32:.0f} GFLOP/s) and {gflops / bf16:.1%} of "
        f"its bf16 peak ({bf16:.0f} GFLOP/s), measured after the run"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=400)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the data, homes and log in this folder")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="per-stage seconds, RSS and high-water mark from inside the run (bench/stage_probe.py)",
    )
    parser.add_argument("--cprofile", action="store_true", help="cProfile the CLI call; stats in the run folder")
    parser.add_argument(
        "--warm-home",
        action="store_true",
        help="create and migrate the home's Prefect and MLflow databases before the measured run, "
        "as a home that has run before holds them (default: a new, empty home)",
    )
    parser.add_argument("extra", nargs="*", help="more `tickerflow run` arguments, after --")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="tf-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    data = base / f"universe-{args.tickers}x{args.days}.parquet"
    if not data.exists():
        t0 = time.perf_counter()
        universe(args.tickers, args.days).to_parquet(data, index=False)
        print(
            f"generated {args.tickers} tickers x {args.days} days = {args.tickers * args.days:,} rows "
            f"in {time.perf_counter() - t0:.1f} s -> {data.stat().st_size / 2**20:.1f} MiB"
        )
    home = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    report, wall, peak_gib = run_child(data, args.epochs, home, args.extra, args.probe, args.cprofile, args.warm_home)

    epochs = report["epoch_seconds"]
    around = wall - sum(epochs)
    print(
        f"\n# scale run: {args.tickers} tickers x {args.days} days = {args.tickers * args.days:,} rows, "
        f"--epochs {args.epochs}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print("stage seconds (Prefect task runs; window-part summed over parts):")
    for name, seconds in sorted(report["stages"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<22} {seconds:8.1f}")
    print(f"training epochs (s): {', '.join(f'{s:.1f}' for s in epochs)}")
    print(f"home: {'warm (databases created before the run)' if args.warm_home else 'new (first run)'}")
    print(
        f"wall, process start to exit: {wall:.1f} s (of which the exit {report['exit_seconds']:.1f} s; "
        f"the bench's own queries after the run, {report['bench_queries_seconds']:.1f} s, not counted)"
    )
    print(
        f"work around training (wall - epochs): {around:.1f} s = {around / (sum(epochs) / len(epochs)):.2f}x one epoch"
    )
    print(f"peak RSS of the run process: {peak_gib:.2f} GiB")
    print(
        f"MLflow run: {report['metric_keys']} metric keys, {report['artifacts']} artifact files "
        f"({report['evaluation_artifacts']} entries under evaluation/)"
    )
    print(throughput(report, epochs))
    if args.probe:
        from stage_probe import report as probe_report

        print(probe_report(home / "report.json.probe.json", wall, run_child.popen_wall))
    if args.cprofile:
        import pstats

        print(f"cProfile stats: {home / 'report.json.cprofile'}")
        pstats.Stats(str(home / "report.json.cprofile")).sort_stats("cumulative").print_stats(40)
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
