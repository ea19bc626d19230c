"""gc keeps what the champion, the challenger, recent and running runs and live processes need; removes the rest."""

from __future__ import annotations

import json
import os
import time

import mlflow
import pytest

from tickerflow.cli import main
from tickerflow.tasks.retention import run_gc
from tickerflow.tasks.train import OWNER_FILE
from tickerflow.tracking.processes import this_process
from tickerflow_model.config import ForecastStoreConfig, RetentionConfig

HOUR = 3600


def make(path, age_s: float = 2 * HOUR, content: bytes = b"x" * 1000):
    path.mkdir(parents=True, exist_ok=True)
    (path / "data.bin").write_bytes(content)
    old = time.time() - age_s
    for p in (path / "data.bin", path):
        os.utime(p, (old, old))
    return path


def test_gc_removes_only_what_nothing_needs(tf_home, mlflow_store, tmp_path, capsys):
    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    client.create_registered_model("m")
    # a version of before names its raw snapshot in a tag of its own, today's in its lineage JSON
    for tags in [
        {"dataset_id": "ds-champ", "source_hash": "src-champ"},
        {"dataset_id": "ds-chal", "lineage": json.dumps({"source_hash": "src-chal", "git_commit": "none"})},
    ]:
        client.create_model_version("m", source=(tmp_path / "model").as_uri(), tags=tags)
    client.set_registered_model_alias("m", "champion", "1")
    client.set_registered_model_alias("m", "challenger", "2")
    from tickerflow.tracking.store import experiment_id

    running = client.create_run(experiment_id(client), tags={"dataset_id": "ds-running"}).info.run_id  # RUNNING

    keep = [make(tf_home / "windows" / d) for d in ("ds-champ", "ds-chal", "ds-running")]
    keep += [make(tf_home / "raw" / h) for h in ("src-champ", "src-chal")]
    keep.append(make(tf_home / "raw" / "src-just-written", age_s=60))  # a flow may be using it right now
    live_ckpt = make(tf_home / "checkpoints" / "live")
    (live_ckpt / OWNER_FILE).write_text(json.dumps(this_process()))
    keep.append(live_ckpt)
    gone = [
        make(tf_home / "windows" / "ds-old"),
        make(tf_home / "raw" / "src-old"),
        make(tf_home / "checkpoints" / "finished"),
    ]
    old_scratch = make(tf_home / "windows" / ".ds-x.tmp-1234abcd")
    new_scratch = make(tf_home / "windows" / ".ds-y.tmp-5678abcd", age_s=60)
    gone.append(old_scratch)
    keep.append(new_scratch)

    assert main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(p.exists() for p in keep + gone)  # a dry run removes nothing
    assert f"would remove {tf_home / 'windows' / 'ds-old'}" in out and "model m v1" in out

    plan = run_gc(RetentionConfig(), ForecastStoreConfig())

    assert sorted(r.path for r in plan.removals) == sorted(str(p) for p in gone)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)
    assert client.get_run(running).info.status == "RUNNING"  # this process is alive: not reaped


def test_bad_retention_values_are_named():
    with pytest.raises(ValueError, match="(?s)keep_last_runs.*greater than or equal to 1.*input_value=0"):
        RetentionConfig(keep_last_runs=0)
    with pytest.raises(ValueError, match="(?s)grace_minutes.*greater than or equal to 0.*input_value=-1"):
        RetentionConfig(grace_minutes=-1)
    with pytest.raises(ValueError, match="no_such_limit"):
        RetentionConfig(no_such_limit=1)  # a misspelt key in a config file is refused, not ignored
