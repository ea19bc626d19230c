"""Register: log the pyfunc model, register a version as `challenger`, promote to `champion` if it earns it.

The champion protocol itself (compare-and-set moves of the alias, their history) is `tickerflow.registry`;
this stage logs and registers the versions and hands the gate's decision to it.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, Schema
from prefect import runtime, task
from prefect.logging import get_run_logger

import tickerflow_model
from tickerflow.registry import FORECASTER_TAG, apply_decision, current_champion
from tickerflow.tasks.interruptions import signals_held
from tickerflow.tasks.tracking import use_tracking
from tickerflow_model.baselines import BaselineForecaster
from tickerflow_model.config import RegisterConfig
from tickerflow_model.evaluation import Evaluation
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.gate import GRU, GateDecision, promotion_decision
from tickerflow_model.metrics import HEADLINE_METRICS
from tickerflow_model.pyfunc import BUNDLE_ARTIFACT, BaselinePyfunc, GRUPricePyfunc, _canonical
from tickerflow_model.window_dataset import WindowDataset

CHALLENGER = "challenger"
MODEL_CODE = Path(tickerflow_model.__file__).parent


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
    python_model: GRUPricePyfunc  # a BaselinePyfunc is one
    if isinstance(forecaster, BaselineForecaster):
        example, python_model, artifact = (
            baseline_example(prices, forecaster),
            BaselinePyfunc(),
            f"baseline-{forecaster.spec.name}",
        )
    else:
        example, python_model, artifact = input_example(prices, forecaster), GRUPricePyfunc(), "model"
    output = forecaster.forecast_frame(_canonical(example))
    signature = model_signature(example, output)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        bundle = forecaster.save(Path(tmp) / BUNDLE_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name=artifact,
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
    forecaster: Forecaster,
    evaluation: Evaluation,
    dataset: WindowDataset,
    prices: pd.DataFrame,
    config: RegisterConfig,
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
                client.get_model_version(name, champion_version).tags.get(FORECASTER_TAG, GRU)
                if champion_version
                else ""
            )
    registration = Registration(
        name, version, promoted, reason, f"models:/{name}/{version}", champion_version, champion_forecaster, decision
    )
    logger.info("registered %s v%s (gru) as %s; %s: %s", name, version, CHALLENGER, registration.headline, reason)
    return registration
