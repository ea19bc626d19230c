"""The champion protocol of the MLflow model registry: who is champion, every move of the `champion` alias
and the history of them, read back by `tickerflow models` and moved by the training pipeline's gate,
`tickerflow promote` and `tickerflow rollback`.

Every move of the alias, and every gate decision that left it in place, is recorded as one finished MLflow
run in the experiment `tickerflow-registry` (tags: model, action, version, previous, by, why, and the whole
event as JSON), so the history is one table in the MLflow UI, read back from the tracking store alone, and
the registered model's page stays short (moves are also on the version itself, three tags each). Homes from
before kept the history as registered-model tags `champion_history.<UTC time>-<random id>`; those are still
read. Moves are compare-and-set: a decision made against one champion never overwrites another that took
its place meanwhile.
"""

from __future__ import annotations

import getpass
import json
import os
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Final

import mlflow

from tickerflow.tasks.interruptions import signals_held
from tickerflow.tasks.tracking import EXPERIMENT, experiment_id, home_lock
from tickerflow_model.atomic_io import stable_hash
from tickerflow_model.errors import TickerflowError
from tickerflow_model.metrics import HEADLINE_METRICS
from tickerflow_model.names import CHAMPION_ALIAS as CHAMPION

HISTORY_PREFIX = "champion_history."  # registered-model tags of the history in older homes
REGISTRY_EXPERIMENT = f"{EXPERIMENT}-registry"  # one finished run per champion decision
HISTORY_MODEL_TAG = "tickerflow.registered_model"
HISTORY_MODEL_KEY_TAG = "tickerflow.registered_model_key"  # `_model_key(name)`, what the history is searched by
HISTORY_KEY_TAG = "tickerflow.history_key"  # `history_key()`: orders the events
HISTORY_EVENT_TAG = "tickerflow.event"  # the event as JSON
FORECASTER_TAG = "forecaster"  # on a version: `gru` or the distribution baseline it is
# the version tags `tickerflow models` shows: the headline test scores, with skill under its own tag
SHOWN_METRICS = tuple(f"test_{m}" for m in HEADLINE_METRICS if m != "skill") + ("skill_vs_naive",)


class RegistryError(TickerflowError, ValueError):
    """A promotion or rollback that cannot be done (unknown version, no previous champion)."""


class ChampionMoved(RegistryError):
    """The champion is no longer the one a decision was made against: nothing was moved."""


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def current_user() -> str:
    try:
        return os.environ.get("TICKERFLOW_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def champion_history(client: mlflow.MlflowClient, name: str) -> list[dict]:
    """Every recorded champion decision, oldest first: moves of the alias (`promote`, `rollback`) and the
    pipeline's decisions that left it where it was (`keep`: the gate said no; `refused`: it moved since
    the evaluation)."""
    tags = client.get_registered_model(name).tags
    # time-ordered ids (see history_key); the older homes' tag keys sort before the runs' keys
    events = {k: tags[k] for k in tags if k.startswith(HISTORY_PREFIX)}
    exp = client.get_experiment_by_name(REGISTRY_EXPERIMENT)
    if exp is not None:
        token = None
        while True:
            page = client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`{HISTORY_MODEL_KEY_TAG}` = '{_model_key(name)}'",
                max_results=1000,
                page_token=token,
            )
            events.update({r.data.tags[HISTORY_KEY_TAG]: r.data.tags[HISTORY_EVENT_TAG] for r in page})
            token = page.token
            if not token:
                break
    return [json.loads(events[k]) for k in sorted(events)]


def _model_key(name: str) -> str:
    """The model's name as a filter-safe tag value (a name may hold quotes)."""
    return stable_hash(name)


def champion_stack(history: list[dict]) -> list[str]:
    """Champions in order of succession: a promotion pushes a version, a rollback pops one."""
    stack: list[str] = []
    for event in history:
        if event["action"] == "rollback" and stack:
            stack.pop()
        elif event["action"] in ("promote", "rollback"):
            stack.append(event["version"])
    return stack


def current_champion(client: mlflow.MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except mlflow.exceptions.MlflowException:
        return None


def history_key() -> str:
    """A unique, time-ordered tag key: two moves at once never write the same slot.

    (Keys of older homes, `champion_history.0001`..., sort before these, so the order holds.)
    """
    return f"{HISTORY_PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def record_decision(client: mlflow.MlflowClient, name: str, event: dict) -> None:
    """One finished run in REGISTRY_EXPERIMENT: a row of the history table, never a tag on the model."""
    key = history_key()
    shown = {
        k: "" if event.get(k) is None else str(event[k])[:5000] for k in ("action", "version", "previous", "by", "why")
    }
    run = client.create_run(
        experiment_id(client, REGISTRY_EXPERIMENT),
        run_name=f"{name}: {event['action']} v{event['version']}",
        tags={
            HISTORY_MODEL_TAG: name,
            HISTORY_MODEL_KEY_TAG: _model_key(name),
            HISTORY_KEY_TAG: key,
            HISTORY_EVENT_TAG: json.dumps(event),
            **shown,
        },
    )
    client.set_terminated(run.info.run_id)


def registry_lock(name: str):
    """Serialises champion moves of one model between processes sharing this home (one machine)."""
    return home_lock(f"registry-{stable_hash(name)}")


class AnyChampion(Enum):
    """`expected` for a move that does not depend on the current champion. An enum of one member, not an
    `object()`, so that `expected is not ANY_CHAMPION` leaves a checker knowing it is a version or None."""

    ANY = "any"


ANY_CHAMPION: Final = AnyChampion.ANY


def move_champion(
    client: mlflow.MlflowClient,
    name: str,
    version: str,
    action: str,
    why: str,
    who: str | None = None,
    expected: str | None | AnyChampion = ANY_CHAMPION,
) -> dict:
    """Point `champion` at `version` and record the move (on the model and on the version).

    Compare-and-set: with `expected` (the champion the decision was made against, None for none), the
    champion is re-read under the registry lock right before the alias moves; when it is no longer
    `expected`, nothing moves, a `refused` event is recorded and `ChampionMoved` is raised.
    The history entry is written before the alias moves.
    """
    client.get_model_version(name, version)  # raises for an unknown version before anything moves
    with signals_held(), registry_lock(name):
        current = current_champion(client, name)
        event = {
            "action": action,
            "version": str(version),
            "previous": current,
            "by": who or current_user(),
            "at": now_utc(),
            "why": why,
        }
        if expected is not ANY_CHAMPION and current != expected:
            was = f"v{expected}" if expected else "no champion"
            event.update(
                action="refused",
                expected=expected,
                why=f"the champion moved from {was} to v{current} after this decision was made ({why}); not promoted",
            )
            record_decision(client, name, event)
            raise ChampionMoved(event["why"])
        record_decision(client, name, event)
        client.set_registered_model_alias(name, CHAMPION, version)
    for key in ("by", "at", "why"):
        client.set_model_version_tag(name, version, f"champion.{action}_{key}", event[key])
    return event


def apply_decision(
    client: mlflow.MlflowClient, name: str, version: str, promoted: bool, reason: str, expected: str | None, who: str
) -> tuple[bool, str]:
    """Carry out the gate's decision about `version`, compare-and-set against `expected`; record it either way.

    Returns (promoted, reason) as they turned out: a promotion refused because the champion moved
    since `expected` was read comes back as (False, why), and the version's tags say so.
    """
    if not promoted:
        event = {
            "action": "keep",
            "version": str(version),
            "previous": expected,
            "by": who,
            "at": now_utc(),
            "why": reason,
        }
        record_decision(client, name, event)
        return False, reason
    try:
        move_champion(client, name, version, "promote", reason, who, expected=expected)
    except ChampionMoved as exc:
        client.set_model_version_tag(name, version, "promotion", "rejected")
        client.set_model_version_tag(name, version, "promotion_reason", str(exc))
        return False, str(exc)
    return True, reason


def load_error(name: str, version: str) -> str | None:
    """Why version `version` of `name` cannot be loaded (its files missing or unreadable); None when it loads."""
    try:
        mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:  # noqa: BLE001 - whatever stops it loading stops it serving
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return message.strip().splitlines()[0][:300]
    return None


def require_loadable(name: str, version: str, verb: str, force: bool) -> None:
    """Refuse to make a version champion that cannot serve, unless forced."""
    if force:
        return
    why = load_error(name, version)
    if why is not None:
        raise RegistryError(
            f"version {version} of {name!r} exists but cannot be loaded ({why}): its files are missing or unreadable; "
            f"refusing to {verb} it (--force to {verb} it anyway)"
        )


def promote_version(
    client: mlflow.MlflowClient, name: str, version: str, why: str, who: str | None = None, force: bool = False
) -> dict:
    try:
        client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"model {name!r} has no version {version!r}") from exc
    current = current_champion(client, name)
    if current == str(version):
        raise RegistryError(f"version {version} of {name!r} is already the champion")
    require_loadable(name, str(version), "promote", force)
    return move_champion(client, name, str(version), "promote", why, who, expected=current)


def rollback_champion(
    client: mlflow.MlflowClient, name: str, why: str, who: str | None = None, force: bool = False
) -> dict:
    """Back to the champion before the current one (repeatable: each rollback goes one further back)."""
    current = current_champion(client, name)
    stack = champion_stack(champion_history(client, name))
    if len(stack) < 2:
        raise RegistryError(f"model {name!r} has no previous champion to roll back to (history: {stack or 'empty'})")
    require_loadable(name, stack[-2], "roll back to", force)
    return move_champion(client, name, stack[-2], "rollback", why, who, expected=current)


def models_listing(client: mlflow.MlflowClient, name: str) -> dict:
    """Versions (newest first) with aliases, test metrics and the gate's verdict, plus the champion history."""
    # search_model_versions leaves aliases empty; the registered model maps alias -> version
    aliases = client.get_registered_model(name).aliases
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda mv: int(mv.version), reverse=True)
    rows = [
        {
            "version": str(mv.version),
            "aliases": sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
            "created": mv.creation_timestamp,
            "run_id": mv.run_id,
            # `gru` or a distribution baseline; versions from before the tag existed are GRUs
            "forecaster": mv.tags.get(FORECASTER_TAG, "gru"),
            **{k: mv.tags.get(k) for k in SHOWN_METRICS},
            # set by a training run that could not load or score this version as champion
            "scoring_error": mv.tags.get("champion_scoring_error"),
            "gate": mv.tags.get("promotion"),
            "gate_reason": mv.tags.get("promotion_reason"),
        }
        for mv in versions
    ]
    return {"model": name, "versions": rows, "champion_history": champion_history(client, name)}
