"""PipelineConfig is the flow's parameter: its JSON schema is the Prefect UI form, its flat params go to MLflow."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from tickerflow_model.config import SECTIONS, PipelineConfig, field_default, settings_rows

STAGES = ("ingest", "validate", "window", "train", "evaluate", "register", "backtest")


def stage_field(schema: dict, stage: str, name: str) -> dict:
    """The schema of `stage.name`, following the stage's `$ref` into `$defs`."""
    ref = schema["properties"][stage]
    ref = ref.get("$ref") or ref["allOf"][0]["$ref"]
    return schema["$defs"][ref.rsplit("/", 1)[-1]]["properties"][name]


def test_every_stage_is_described_for_the_prefect_form():
    properties = PipelineConfig.model_json_schema()["properties"]
    assert set(properties) == set(STAGES)
    assert all(properties[stage].get("description") for stage in STAGES)


@pytest.mark.parametrize(
    ("stage", "name", "minimum"),
    [("train", "epochs", 1), ("window", "lookback", 2), ("ingest", "max_rows", 1), ("ingest", "max_bytes", 1)],
)
def test_the_schema_carries_the_stage_configs_bounds(stage, name, minimum):
    """The form refuses what the flow would refuse. Holds once the stage configs are pydantic models with
    Field bounds; a dataclass's checks live in __post_init__, where no schema can see them."""
    field = stage_field(PipelineConfig.model_json_schema(), stage, name)
    assert field.get("minimum") == minimum or field.get("exclusiveMinimum") == minimum - 1


def test_flat_params_name_every_field_of_every_logged_stage():
    config = PipelineConfig()
    params = config.flat_params()
    assert params["train.epochs"] == str(config.train.epochs)
    assert params["ingest.source"] == config.ingest.source
    assert params["validate.max_abs_log_return"] == str(config.validate_.max_abs_log_return)
    sections = {"ingest", "validate", "window", "train", "evaluate", "register", "backtest"}
    assert {key.split(".", 1)[0] for key in params} == sections
    # every field of every section, nested ones dotted: the same names as the settings table
    assert set(params) == {key for key, *_ in settings_rows({s: SECTIONS[s] for s in sections})}
    assert not any(value.startswith("{") for value in params.values())  # nested configs are flattened, not repr'd


def test_field_default_reads_a_value_and_calls_a_default_factory():
    class New(BaseModel):
        epochs: int = 3
        tickers: list = Field(default_factory=list)

    assert field_default(New, "epochs") == 3
    assert field_default(New, "tickers") == []
    assert field_default(PipelineConfig, "train") == PipelineConfig().train


@pytest.mark.parametrize("levels, missing", [((0.1, 0.5, 0.9), "0.05, 0.95"), ((0.05, 0.5, 0.95), "0.1, 0.9")])
def test_levels_without_the_scored_intervals_are_refused_when_the_config_is_built(levels, missing):
    with pytest.raises(ValueError, match=rf"train\n.*gru.quantiles must include {missing}.*got \[{levels[0]}"):
        PipelineConfig.model_validate({"train": {"gru": {"quantiles": list(levels)}}})
    wider = (0.025, 0.05, 0.1, 0.5, 0.9, 0.95, 0.975)
    assert PipelineConfig.model_validate({"train": {"gru": {"quantiles": wider}}}).train.gru.quantiles == wider
