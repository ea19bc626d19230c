"""Bad files through the real command line: non-zero exit, the problem named, no traceback, nothing registered.

One fresh Python process runs `tickerflow run` / `tickerflow forecast` (flows.cli.main, which is what the
`tickerflow` console script calls, logging set-up included) on every file of the corpus in turn, capturing each command's stdout and stderr at the file
descriptors, so Prefect's console handlers are captured as a terminal would show them. One Prefect
ephemeral API serves them all, which keeps the corpus to seconds per file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from bad_inputs import SMALL_LIMITS, write_corpus
from tiny_models import MODEL

from tickerflow.runtime import environment

ROOT = Path(__file__).resolve().parents[2]

DRIVER = r"""
import json, os, sys
from tickerflow.cli import main

commands = json.loads(open(sys.argv[1]).read())
results = {}
for key, argv in commands.items():
    with open(os.path.join(sys.argv[2], key + ".log"), "w") as log:
        sys.stdout.flush(); sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1); os.dup2(log.fileno(), 2)
        try:
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
            except BaseException:
                import traceback
                traceback.print_exc()
                code = "raised"
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
    results[key] = code
print(json.dumps(results))
"""

# Files for the forecast path too (they reach validation there only with a model to load).
FORECAST_CASES = (
    "empty.csv",
    "binary.csv",
    "alias_price_close.csv",
    "inf_price.csv",
    "nan_price.csv",
    "mixed_date_formats.csv",
)


def _env(home: Path, prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(
        TICKERFLOW_HOME=str(home),
        PREFECT_HOME=str(prefect_home),
        PREFECT_LOGGING_COLORS="false",
        COLUMNS="200",
    )
    return dict(environment.apply(env))


@pytest.mark.slow
def test_every_bad_file_fails_cleanly_on_run_and_forecast(champion, tmp_path):  # noqa: F811
    home = tmp_path / "home"
    shutil.copytree(champion.home, home)
    cases = write_corpus(tmp_path / "corpus")
    limits = tmp_path / "small_limits.yaml"
    limits.write_text(yaml.safe_dump(SMALL_LIMITS))
    commands = {}
    for case in cases:
        extra = ["--config", str(limits)] if case.small_limits else []
        commands[f"run-{case.name}"] = ["run", "--data", str(case.path), "--epochs", "1", *extra]
    outs = {name: tmp_path / "out" / f"{name}.parquet" for name in FORECAST_CASES}
    by_name = {c.name: c for c in cases}
    for name in FORECAST_CASES:
        commands[f"forecast-{name}"] = ["forecast", "--data", str(by_name[name].path), "--out", str(outs[name])]
    (tmp_path / "commands.json").write_text(json.dumps(commands))
    logs = tmp_path / "logs"
    logs.mkdir()

    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path / "commands.json"), str(logs)],
        cwd=ROOT,
        env=_env(home, tmp_path / "prefect"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])

    problems = []
    for key, argv in commands.items():
        case = by_name[key.split("-", 1)[1]]
        output = (logs / f"{key}.log").read_text()
        if codes[key] in (0, None, "raised"):
            problems.append(f"{key}: exit {codes[key]!r}")
        if "Traceback" in output:
            problems.append(f"{key}: traceback on the console")
        said = [line for line in output.splitlines() if line.startswith(f"tickerflow {argv[0]}: ")]
        if len(said) != 1:
            problems.append(f"{key}: {len(said)} final error lines")
        else:  # the reason is printed once: Prefect's console lines name only the error's type
            reason = said[0].split(": ", 2)[-1]
            if output.count(reason) != 1:
                problems.append(f"{key}: the reason appears {output.count(reason)} times")
        missing = [w for w in case.expect if w.lower() not in output.lower()]
        if missing:
            problems.append(f"{key}: message lacks {missing}: {output.strip().splitlines()[-1:]}")
    assert not problems, "\n".join(problems) + "\n--- first log:\n" + (logs / f"{next(iter(commands))}.log").read_text()

    store = f"sqlite:///{home / 'mlflow.db'}"
    client = mlflow.MlflowClient(store, store)
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert [str(v.version) for v in versions] == [str(champion.version)]  # nothing registered by any bad run
    assert not any(p.exists() for p in outs.values())  # no forecasts written from bad input
