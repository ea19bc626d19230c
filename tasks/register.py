"""Register: log the pyfunc model, register a version as `challenger`, promote to `champion` if it earns it.

Every move of the `champion` alias (the pipeline's gate, `tickerflow promote`, `tickerflow rollback`), and
every gate decision that left it in place, is recorded as one finished MLflow run in the experiment
`tickerflow-registry` (tags: model, action, version, previous, by, why, and the whole event as JSON), so the
history is one table in the MLflow UI, read back from the tracking store alone, and the registered model's
page stays short (moves are also on the version itself, three tags each). Homes from before kept the history
as registered-model tags `champion_history.<UTC time>-<random id>`; those are still read. Moves are compare-and-set: a decision
made against one champion never overwrites another that took its place meanwhile.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, Schema
from prefect import runtime, task
from prefect.logging import get_run_logger

import tickerflow_model
from tickerflow.tasks.interruptions import signals_held
from tickerflow.tasks.tracking import EXPERIMENT, experiment_id, use_tracking
from tickerflow_model.baselines import BaselineForecaster
from tickerflow_model.window_dataset import WindowDataset
from tickerflow_model.errors import TickerflowError
from tickerflow_model.evaluation import Evaluation
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.gate import GRU, GateDecision, RegisterConfig, promotion_decision
from tickerflow_model.metrics import HEADLINE_METRICS
from tickerflow_model.names import CHAMPION_ALIAS as CHAMPION
from tickerflow_model.pyfunc import BUNDLE_ARTIFACT, BaselinePyfunc, GRUPricePyfunc, _canonical

CHALLENGER = "challenger"
MODEL_CODE = Path(tickerflow_model.__file__).parent
HISTORY_PREFIX = "champion_history."  # registered-model tags of the history in older homes
REGISTRY_EXPERIMENT = f"{EXPERIMENT}-registry"  # one finished run per champion decision
HISTORY_MODEL_TAG = "tickerflow.registered_model"
HISTORY_MODEL_KEY_TAG = "tickerflow.registered_model_key"  # `_model_key(name)`, what the history is searched by
HISTORY_KEY_TAG = "tickerflow.history_key"  # `history_key()`: orders the events
HISTORY_EVENT_TAG = "tickerflow.event"  # the event as JSON


class RegistryError(TickerflowError, ValueError):
    """A promotion or rollback that cannot be done (unknown version, no previous champion)."""


class ChampionMoved(RegistryError):
    """The champion is no longer the one a decision was made against: nothing was moved."""


FORECASTER_TAG = "forecaster"


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str  # the GRU's version registered by this run
    promoted: bool  # whether that version became champion
    reason: str
    model_uri: str
    champion_version: str | None = None  # the champion after this run
    champion_forecaster: str | None = None  # `gru` or a baseline's name
    decision: GateDecision | None = field(default=None, repr=False)  # the gate's verdict on every candidate

    @property
    def headline(self) -> str:
        return f"champion {self.model_name} v{self.champion_version} ({self.champion_forecaster})"


# ---- champion history ---------------------------------------------------------------------------
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
                [exp.experiment_id], filter_string=f"tags.`{HISTORY_MODEL_KEY_TAG}` = '{_model_key(name)}'",
                max_results=1000, page_token=token,
            )
            events.update({r.data.tags[HISTORY_KEY_TAG]: r.data.tags[HISTORY_EVENT_TAG] for r in page})
            token = page.token
            if not token:
                break
    return [json.loads(events[k]) for k in sorted(events)]


def _model_key(name: str) -> str:
    """The model's name as a filter-safe tag value (a name may hold quotes)."""
    from tickerflow_model.atomic_io import stable_hash

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
    shown = {k: "" if event.get(k) is None else str(event[k])[:5000] for k in ("action", "version", "previous", "by", "why")}
    run = client.create_run(
        experiment_id(client, REGISTRY_EXPERIMENT),
        run_name=f"{name}: {event['action']} v{event['version']}",
        tags={HISTORY_MODEL_TAG: name, HISTORY_MODEL_KEY_TAG: _model_key(name), HISTORY_KEY_TAG: key, HISTORY_EVENT_TAG: json.dumps(event), **shown},
    )
    client.set_terminated(run.info.run_id)


def registry_lock(name: str):
    """Serialises champion moves of one model between processes sharing this home (one machine)."""
    from tickerflow_model.atomic_io import stable_hash
    from tickerflow.tasks.tracking import home_lock

    return home_lock(f"registry-{stable_hash(name)}")


ANY_CHAMPION = object()  # `expected` for a move that does not depend on the current champion


def move_champion(
    client: mlflow.MlflowClient, name: str, version: str, action: str, why: str, who: str | None = None,
    expected: str | None | object = ANY_CHAMPION,
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
        event = {"action": action, "version": str(version), "previous": current, "by": who or current_user(), "at": now_utc(), "why": why}
        if expected is not ANY_CHAMPION and current != expected:
            was = f"v{expected}" if expected else "no champion"
            event.update(
                action="refused", expected=expected,
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
        event = {"action": "keep", "version": str(version), "previous": expected, "by": who, "at": now_utc(), "why": reason}
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


# ---- logging the model ----------------------------------------------------------------------------
def input_columns(forecaster: Forecaster) -> list[str]:
    """The columns the model reads; other columns in a caller's frame are ignored."""
    spec = forecaster.spec
    # e.g. volume, high and low for their features; the gap reads `close` even when the model's price is it
    return list(dict.fromkeys(["date", "ticker", spec.price_column, *spec.window.columns]))


def input_example(prices: pd.DataFrame, forecaster: Forecaster) -> pd.DataFrame:
    """One ticker's most recent window of raw prices (plus one row for the first return).

    Dates are ISO strings, as a user's `pd.read_csv` or a JSON request carries them.
    """
    ticker = sorted(prices["ticker"].unique())[0]
    g = prices[prices["ticker"] == ticker].sort_values("date")
    example = g[input_columns(forecaster)].tail(forecaster.min_rows).reset_index(drop=True)
    return example.astype({"ticker": str}).assign(date=example["date"].dt.strftime("%Y-%m-%d"))


def model_signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """The inferred signature, except `date`, which takes ISO strings and datetimes alike.

    MLflow's schema enforcement refuses a column whose type differs from the signature's, so a `date`
    typed as datetime rejected a frame read with `pd.read_csv`, and one typed as string rejected
    datetimes; the model parses either itself (`_canonical`).
    """
    inferred = infer_signature(example, output, params={"all_dates": False})
    inputs = Schema([ColSpec(AnyType(), "date") if c.name == "date" else c for c in inferred.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def baseline_example(prices: pd.DataFrame, baseline: BaselineForecaster) -> pd.DataFrame:
    """The few most recent rows of one ticker the baseline can forecast (for static: one it was fit on)."""
    known = sorted(baseline.spec.static) if baseline.spec.static else sorted(prices["ticker"].astype(str).unique())
    g = prices[prices["ticker"].astype(str) == known[0]].sort_values("date")
    columns = ["date", "ticker", baseline.spec.price_column]
    example = g[columns].tail(baseline.min_rows).reset_index(drop=True)
    return example.astype({"ticker": str}).assign(date=example["date"].dt.strftime("%Y-%m-%d"))


def log_pyfunc(forecaster: Forecaster | BaselineForecaster, prices: pd.DataFrame, run_id: str, model_name: str) -> str:
    """Log the bundle (weights + spec, or a baseline's spec) with its own code; register it. Returns the new version."""
    if isinstance(forecaster, BaselineForecaster):
        example, python_model = baseline_example(prices, forecaster), BaselinePyfunc()
    else:
        example, python_model = input_example(prices, forecaster), GRUPricePyfunc()
    output = forecaster.forecast_frame(_canonical(example))
    signature = model_signature(example, output)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        bundle = forecaster.save(Path(tmp) / BUNDLE_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="model" if python_model.__class__ is GRUPricePyfunc else f"baseline-{forecaster.spec.name}",
            python_model=python_model,
            artifacts={BUNDLE_ARTIFACT: str(bundle)},
            code_paths=[str(MODEL_CODE)],
            signature=signature,
            input_example=example,
            registered_model_name=model_name,
            pip_requirements=pip_requirements(forecaster),
        )
    # Leaving `start_run` ended the run FINISHED; the flow ends it (FINISHED, FAILED, KILLED) when it ends,
    # and a run stopped after this point must not read as finished.
    mlflow.MlflowClient().update_run(run_id, status="RUNNING")
    return str(info.registered_model_version)


def pip_requirements(forecaster: Forecaster | BaselineForecaster) -> list[str]:
    """What the model's code imports, pinned to the versions it was logged with."""
    needs = ["mlflow", "torch", "pandas", "exchange-calendars"]  # exchange-calendars: the forecast's target days
    if isinstance(forecaster, BaselineForecaster) and forecaster.spec.name == "garch":
        needs.append("arch")
    return [f"{dist}=={_version(dist)}" for dist in needs]


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist).split("+")[0]


def git_commit() -> str | None:
    """The commit of the code that trained the model, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def version_tags(
    evaluation: Evaluation, dataset: WindowDataset, run_id: str, promoted: bool, reason: str, forecaster: str = GRU
) -> dict[str, str]:
    """Lineage, which forecaster the version is, its test metrics and the gate's decision, as model-version tags."""
    name = "model" if forecaster == GRU else forecaster
    m = evaluation.metrics[name]
    tags = {
        FORECASTER_TAG: forecaster,
        "mlflow_run_id": run_id,
        "dataset_id": dataset.dataset_id,
        "source_hash": str(dataset.manifest.get("source_hash", "")),
        "git_commit": git_commit() or "none",
        "prefect_flow_run_id": str(runtime.flow_run.id or ""),
        "skill_vs_naive": f"{m.get('skill', float('nan')):.6f}",
        "promotion": "promoted" if promoted else "rejected",
        "promotion_reason": reason[:5000],
    }
    # this version's own scores under plain names, every forecaster's for comparison
    tags.update({f"test_{key}": f"{value:.6f}" for key, value in m.items()})
    for other, scores in evaluation.metrics.items():
        for key in HEADLINE_METRICS:
            if key in scores:
                tags[f"test_{other}_{key}"] = f"{scores[key]:.6f}"
    return tags


@task(name="register")
def register(
    forecaster: Forecaster,
    evaluation: Evaluation,
    dataset: WindowDataset,
    prices: pd.DataFrame,
    config: RegisterConfig,
    run_id: str,
) -> Registration:
    """Register the GRU as `challenger`; the gate's winner becomes (or stays) `champion`.

    When a distribution baseline wins, it is registered as a version of the same model, tagged
    `forecaster=<baseline>`, and becomes champion: the registry always has a champion to serve.
    """
    with signals_held():  # a stop (SIGTERM, Ctrl-C) waits until the registry is complete
        return _register(forecaster, evaluation, dataset, prices, config, run_id)


def _register(
    forecaster: Forecaster, evaluation: Evaluation, dataset: WindowDataset, prices: pd.DataFrame, config: RegisterConfig,
    run_id: str,
) -> Registration:
    logger = get_run_logger()
    client = use_tracking()
    name = config.model_name
    version = log_pyfunc(forecaster, prices, run_id, name)
    decision = promotion_decision(evaluation, config)
    promoted = decision.winner == "model"
    for key, value in version_tags(evaluation, dataset, run_id, promoted, decision.reason).items():
        client.set_model_version_tag(name, version, key, value)
    # aliases move only once the version is complete and tagged
    client.set_registered_model_alias(name, CHALLENGER, version)
    who = f"train_pipeline run {run_id}"
    expected = evaluation.champion_version  # the champion this decision was made against
    reason = decision.reason
    if decision.winner == "champion":
        champion_version = current_champion(client, name) or str(evaluation.champion_version)
        champion_forecaster = client.get_model_version(name, champion_version).tags.get(FORECASTER_TAG, GRU)
        apply_decision(client, name, version, False, reason, expected, who)  # records the `keep`
    else:
        if decision.winner == "model":
            candidate, candidate_forecaster = version, GRU
        else:
            baseline = evaluation.baselines[decision.winner]
            candidate, candidate_forecaster = log_pyfunc(baseline, prices, run_id, name), decision.winner
            tags = version_tags(evaluation, dataset, run_id, True, reason, forecaster=decision.winner)
            for key, value in tags.items():
                client.set_model_version_tag(name, candidate, key, value)
        # compare-and-set: the alias moves only if the champion is still the one evaluated against
        moved, reason = apply_decision(client, name, candidate, True, reason, expected, who)
        promoted = promoted and moved
        if moved:
            champion_version, champion_forecaster = candidate, candidate_forecaster
        else:
            champion_version = current_champion(client, name) or ""
            champion_forecaster = (
                client.get_model_version(name, champion_version).tags.get(FORECASTER_TAG, GRU) if champion_version else ""
            )
    registration = Registration(
        name, version, promoted, reason, f"models:/{name}/{version}", champion_version, champion_forecaster, decision
    )
    logger.info("registered %s v%s (gru) as %s; %s: %s", name, version, CHALLENGER, registration.headline, reason)
    return registration
