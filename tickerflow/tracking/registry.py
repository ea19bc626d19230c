"""The champion protocol of the MLflow model registry: who is champion, every move of the `champion` alias
and the history of them, read back by `tickerflow models` and moved by the training pipeline's gate,
`tickerflow promote` and `tickerflow rollback`.

Every move of the alias, and every gate decision that left it in place, is recorded as one finished MLflow
run in the experiment `tickerflow-registry` (tags: model, action, version, previous, by, why, and the whole
event as JSON), so the history is one table in the MLflow UI, read back from the tracking store alone, and
the registered model's page stays short (moves are also on the version itself, three tags each). Homes from
before kept the history as registered-model tags `champion_history.<UTC time>-<random id>`; those are still
read. Moves are compare-and-set: a decision made against one champion never overwrites another that took
its place meanwhile. The compare and the set happen under `registry_lock`, which holds across machines when
they share only the servers (`locks.py`), and the alias is read back after it moved.

Two runs that write an alias of one model at once against an MLflow server on PostgreSQL can make one of the
writes fail (MLflow inserts the alias row without a lock: `UniqueViolation` on `registered_model_alias_pk`).
`write_alias` reads the alias again and decides again, a bounded number of times.
"""

from __future__ import annotations

import getpass
import json
import os
import time
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Final

from tickerflow.tracking.interruptions import signals_held
from tickerflow.tracking.locks import machine_and_team_lock
from tickerflow.tracking.models import alias_version, find_versions, load_error, set_alias, tag_version, version_tags
from tickerflow.tracking.runs import TrackedRun, find_runs
from tickerflow.tracking.store import REGISTRY_EXPERIMENT, is_concurrent_insert, is_missing, use_tracking
from tickerflow_model.atomic_io import stable_hash
from tickerflow_model.errors import TickerflowError
from tickerflow_model.metrics import HEADLINE_METRICS
from tickerflow_model.names import CHAMPION_ALIAS as CHAMPION
from tickerflow_model.universe import UNIVERSE_TAG, Universe

HISTORY_PREFIX = "champion_history."  # registered-model tags of the history in older homes
HISTORY_MODEL_TAG = "tickerflow.registered_model"
HISTORY_MODEL_KEY_TAG = "tickerflow.registered_model_key"  # `_model_key(name)`, what the history is searched by
HISTORY_KEY_TAG = "tickerflow.history_key"  # `history_key()`: orders the events
HISTORY_EVENT_TAG = "tickerflow.event"  # the event as JSON
FORECASTER_TAG = "forecaster"  # on a version: `gru` or the distribution baseline it is
# the version tags `tickerflow models` shows: the headline test scores, with skill under its own tag
LINEAGE_TAG = "lineage"  # on a version: its raw snapshot (source_hash), git commit and flow run, as JSON
BUNDLE_DIGEST_TAG = "bundle_digest"  # on a version: what it forecasts with, hashed (`Forecaster.digest`)
TEST_SCORES_TAG = "test_scores"  # on a version: every test score of its own, as JSON
MOVES_KEPT = 5  # the last moves a version keeps in its tag (the whole history is the registry experiment's)
MOVES_TAG = "champion_moves"  # on a version: the moves of the alias to it (promote, rollback), as JSON
SHOWN_ON_VERSION = ("pinball", "coverage_80")  # test scores with a tag of their own, beside skill_vs_naive
# the version tags `tickerflow models` shows: the headline test scores, with skill under its own tag
SHOWN_METRICS = tuple(f"test_{m}" for m in HEADLINE_METRICS if m != "skill") + ("skill_vs_naive",)


def champion_universes(names: list[str] | None = None) -> dict[str, Universe | None]:
    """The universe each model's champion serves, by model name, for the models that have a champion (`names`,
    or every registered model). A None universe: a champion from before versions named theirs."""
    if names is None:
        names = [rm.name for rm in use_tracking().search_registered_models(max_results=1000)]
    found = {}
    for name in names:
        version = current_champion(name)
        if version is not None:
            found[name] = Universe.from_tag(version_tags(name, version).get(UNIVERSE_TAG))
    return found


def registered_models() -> list[dict]:
    """Every registered model: its name, versions, champion and the universe that champion serves."""
    models = []
    for rm in use_tracking().search_registered_models(max_results=1000):
        version = rm.aliases.get(CHAMPION)
        tags = version_tags(rm.name, str(version)) if version is not None else {}
        universe = Universe.from_tag(tags.get(UNIVERSE_TAG))
        models.append(
            {
                "model": rm.name,
                "versions": len(find_versions(rm.name)),
                "champion": None if version is None else str(version),
                "forecaster": tags.get(FORECASTER_TAG),
                "serves": None if universe is None else universe.describe(),
            }
        )
    return sorted(models, key=lambda m: m["model"])


def lineage(tags: dict[str, str]) -> dict[str, str]:
    """A version's lineage: its `lineage` JSON, with the `source_hash` tag older versions carry."""
    found = json.loads(tags.get(LINEAGE_TAG) or "{}")
    if tags.get("source_hash"):
        found.setdefault("source_hash", tags["source_hash"])
    return found


def test_score(tags: dict[str, str], key: str) -> str | None:
    """A version's test score `test_<metric>`: from its `test_scores` JSON, or the tag older versions carry."""
    if key in tags:
        return tags[key]
    scores = json.loads(tags.get(TEST_SCORES_TAG) or "{}")
    metric = key.removeprefix("test_")
    return None if metric not in scores else str(scores[metric])


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


def champion_history(name: str) -> list[dict]:
    """Every recorded champion decision, oldest first: moves of the alias (`promote`, `rollback`) and the
    pipeline's decisions that left it where it was (`keep`: the gate said no; `refused`: it moved since
    the evaluation)."""
    try:
        tags = use_tracking().get_registered_model(name).tags
    except Exception as exc:  # noqa: BLE001 - a model with no version yet has no history
        if not is_missing(exc):
            raise
        tags = {}
    # time-ordered ids (see history_key); the older homes' tag keys sort before the runs' keys
    events = {k: tags[k] for k in tags if k.startswith(HISTORY_PREFIX)}
    runs = find_runs(REGISTRY_EXPERIMENT, f"tags.`{HISTORY_MODEL_KEY_TAG}` = '{_model_key(name)}'")
    events.update({r.tags[HISTORY_KEY_TAG]: r.tags[HISTORY_EVENT_TAG] for r in runs})
    return [json.loads(events[k]) for k in sorted(events)]


def _model_key(name: str) -> str:
    """The model's name as a filter-safe tag value (a name may hold quotes)."""
    return stable_hash(name)


def champion_stack(history: list[dict]) -> list[str]:
    """Champions in order of succession: a promotion pushes a version, a rollback pops one; a `void` undoes the
    move recorded just before it, which did not happen (its alias write lost to another writer's)."""
    stack: list[str] = []
    for event in history:
        if event["action"] == "void":
            if event.get("voids") == "rollback" and event.get("previous"):
                stack.append(event["previous"])
            elif event.get("voids") == "promote" and stack and stack[-1] == event["version"]:
                stack.pop()
        elif event["action"] == "rollback" and stack:
            stack.pop()
        elif event["action"] in ("promote", "rollback"):
            stack.append(event["version"])
    return stack


def current_champion(name: str) -> str | None:
    return alias_version(name, CHAMPION)


def history_key() -> str:
    """A unique, time-ordered tag key: two moves at once never write the same slot.

    (Keys of older homes, `champion_history.0001`..., sort before these, so the order holds.)
    """
    return f"{HISTORY_PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def record_decision(name: str, event: dict) -> None:
    """One finished run in REGISTRY_EXPERIMENT: a row of the history table, never a tag on the model."""
    shown = {k: "" if event.get(k) is None else event[k] for k in ("action", "version", "previous", "by", "why")}
    run = TrackedRun.start(
        REGISTRY_EXPERIMENT,
        name=f"{name}: {event['action']} v{event['version']}",
        tags={
            HISTORY_MODEL_TAG: name,
            HISTORY_MODEL_KEY_TAG: _model_key(name),
            HISTORY_KEY_TAG: history_key(),
            HISTORY_EVENT_TAG: json.dumps(event),
            **shown,
        },
        owned=False,
    )
    run.finish()


def registry_lock(name: str):
    """Serialises champion moves of one model: between the processes of this home, and between machines
    that share the MLflow store and a Prefect server (`locks.machine_and_team_lock`)."""
    return machine_and_team_lock(f"registry-{stable_hash(name)}")


class AnyChampion(Enum):
    """`expected` for a move that does not depend on the current champion. An enum of one member, not an
    `object()`, so that `expected is not ANY_CHAMPION` leaves a checker knowing it is a version or None."""

    ANY = "any"


ANY_CHAMPION: Final = AnyChampion.ANY


ALIAS_WRITE_ATTEMPTS = 5  # a write that fails on a concurrent insert of the same alias is tried this often
ALIAS_RETRY_SECONDS = 0.2  # the first pause before trying again; doubled each time


def is_concurrent_alias_write(exc: BaseException) -> bool:
    """Whether an MLflow error is the store refusing an alias row another writer inserted at the same moment."""
    return is_concurrent_insert(exc, "registered_model_alias")


def write_alias(name: str, alias: str, version: str, expected: str | None | AnyChampion = ANY_CHAMPION) -> None:
    """Point `name@alias` at `version`; when the write collides with another writer's, read the alias again and
    decide again: done if it already points there, `ChampionMoved` if it moved away from `expected`, else write
    again (at most ALIAS_WRITE_ATTEMPTS writes)."""
    for attempt in range(ALIAS_WRITE_ATTEMPTS):
        try:
            set_alias(name, alias, str(version))
            return
        except Exception as exc:  # noqa: BLE001 - only a concurrent insert of the same row is tried again
            if not is_concurrent_alias_write(exc) or attempt == ALIAS_WRITE_ATTEMPTS - 1:
                raise
        time.sleep(ALIAS_RETRY_SECONDS * 2**attempt)  # the other writer's transaction ends meanwhile
        now = alias_version(name, alias)
        if now == str(version):
            return
        if expected is not ANY_CHAMPION and now != expected:
            raise ChampionMoved(f"{name}@{alias} moved to v{now} while v{version} was being written; not moved")


def move_champion(
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
    version_tags_or_refuse(name, version)  # an unknown version is refused before anything moves
    with signals_held(), registry_lock(name):
        current = current_champion(name)
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
            record_decision(name, event)
            raise ChampionMoved(event["why"])
        record_decision(name, event)
        try:
            write_alias(name, CHAMPION, version, expected=current)
        except ChampionMoved as exc:  # the move recorded above did not happen: the history says so
            void = {**event, "action": "void", "voids": action, "at": now_utc(), "why": str(exc)}
            record_decision(name, void)
            raise
        now = current_champion(name)
        if now != str(version):  # a writer that does not take the registry lock moved it meanwhile
            raise RegistryError(f"the champion of {name!r} is v{now} right after it was moved to v{version}")
    moves = json.loads(version_tags(name, version).get(MOVES_TAG) or "[]")
    moves = (moves + [{**{k: event[k] for k in ("action", "by", "at")}, "why": str(event["why"])[:600]}])[-MOVES_KEPT:]
    tag_version(name, version, {MOVES_TAG: json.dumps(moves)})
    return event


def apply_decision(
    name: str, version: str, promoted: bool, reason: str, expected: str | None, who: str
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
        record_decision(name, event)
        return False, reason
    try:
        move_champion(name, version, "promote", reason, who, expected=expected)
    except ChampionMoved as exc:
        tag_version(name, version, {"promotion": "rejected", "promotion_reason": str(exc)})
        return False, str(exc)
    return True, reason


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


def version_tags_or_refuse(name: str, version: str) -> dict[str, str]:
    """The version's tags; a version (or model) that does not exist is a RegistryError naming it."""
    try:
        return version_tags(name, str(version))
    except Exception as exc:  # noqa: BLE001 - only "no such version" is the user's mistake
        if not is_missing(exc):
            raise
        raise RegistryError(f"model {name!r} has no version {version!r}") from exc


def promote_version(name: str, version: str, why: str, who: str | None = None, force: bool = False) -> dict:
    version_tags_or_refuse(name, version)
    current = current_champion(name)
    if current == str(version):
        raise RegistryError(f"version {version} of {name!r} is already the champion")
    require_loadable(name, str(version), "promote", force)
    return move_champion(name, str(version), "promote", why, who, expected=current)


def rollback_champion(name: str, why: str, who: str | None = None, force: bool = False) -> dict:
    """Back to the champion before the current one (repeatable: each rollback goes one further back)."""
    current = current_champion(name)
    stack = champion_stack(champion_history(name))
    if len(stack) < 2:
        raise RegistryError(f"model {name!r} has no previous champion to roll back to (history: {stack or 'empty'})")
    require_loadable(name, stack[-2], "roll back to", force)
    return move_champion(name, stack[-2], "rollback", why, who, expected=current)


def models_listing(name: str) -> dict:
    """Versions (newest first) with aliases, test metrics and the gate's verdict, plus the champion history."""
    # search_model_versions leaves aliases empty; the registered model maps alias -> version
    aliases = use_tracking().get_registered_model(name).aliases
    rows = [
        {
            "version": mv.version,
            "aliases": sorted(a for a, v in aliases.items() if str(v) == mv.version),
            "created": mv.created,
            "run_id": mv.run_id,
            # `gru` or a distribution baseline; versions from before the tag existed are GRUs
            "forecaster": mv.tags.get(FORECASTER_TAG, "gru"),
            **{k: test_score(mv.tags, k) for k in SHOWN_METRICS},
            # set by a training run that could not load or score this version as champion
            "scoring_error": mv.tags.get("champion_scoring_error"),
            "gate": mv.tags.get("promotion"),
            "gate_reason": mv.tags.get("promotion_reason"),
        }
        for mv in find_versions(name)
    ]
    serves = champion_universes([name]).get(name)
    return {
        "model": name,
        "serves": None if serves is None else serves.describe(),
        "versions": rows,
        "champion_history": champion_history(name),
    }
