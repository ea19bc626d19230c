"""The champion protocol when processes share only the servers: several machines (here, processes with homes of
their own) race to move the champion of one model on one MLflow server, with one Prefect server between them."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest

from integration.support import ROOT, TeamServers

pytestmark = pytest.mark.integration

RACERS = 4  # N >= 4 machines
RACE_SECONDS = 240

# One racer: imports first, says it is ready, then waits for the word on stdin so that every racer moves at once,
# each against the champion all of them read (v1).
RACER = r"""
import sys
from tickerflow.tracking.registry import ChampionMoved, move_champion
name, version, expected = sys.argv[1:4]
print("ready", flush=True)
sys.stdin.readline()
try:
    move_champion(name, version, "promote", f"racer of v{version}", f"racer-{version}", expected=expected)
except ChampionMoved:
    print("REFUSED", flush=True)
else:
    print("MOVED", flush=True)
"""


def model_with_versions(url: str, n: int) -> str:
    """A new registered model with `n` versions on the server (no files: only the registry is under test)."""
    client = mlflow.MlflowClient(url, url)
    name = f"race-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    for _ in range(n):
        client.create_model_version(name, source="s3://tickerflow-race/model")
    return name


def race(servers: TeamServers, tmp_path: Path, name: str, versions: list[str], expected: str) -> dict[str, str]:
    """Each version's racer (a machine of its own) moves the champion to it against `expected`, all at once;
    returns what each said."""
    racers = {}
    for version in versions:
        env = servers.env(tmp_path / f"machine-{version}")
        racers[version] = subprocess.Popen(
            [sys.executable, "-c", RACER, name, version, expected],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        for proc in racers.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.communicate()[1][-3000:]
        for proc in racers.values():  # every racer has read nothing yet: the champion is `expected` for all
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        said = {}
        for version, proc in racers.items():
            out, err = proc.communicate(timeout=RACE_SECONDS)
            assert proc.returncode == 0, err[-3000:]
            said[version] = out.strip().splitlines()[-1]
        return said
    finally:
        for proc in racers.values():
            if proc.poll() is None:
                proc.kill()


def test_racers_on_machines_of_their_own_move_the_champion_once_and_rollback_goes_back(
    team_servers, tmp_path, monkeypatch
):
    from tickerflow.tracking.registry import champion_history, current_champion, move_champion, rollback_champion

    name = model_with_versions(team_servers.mlflow.url, RACERS + 1)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_servers.mlflow.url)
    move_champion(name, "1", "promote", "the first champion", "test", expected=None)
    contenders = [str(v) for v in range(2, RACERS + 2)]

    said = race(team_servers, tmp_path, name, contenders, expected="1")

    winners = [v for v, word in said.items() if word == "MOVED"]
    assert len(winners) == 1, said
    assert sorted(v for v, word in said.items() if word == "REFUSED") == sorted(set(contenders) - set(winners))
    assert current_champion(name) == winners[0]
    history = champion_history(name)
    promotes = [(e["version"], e["previous"]) for e in history if e["action"] == "promote"]
    assert promotes == [("1", None), (winners[0], "1")]  # one promote recorded "was v1", by the winner
    refused = [e for e in history if e["action"] == "refused"]
    assert sorted(e["version"] for e in refused) == sorted(set(contenders) - set(winners))
    assert all(e["previous"] == winners[0] for e in refused)  # each saw the winner's move, under the lock

    rolled = rollback_champion(name, "the race's winner is withdrawn", "test", force=True)  # no files to load
    assert (rolled["version"], rolled["previous"]) == ("1", winners[0])
    assert current_champion(name) == "1"
