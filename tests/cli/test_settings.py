"""`tickerflow config`: every setting, read from the one config module, and the GUIDE's copy of the table."""

from __future__ import annotations

from pathlib import Path

import yaml

from tickerflow.cli import main
from tickerflow.cli.settings import with_settings_table
from tickerflow_model.config import PipelineConfig, flat_fields, settings_rows

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "GUIDE.md"


def test_the_guide_holds_the_settings_table_the_code_prints():
    text = GUIDE.read_text()
    assert with_settings_table(text) == text, "docs/GUIDE.md's settings table is stale: run `make settings-table`"


def test_config_prints_a_row_for_every_setting_with_its_default(capsys):
    assert main(["config"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    assert names == [row[0] for row in settings_rows()]
    # every value a --config file can set has its row (what PipelineConfig dumps, by the names a file uses)
    assert set(flat_fields(PipelineConfig().model_dump(by_alias=True))) <= set(names)
    (epochs,) = [row for row in rows if row.startswith("| `train.epochs`")]
    assert f"`{PipelineConfig().train.epochs}`" in epochs and ">= 1" in epochs


def test_config_defaults_is_a_config_file_that_gives_the_defaults(capsys, tmp_path):
    assert main(["config", "--defaults"]) == 0
    text = capsys.readouterr().out
    assert PipelineConfig.model_validate(yaml.safe_load(text)) == PipelineConfig()
    (tmp_path / "c.yaml").write_text(text)
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--epochs", "0"]) == 1  # read as a --config file
