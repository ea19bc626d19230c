"""Register: log the pyfunc model, register a version as `challenger`, promote to `champion` if it earns it.

The champion protocol itself (compare-and-set moves of the alias, their history) is `tickerflow.tracking.registry`;
this stage logs and registers the versions and hands the gate's decision to it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import runtime, task

from tickerflow.run_log import run_logger
from tickerflow.tracking.interruptions import signals_held
from tickerflow.tracking.models import Servable, find_versions, log_version, tag_version, version_tags
from tickerflow.tracking.registry import (
    BUNDLE_DIGEST_TAG,
    FORECASTER_TAG,
    LINEAGE_TAG,
    SHOWN_ON_VERSION,
    TEST_SCORES_TAG,
    apply_decision,
    champion_universes,
    current_champion,
    write_alias,
)
from tickerflow_model.config import RegisterConfig
from tickerflow_model.evaluation import Evaluation
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.gate import GRU, GateDecision, promotion_decision
from tickerflow_model.names import MODEL_NAME, universe_model_name
from tickerflow_model.universe import UNIVERSE_TAG, Universe, model_for
from tickerflow_model.window_dataset import WindowDataset

CHALLENGER = "challenger"


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
    new: bool = True  # False: an identical version existed (a rerun on the same data and config) and was reused

    @property
    def headline(self) -> str:
        return f"champion {self.model_name} v{self.champion_version} ({self.champion_forecaster})"


def universe_of(dataset: WindowDataset) -> Universe:
    """What a model trained on `dataset` serves: its tickers (those with enough history), price and columns."""
    return Universe(tuple(dataset.manifest["tickers"]), dataset.price_column, tuple(dataset.spec.columns))


@task(name="choose-model")
def choose_model(dataset: WindowDataset, config: RegisterConfig, source: str) -> str:
    """The registered model this run competes in: `register.model_name`, or one that keeps the data's universe
    apart from the others (`tickerflow_model.universe.model_for`). Chosen before training: a conflict costs
    no epochs."""
    run = universe_of(dataset)
    names = [config.model_name] if config.model_name else [MODEL_NAME, universe_model_name(source)]
    name, why = model_for(run, source, champion_universes(names), config.model_name, config.replace_universe)
    if why:
        run_logger().warning("%s", why)
    return name


def git_commit() -> str | None:
    """The commit of the code that trained the model, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def registration_tags(
    evaluation: Evaluation, dataset: WindowDataset, run_id: str, promoted: bool, reason: str, forecaster: str = GRU
) -> dict[str, str]:
    """What a person reads on a version, ten tags (a dozen with the digest and, on a champion, its moves):
    which forecaster it is, the gate's verdict, its headline test scores, its data and universe; every test
    score of its own in one JSON tag (`test_scores`), the rest of the lineage (the raw snapshot, the commit,
    the flow run) in another (`lineage`). The run is the version's own `run_id`. Every forecaster's scores
    are the run's (`evaluation/metrics.json`)."""
    name = "model" if forecaster == GRU else forecaster
    m = evaluation.metrics[name]
    return {
        FORECASTER_TAG: forecaster,
        "promotion": "promoted" if promoted else "rejected",
        "promotion_reason": reason,
        "skill_vs_naive": f"{m.get('skill', float('nan')):.6f}",
        **{f"test_{key}": f"{m[key]:.6f}" for key in SHOWN_ON_VERSION if key in m},
        "dataset_id": dataset.dataset_id,
        UNIVERSE_TAG: universe_of(dataset).to_tag(),
        TEST_SCORES_TAG: json.dumps({k: round(v, 6) for k, v in m.items()}),
        LINEAGE_TAG: json.dumps(
            {
                "source_hash": str(dataset.manifest.get("source_hash", "")),
                "git_commit": git_commit() or "none",
                "prefect_flow_run_id": str(runtime.flow_run.id or ""),
            }
        ),
    }


@task(name="register")
def register(
    forecaster: Forecaster,
    evaluation: Evaluation,
    dataset: WindowDataset,
    prices: pd.DataFrame,
    config: RegisterConfig,
    run_id: str,
    name: str,
) -> Registration:
    """Register the GRU as `challenger`; the gate's winner becomes (or stays) `champion`.

    When a distribution baseline wins, it is registered as a version of the same model, tagged
    `forecaster=<baseline>`, and becomes champion: the registry always has a champion to serve.
    """
    with signals_held():  # a stop (SIGTERM, Ctrl-C) waits until the registry is complete
        return _register(forecaster, evaluation, dataset, prices, config, run_id, name)


def _register(
    forecaster: Forecaster,
    evaluation: Evaluation,
    dataset: WindowDataset,
    prices: pd.DataFrame,
    config: RegisterConfig,
    run_id: str,
    name: str,
) -> Registration:
    logger = run_logger()
    decision = promotion_decision(evaluation, config)
    promoted = decision.winner == "model"
    version, new = register_once(forecaster, prices, run_id, name)
    if new:
        tag_version(name, version, registration_tags(evaluation, dataset, run_id, promoted, decision.reason))
    # aliases move only once the version is complete and tagged
    write_alias(name, CHALLENGER, version)  # another run may be writing it too (a shared server)
    who = f"train_pipeline run {run_id}"
    expected = evaluation.champion_version  # the champion this decision was made against
    reason = decision.reason
    if decision.winner == "champion":
        champion_version = current_champion(name) or str(evaluation.champion_version)
        apply_decision(name, version, False, reason, expected, who)  # records the `keep`
    else:
        candidate = version
        if decision.winner != "model":
            candidate, fresh = register_once(evaluation.servable(decision.winner, forecaster), prices, run_id, name)
            if fresh:
                tags = registration_tags(evaluation, dataset, run_id, True, reason, decision.winner)
                tag_version(name, candidate, tags)
        # compare-and-set: the alias moves only if the champion is still the one evaluated against
        moved, reason = apply_decision(name, candidate, True, reason, expected, who)
        promoted = promoted and moved
        champion_version = candidate if moved else current_champion(name) or ""
    champion_forecaster = version_tags(name, champion_version).get(FORECASTER_TAG, GRU) if champion_version else ""
    registration = Registration(
        name,
        version,
        promoted,
        reason,
        f"models:/{name}/{version}",
        champion_version,
        champion_forecaster,
        decision,
        new,
    )
    said = f"registered {name} v{version} (gru)" if new else f"registered nothing new: the GRU is {name} v{version}"
    logger.info("%s as %s; %s: %s", said, CHALLENGER, registration.headline, reason)
    return registration


def register_once(forecaster: Servable, prices: pd.DataFrame, run_id: str, name: str) -> tuple[str, bool]:
    """(version, whether it is new): the version of `name` that forecasts exactly as `forecaster` does (same
    bundle digest), or a new one logged into run `run_id`. A rerun on the same data and config registers
    nothing, and a baseline that wins again is the version it already was."""
    digest = forecaster.digest()
    same = [v for v in find_versions(name) if v.tags.get(BUNDLE_DIGEST_TAG) == digest]
    if same:
        return same[-1].version, False  # the oldest: find_versions lists the newest first
    version = log_version(forecaster, prices, run_id, name)
    tag_version(name, version, {BUNDLE_DIGEST_TAG: digest})
    return version, True
