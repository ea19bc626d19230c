"""`tickerflow config`: every setting with its default, bounds and meaning, read from the one config module;
or the defaults as a `--config` file to start from."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml

from tickerflow_model.config import PipelineConfig, settings_table

MARKDOWN_START = "<!-- settings-table -->"  # docs/GUIDE.md holds the table between these two lines
MARKDOWN_END = "<!-- /settings-table -->"


def config(
    defaults: Annotated[
        bool, typer.Option("--defaults", help="print the training run's defaults as a YAML --config file")
    ] = False,
) -> int:
    """Every setting: its default, its bounds and what it does (the sections a --config file holds)."""
    if defaults:
        print(yaml.safe_dump(PipelineConfig().model_dump(mode="json", by_alias=True), sort_keys=False), end="")
    else:
        print(settings_table())
    return 0


def with_settings_table(markdown: str) -> str:
    """`markdown` (docs/GUIDE.md) with the table between its two markers replaced by `settings_table()`."""
    start, end = markdown.index(MARKDOWN_START) + len(MARKDOWN_START), markdown.index(MARKDOWN_END)
    return f"{markdown[:start]}\n{settings_table()}\n{markdown[end:]}"
