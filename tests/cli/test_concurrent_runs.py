"""Two `tickerflow run` processes at once on one fresh home: both complete, neither resumes the other's
checkpoint, and the champion history records both decisions."""

from __future__ import annotations

import json
import re

import mlflow
import pytest
from cli_processes import TICKERFLOW, cli_env, finish, start, summary_of

from tickerflow.tracking.registry import champion_history, champion_stack

pytestmark = pytest.mark.slow


def test_two_runs_at_once_on_a_fresh_home_both_complete_and_both_decisions_are_recorded(tmp_path, small_sample_csv):
    home = tmp_path / "home"  # fresh: both processes create the MLflow and Prefect stores at once
    env = cli_env(home)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"register": {"min_skill": -1.0}}))  # the race is under test, not the gate
    command = [
        str(TICKERFLOW),
        "run",
        "--data",
        str(small_sample_csv),
        "--config",
        str(config),
        "--epochs",
        "1",
        "--json",
    ]

    procs = [start(command, env, tmp_path / f"run{i}.log") for i in (1, 2)]
    outs = [finish(p, tmp_path / f"run{i}.log") for i, p in zip((1, 2), procs)]

    assert not any(re.search(r"resuming from epoch", out) for out in outs)
    assert not any("Online migration expected" in out or "Traceback" in out for out in outs)  # stores created once
    summaries = [summary_of(out) for out in outs]
    store = f"sqlite:///{home / 'mlflow.db'}"
    client = mlflow.MlflowClient(store, store)
    for s in summaries:
        assert client.get_run(s["mlflow_run_id"]).info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(s["mlflow_run_id"], "val_loss")] == [1]
    assert not list((home / "checkpoints").glob("*/owner.json"))  # both released what they owned

    with pytest.MonkeyPatch.context() as mp:  # the runs' home, not this test's
        mp.setenv("TICKERFLOW_HOME", str(home))
        history = champion_history("tickerflow-gru")
    assert sorted(e["by"] for e in history) == sorted(f"train_pipeline run {s['mlflow_run_id']}" for s in summaries)
    assert {e["action"] for e in history} <= {"promote", "keep", "refused"}
    assert history[0]["action"] == "promote"  # the first decision found no champion and took the alias
    champion = str(client.get_model_version_by_alias("tickerflow-gru", "champion").version)
    assert champion_stack(history) == [champion]
    promoted = [s for s in summaries if s["promoted"]]
    assert len(promoted) == 1 and promoted[0]["model_version"] == champion
