"""Operations code without servers: prefect.yaml, run names and tags, task-runner choice, the server supervisor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tickerflow.cli import servers as ops_cli
from tickerflow.reporting.run_labels import data_label, forecast_labels, model_label, train_labels
from tickerflow.runtime.deployments import (
    DEPLOYMENTS_FILE,
    ROOT,
    DeploymentSpec,
    anchor_data_paths,
    load_deployment_specs,
    merge_parameters,
    to_runner_deployment,
)
from tickerflow.runtime.servers import Server, ServerError, run_until_signalled
from tickerflow.runtime.task_runners import build_task_runner
from tickerflow_model.config import RunnerConfig

# --- deployments/prefect.yaml -----------------------------------------------------------------------


def test_prefect_yaml_defines_the_two_scheduled_deployments_on_a_process_pool():
    import yaml

    document = yaml.safe_load(DEPLOYMENTS_FILE.read_text())
    by_name = {d["name"]: d for d in document["deployments"]}
    assert set(by_name) == {"train-weekly", "forecast-daily"}
    for deployment in by_name.values():
        assert deployment["work_pool"]["name"] == "tickerflow-process"
        assert deployment["tags"] and deployment["parameters"]
        (schedule,) = deployment["schedules"]
        assert schedule["timezone"] == "America/New_York"
    assert by_name["train-weekly"]["schedules"][0]["cron"].split()[-1] == "6"  # Saturdays
    assert by_name["forecast-daily"]["schedules"][0]["cron"].split()[-1] == "1-5"  # weekdays


def test_entrypoints_import_and_their_parameters_validate_against_the_flows():
    from prefect import Flow

    from tickerflow_model.config import PipelineConfig

    specs = {s.name: s for s in load_deployment_specs()}
    for spec in specs.values():
        module = __import__(spec.module, fromlist=[spec.flow_attribute])
        flow = getattr(module, spec.flow_attribute)
        assert isinstance(flow, Flow)
        assert (ROOT / spec.entrypoint.split(":")[0]).is_file()
        flow.validate_parameters(spec.parameters)  # raises on a parameter the flow would reject
    config = PipelineConfig.model_validate(specs["train-weekly"].parameters["config"])
    assert (ROOT / config.ingest.source).is_file()
    assert (ROOT / specs["forecast-daily"].parameters["data"]).is_file()
    # train-weekly also starts on the event forecast-daily emits when the champion degrades
    from tickerflow.tasks.monitor import DEGRADED_EVENT

    (trigger,) = to_runner_deployment(specs["train-weekly"], None, {}).triggers
    assert trigger.expect == {DEGRADED_EVENT} and trigger.posture == "Reactive"
    assert trigger.match.model_dump()["prefect.resource.id"] == "tickerflow.model.tickerflow-gru"


def test_unknown_deployment_name_is_named_in_the_error():
    with pytest.raises(ValueError, match="no deployment named nightly .*train-weekly"):
        load_deployment_specs(only=["nightly"])


def test_bad_entrypoint_is_rejected_with_the_value():
    with pytest.raises(ValueError, match="flows.train_pipeline:train_pipeline"):
        DeploymentSpec("x", "flows.train_pipeline:train_pipeline", {}, (), "", ())


def test_relative_data_paths_are_anchored_at_the_project_root_and_uris_left_alone(tmp_path):
    params = {"config": {"ingest": {"source": "data/x.csv"}, "train": {"epochs": 3}}, "data": "s3://b/p.csv"}
    out = anchor_data_paths(params, tmp_path)
    assert out["config"]["ingest"]["source"] == str(tmp_path / "data/x.csv")
    assert out["data"] == "s3://b/p.csv"
    assert params["config"]["ingest"]["source"] == "data/x.csv"  # the input is not mutated


def test_params_override_merges_deeply():
    base = {"config": {"ingest": {"source": "a"}, "train": {"epochs": 30, "seed": 1}}}
    merged = merge_parameters(base, {"config": {"train": {"epochs": 1}}})
    assert merged == {"config": {"ingest": {"source": "a"}, "train": {"epochs": 1, "seed": 1}}}


def test_serve_without_an_api_url_says_no_scheduler_runs_instead_of_idling(tmp_path):
    """--no-server: explain and exit; without it `serve` starts a server (integration tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), TICKERFLOW_HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        [sys.executable, "-m", "tickerflow", "serve", "--no-server"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == ops_cli.EXIT_NOT_STARTED
    assert "ephemeral API runs no scheduler" in proc.stderr
    assert "prefect server start" in proc.stderr and "PREFECT_API_URL" in proc.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interval": 0.0}, "--interval must be a positive number of seconds, got 0.0"),
        ({"params": "[1]"}, "--params must be a JSON object, got '\\[1\\]'"),
        ({"only": ["nightly"]}, "no deployment named nightly"),
        ({"prefect_port": 70000}, "prefect_port"),
    ],
)
def test_serve_rejects_bad_arguments_before_starting_anything(options, message, monkeypatch):
    monkeypatch.setattr(ops_cli, "prefect_server", lambda *a, **k: pytest.fail("a server was started"))
    with pytest.raises(ValueError, match=message):
        ops_cli.serve(**options)


# --- flow-run names and tags ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "label"),
    [
        ("data/sample/stocks_daily_2000_2013.csv.gz", "stocks_daily_2000_2013"),
        ("/x/prices/", "prices"),
        ("s3://bucket/prices/*.parquet", "prices"),
        ("/x/y/**/*.csv", "y"),
        ("../evil name.csv", "evil_name"),
        ("../*.csv", "data"),
    ],
)
def test_data_label_names_the_source_without_path_or_unsafe_characters(source, label):
    assert data_label(source) == label


def test_labels_read_parameters_from_a_config_object_or_deployment_json():
    from tickerflow_model.config import PipelineConfig

    config = PipelineConfig.model_validate({"ingest": {"source": "/d/small.csv"}, "register": {"model_name": "m1"}})
    assert train_labels({"config": config}) == ("small", "m1")
    assert train_labels({"config": {"ingest": {"source": "/d/small.csv"}}}) == ("small", "")  # the run chooses
    assert forecast_labels({"data": "/d/recent.csv", "model_uri": "models:/m1@champion"}) == ("recent", "m1@champion")
    assert model_label("models:/m1/3") == "m1@3"


# --- task runner ------------------------------------------------------------------------------------


def test_run_command_builds_the_requested_task_runner():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    assert isinstance(build_task_runner(RunnerConfig()), ThreadPoolTaskRunner)
    remote = build_task_runner(RunnerConfig(kind="dask", address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = build_task_runner(RunnerConfig(kind="dask", n_workers=3))
    assert local.address is None and local.cluster_kwargs["n_workers"] == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "ray"}, "'ray'"),
        ({"kind": "thread", "address": "tcp://h:1"}, "only applies to the dask runner"),
        ({"kind": "dask", "address": "h:1"}, "tcp://HOST:PORT, got 'h:1'"),
        ({"kind": "dask", "n_workers": 0}, "n_workers\n  Input should be greater than or equal to 1"),
        ({"kind": "dask", "address": "tcp://h:1", "n_workers": 2}, "without an address"),
    ],
)
def test_bad_runner_config_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")):
        RunnerConfig(**kwargs)


# --- the server supervisor --------------------------------------------------------------------------


def _python_server(tmp_path: Path, code: str, name: str = "toy server") -> Server:
    return Server(
        name=name,
        command=[sys.executable, "-c", code],
        url="http://127.0.0.1:9",
        health_url="http://127.0.0.1:9/health",
        log_path=tmp_path / "toy.log",
    )


def test_a_server_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    server = _python_server(
        tmp_path, "import sys; print('starting'); print('port already in use'); sys.exit(3)"
    ).start()
    with pytest.raises(
        ServerError, match=r"toy server exited with code 3 .*: port already in use \(log .*toy.log\)"
    ) as err:
        server.wait_healthy(timeout=60)
    assert "\n" not in str(err.value)  # one line: the server, its last words, where the rest is


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie waiting for a reaper counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _poll(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_stop_ends_the_whole_process_group(tmp_path):
    # the server starts a worker of its own, as uvicorn/gunicorn do; stopping must end both
    pid_file = tmp_path / "worker.pid"
    code = (
        "import pathlib, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    server = _python_server(tmp_path, code).start()
    assert _poll(lambda: pid_file.exists() and pid_file.read_text().strip())
    worker = int(pid_file.read_text())
    assert _alive(worker)

    server.stop(timeout=10)

    assert server.process.returncode is not None and not server.running()
    assert _poll(lambda: not _alive(worker)), f"worker {worker} outlived its server"


def test_supervisor_returns_failure_when_a_server_dies(tmp_path, capsys):
    server = _python_server(tmp_path, "print('crashed: database is locked')", name="MLflow server").start()
    assert run_until_signalled([server]) == 1
    err = capsys.readouterr().err
    assert "MLflow server exited with code 0" in err and "database is locked" in err
