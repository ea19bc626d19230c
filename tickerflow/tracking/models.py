"""Registered model versions: log a forecaster as a pyfunc version, tag it, find it, load it.

A version carries its own code (the core package `tickerflow_model`, `code_paths`), so it loads with
`mlflow.pyfunc.load_model` where tickerflow is not installed. The GRU and the distribution baselines log
the same way: a bundle folder (weights and spec, or a baseline's spec) beside their `PythonModel`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, Schema

import tickerflow_model
from tickerflow.tracking.runs import TrackedRun, bounded
from tickerflow.tracking.store import use_tracking
from tickerflow_model.baselines import BaselineForecaster
from tickerflow_model.blend import BlendForecaster
from tickerflow_model.errors import ModelNotFound, cause_line
from tickerflow_model.evaluation import Champion, failure_reason
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.names import CHAMPION_ALIAS
from tickerflow_model.pyfunc import BUNDLE_ARTIFACT, BaselinePyfunc, BlendPyfunc, GRUPricePyfunc, _canonical

MODEL_CODE = Path(tickerflow_model.__file__).parent
Servable = Forecaster | BaselineForecaster | BlendForecaster  # what a version forecasts with


# ---- logging a version ---------------------------------------------------------------------------------
def input_columns(forecaster: Servable) -> list[str]:
    """The columns the model reads (other columns in a caller's frame are ignored): the date, the ticker, its
    price and what its features read (e.g. high and low), and `close`, which its forecasts are priced in."""
    if isinstance(forecaster, BlendForecaster):
        return input_columns(forecaster.gru)  # garch reads the price alone
    columns = forecaster.spec.window.columns if isinstance(forecaster, Forecaster) else ()
    return list(dict.fromkeys(["date", "ticker", forecaster.spec.price_column, *columns, "close"]))


def input_example(prices: pd.DataFrame, forecaster: Forecaster | BlendForecaster) -> pd.DataFrame:
    """One ticker's most recent window of raw prices (plus one row for the first return).

    Dates are ISO strings, as a user's `pd.read_csv` or a JSON request carries them.
    """
    ticker = sorted(prices["ticker"].unique())[0]
    g = prices[prices["ticker"] == ticker].sort_values("date")
    columns = [c for c in input_columns(forecaster) if c in g]
    example = g[columns].tail(forecaster.min_rows).reset_index(drop=True)
    return example.astype({"ticker": str}).assign(date=example["date"].dt.strftime("%Y-%m-%d"))


def baseline_example(prices: pd.DataFrame, baseline: BaselineForecaster) -> pd.DataFrame:
    """The few most recent rows of one ticker the baseline can forecast (for static: one it was fit on)."""
    known = sorted(baseline.spec.static) if baseline.spec.static else sorted(prices["ticker"].astype(str).unique())
    g = prices[prices["ticker"].astype(str) == known[0]].sort_values("date")
    columns = [c for c in input_columns(baseline) if c in g]
    example = g[columns].tail(baseline.min_rows).reset_index(drop=True)
    return example.astype({"ticker": str}).assign(date=example["date"].dt.strftime("%Y-%m-%d"))


def model_signature(example: pd.DataFrame, output: pd.DataFrame, price_column: str) -> ModelSignature:
    """The inferred signature, except `date`, which takes ISO strings and datetimes alike, and `close`, which a
    model of the adjusted close reads only to price its forecasts in the caller's units (optional there).

    MLflow's schema enforcement refuses a column whose type differs from the signature's, so a `date`
    typed as datetime rejected a frame read with `pd.read_csv`, and one typed as string rejected
    datetimes; the model parses either itself (`_canonical`).
    """
    inferred = infer_signature(example, output, params={"all_dates": False})

    def column(c: ColSpec) -> ColSpec:
        if c.name == "date":
            return ColSpec(AnyType(), "date")
        if c.name == "close" and price_column != "close":
            return ColSpec(c.type, "close", required=False)
        return c

    inputs = Schema([column(c) for c in inferred.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def pip_requirements(forecaster: Servable) -> list[str]:
    """What the model's code imports, pinned to the versions it was logged with."""
    needs = ["mlflow", "torch", "pandas", "exchange-calendars"]  # exchange-calendars: the forecast's target days
    garch = isinstance(forecaster, BlendForecaster) or (
        isinstance(forecaster, BaselineForecaster) and forecaster.spec.name == "garch"
    )
    if garch:
        needs.append("arch")
    return [f"{dist}=={installed_version(dist).split('+')[0]}" for dist in needs]


def log_version(forecaster: Servable, prices: pd.DataFrame, run_id: str, model_name: str) -> str:
    """Log the bundle (weights + spec, a baseline's spec, or both of the blend) with its own code into run
    `run_id`, and register it as a new version of `model_name`. Returns the version."""
    python_model: GRUPricePyfunc  # a BaselinePyfunc and a BlendPyfunc are one
    if isinstance(forecaster, BaselineForecaster):
        example, python_model, artifact = (
            baseline_example(prices, forecaster),
            BaselinePyfunc(),
            f"baseline-{forecaster.spec.name}",
        )
    elif isinstance(forecaster, BlendForecaster):
        example, python_model, artifact = input_example(prices, forecaster), BlendPyfunc(), "blend"
    else:
        example, python_model, artifact = input_example(prices, forecaster), GRUPricePyfunc(), "model"
    output = forecaster.forecast_frame(_canonical(example))
    use_tracking()
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        bundle = forecaster.save(Path(tmp) / BUNDLE_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name=artifact,
            python_model=python_model,
            artifacts={BUNDLE_ARTIFACT: str(bundle)},
            code_paths=[str(MODEL_CODE)],
            signature=model_signature(example, output, forecaster.spec.price_column),
            input_example=example,
            registered_model_name=model_name,
            pip_requirements=pip_requirements(forecaster),
        )
    # Leaving `start_run` ended the run FINISHED; the flow ends it (FINISHED, FAILED, KILLED) when it ends.
    TrackedRun(run_id).reopen()
    return str(info.registered_model_version)


# ---- tags and aliases ----------------------------------------------------------------------------------
def tag_version(name: str, version: str, tags: dict[str, Any]) -> None:
    client = use_tracking()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, bounded(value))


def version_tags(name: str, version: str) -> dict[str, str]:
    return dict(use_tracking().get_model_version(name, version).tags)


def set_alias(name: str, alias: str, version: str) -> None:
    use_tracking().set_registered_model_alias(name, alias, version)


def alias_version(name: str, alias: str) -> str | None:
    """The version behind `name@alias`, None when the model or the alias does not exist."""
    try:
        return str(use_tracking().get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


@dataclass(frozen=True)
class VersionRecord:
    """What `gc` and the listings read of a version: no MLflow object leaves this package."""

    name: str
    version: str
    run_id: str | None
    created: int
    tags: dict[str, str]


def find_versions(name: str | None = None) -> list[VersionRecord]:
    """Every version of `name` (None: of every registered model), newest first."""
    client = use_tracking()
    found = (
        client.search_model_versions(f"name='{name}'")
        if name is not None
        else client.search_model_versions(max_results=10000)
    )
    records = [VersionRecord(mv.name, str(mv.version), mv.run_id, mv.creation_timestamp, dict(mv.tags)) for mv in found]
    return sorted(records, key=lambda r: (r.name, -int(r.version)))


# ---- loading -------------------------------------------------------------------------------------------
def load_error(name: str, version: str) -> str | None:
    """Why version `version` of `name` cannot be loaded (its files missing or unreadable); None when it loads."""
    try:
        mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:  # noqa: BLE001 - whatever stops it loading stops it serving
        return cause_line(exc)
    return None


def load_champion(model_name: str) -> Champion | None:
    """The registry's champion of `model_name`, loaded to compare with; None when there is none.

    A champion that cannot be loaded comes back with the reason instead of the model: training never
    fails because of the champion. Pinned to the version: the alias may move while a run scores it.
    """
    version = alias_version(model_name, CHAMPION_ALIAS)
    return None if version is None else load_as_champion(model_name, version)


def load_as_champion(model_name: str, version: str) -> Champion:
    """A registered version loaded as a champion to compare with, or the reason it cannot be."""
    try:
        model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    except Exception as exc:  # noqa: BLE001 - any failure of someone else's model is a reason to skip it
        return Champion(version, error=failure_reason(exc))
    return Champion(version, model, reads=required_columns(model))


def required_columns(model) -> tuple[str, ...]:
    """The columns a loaded pyfunc's input schema requires (none when it has no named schema)."""
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return ()
    return tuple(str(c.name) for c in schema.inputs if getattr(c, "required", True))


def resolve_version(uri: str) -> str:
    """The registry version behind a `models:/NAME@ALIAS` or `models:/NAME/N` URI ('' otherwise)."""
    if not uri.startswith("models:/"):
        return ""
    name, _, ref = uri[len("models:/") :].partition("@")
    if ref:
        return str(use_tracking().get_model_version_by_alias(name, ref).version)
    return uri.rstrip("/").rsplit("/", 1)[-1]


def load_model(uri: str) -> tuple[str, Any]:
    """(version, loaded pyfunc) of a model URI. A missing model or missing files is `ModelNotFound`; any other
    failure (the registry or the artifact store unreachable) is raised as it is, for a retry."""
    use_tracking()
    try:
        version = resolve_version(uri)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ModelNotFound(
            f"no model at {uri}: {exc.message}; train one (`tickerflow run`) or pass --model-uri"
        ) from exc
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        if isinstance(exc, mlflow.exceptions.MlflowException) and exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        reason = getattr(exc, "message", None) or str(exc)
        if not version:  # not a registry URI: nothing says the model exists
            raise ModelNotFound(f"no model at {uri}: {reason}; pass a --model-uri that exists") from exc
        raise ModelNotFound(
            f"{uri} is version {version} of the registry, but its files are missing ({reason}); "
            "promote or roll back to a version that loads (`tickerflow models` lists them)"
        ) from exc
    return version, model
