"""A team on shared servers: K machines start `tickerflow run` at the same moment against one PostgreSQL-backed
Prefect server and MLflow tracking server (proxied artifacts).

Starts both servers on loopback, each on a PostgreSQL database made for this run (dropped at the end), then
for each K starts K `tickerflow run`s at once, each from a TICKERFLOW_HOME (and PREFECT_HOME) of its own, as K
machines would, all training the same registered model (one per K). Prints per K: the wall time until the
last run ended, the runs that failed (exit code, and whether a traceback reached the console), how many
versions hold the champion alias (1 is right), and the length of the model's champion history.

`--promotions N` then races N `tickerflow promote --version V` from N homes at once against the last
model (each promoting a version that is not the champion) and counts how many reported success, and how
many versions ended with the champion alias.

Small on purpose (a slice of data/sample, `--epochs 1`): the servers, not the training, are measured.
Needs `pip install 'tickerflow[postgres]'` and a PostgreSQL that the `--postgres` user may create databases
on. Usage:

    python bench/team_servers.py [--runs 2 4] [--tickers 2] [--days 520] [--promotions 20]
        [--postgres postgresql://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "models")]
from tickerflow.runtime import environment  # noqa: E402

environment.apply()

SAMPLE = ROOT / "data" / "sample" / "stocks_daily_2000_2013.csv.gz"
RUN_TIMEOUT_S = 1800
START_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_slice(folder: Path, tickers: int, days: int) -> Path:
    import pandas as pd

    raw = pd.read_csv(SAMPLE)
    keep = sorted(raw["Ticker"].unique())[:tickers]
    raw = raw[raw["Ticker"].isin(keep)].groupby("Ticker").tail(days)
    path = folder / "slice.csv"
    raw.to_csv(path, index=False)
    return path


def machine_env(home: Path, prefect_url: str, mlflow_url: str) -> dict[str, str]:
    """One machine of the team: its own home and Prefect profile folder, the shared servers."""
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        TICKERFLOW_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_API_URL=f"{prefect_url}/api",
        MLFLOW_TRACKING_URI=mlflow_url,
    )
    return dict(environment.apply(env))


def at_once(commands: list[tuple[list[str], dict[str, str]]], logs: Path) -> tuple[float, list[tuple[int, str]]]:
    """Start every command at once; (seconds until the last ended, [(exit code, stderr)])."""
    started = time.perf_counter()
    running = []
    for i, (args, env) in enumerate(commands):
        err = (logs / f"{i}.err").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "tickerflow", *args],
            env=env,
            cwd=logs,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        running.append((process, err))
    outcomes = []
    for process, err in running:
        process.wait(RUN_TIMEOUT_S)
        err.close()
        outcomes.append((process.returncode, Path(err.name).read_text(errors="replace")))
    return time.perf_counter() - started, outcomes


def registry_state(env: dict[str, str], model: str, logs: Path) -> tuple[int, int, int]:
    """(versions, versions holding the champion alias, champion history length) of `model`, as
    `tickerflow models --model M --json` lists them; (-1, -1, -1) when it fails."""
    from tickerflow_model.names import CHAMPION_ALIAS

    proc = subprocess.run(
        [sys.executable, "-m", "tickerflow", "models", "--model", model, "--json"],
        env=env,
        cwd=logs,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        print("   models: " + (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1][:300])
        return -1, -1, -1
    listing = json.loads(proc.stdout)
    versions = listing["versions"]
    champions = sum(1 for v in versions if CHAMPION_ALIAS in v["aliases"])
    return len(versions), champions, len(listing["champion_history"])


def failures(outcomes: list[tuple[int, str]]) -> str:
    bad = [(code, "Traceback" in err) for code, err in outcomes if code != 0]
    if not bad:
        return "0"
    return f"{len(bad)} (exit codes {sorted(c for c, _ in bad)}, {sum(t for _, t in bad)} with a traceback)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[2, 4], help="K: concurrent runs, one round per K")
    parser.add_argument("--tickers", type=int, default=2)
    parser.add_argument("--days", type=int, default=520)
    parser.add_argument("--promotions", type=int, default=0, help="N racing `tickerflow promote`s after the runs")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()

    import mlflow

    from tickerflow.runtime.postgres import PostgresAddress, unique_names
    from tickerflow.runtime.servers import mlflow_server, prefect_server, start_all, stop_all
    from tickerflow_model.names import CHAMPION_ALIAS

    address = PostgresAddress.parse(args.postgres)
    problem = address.problem()
    if problem:
        raise SystemExit(f"PostgreSQL at {address.where} cannot be used: {problem}")
    work = Path(tempfile.mkdtemp(prefix="tf-team-bench-"))
    data = small_slice(work, args.tickers, args.days)
    config = work / "config.json"
    config.write_text(json.dumps({"register": {"min_skill": -1.0}}))  # the servers are measured, not the gate
    mlflow_db, prefect_db = unique_names("tfbench")
    address.create_database(mlflow_db)
    address.create_database(prefect_db)
    prefect_env = {
        "PREFECT_HOME": str(work / "prefect-server"),
        "PREFECT_API_URL": None,
        "PREFECT_API_DATABASE_CONNECTION_URL": address.prefect_database_url(prefect_db),
    }
    servers = [
        prefect_server("127.0.0.1", free_port(), work, env=prefect_env),
        mlflow_server("127.0.0.1", free_port(), address.mlflow_store_uri(mlflow_db), work / "artifacts", work),
    ]
    try:
        started = time.perf_counter()
        start_all(servers, START_TIMEOUT_S)
        prefect, tracking = servers
        print(f"servers on PostgreSQL {address.where} up in {time.perf_counter() - started:.1f} s", flush=True)
        client = mlflow.MlflowClient(tracking.url, registry_uri=tracking.url)
        print(f"data: {args.tickers} tickers x {args.days} days, --epochs 1")
        print("K  wall      failed  versions  champions  history")
        model = ""
        for k in args.runs:
            model = f"bench-team-k{k}"
            homes = [work / f"k{k}-home{i}" for i in range(k)]
            run_args = ["run", "--data", str(data), "--epochs", "1", "--model", model, "--config", str(config)]
            commands = [(run_args, machine_env(h, prefect.url, tracking.url)) for h in homes]
            logs = work / f"k{k}-logs"
            logs.mkdir()
            wall, outcomes = at_once(commands, logs)
            versions, champions, history = registry_state(commands[0][1], model, logs)
            print(
                f"{k:<2} {wall:7.1f} s  {failures(outcomes):<6}  {versions:>8}  {champions:>9}  {history:>7}",
                flush=True,
            )
            for code, err in outcomes:
                if code != 0:
                    print("   " + (err.strip().splitlines() or ["(no stderr)"])[-1][:300])

        if args.promotions and model:
            versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{model}'"))
            champion = int(client.get_model_version_by_alias(model, CHAMPION_ALIAS).version)
            others = [v for v in versions if v != champion] or versions
            commands = [
                (
                    ["promote", "--model", model, "--version", str(others[i % len(others)]), "--reason", f"race {i}"],
                    machine_env(work / f"promote-home{i}", prefect.url, tracking.url),
                )
                for i in range(args.promotions)
            ]
            logs = work / "promote-logs"
            logs.mkdir()
            wall, outcomes = at_once(commands, logs)
            ok = sum(1 for code, _ in outcomes if code == 0)
            _, champions, history = registry_state(commands[0][1], model, logs)
            print(
                f"\n{args.promotions} racing promotions of {len(others)} version(s) of {model}: {wall:.1f} s, "
                f"{ok} reported success, failed {failures(outcomes)}, {champions} champion(s) after, "
                f"history {history}"
            )
            for code, err in outcomes:
                if code != 0:
                    print("   " + (err.strip().splitlines() or ["(no stderr)"])[-1][:300])
    finally:
        stop_all(servers)
        address.drop_database(mlflow_db)
        address.drop_database(prefect_db)
        print(f"work folder (logs): {work}")


if __name__ == "__main__":
    main()
