"""The training pipeline's config as the command line gives it: a `--config` file (JSON or YAML) with the
options that were given set on top, and a config error as one readable line."""

from __future__ import annotations

import json
import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
import yaml

from tickerflow_model.config import SAMPLE_DATA, PipelineConfig
from tickerflow_model.errors import ConfigError
from tickerflow_model.names import MODEL_NAME
from tickerflow_model.redaction import hold

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# CLI option -> the PipelineConfig field it sets (dotted, by the names a --config file uses). The one place
# to change when a stage config changes shape; the option's help shows that field's default (`shown_default`).
CONFIG_OPTIONS: dict[str, str] = {
    "data": "ingest.source",
    "ticker": "ingest.ticker",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "model": "register.model_name",
}
# Defaults that read better in words than as the field's value.
DEFAULTS_IN_WORDS = {
    "ingest.source": "the bundled sample",
    "ingest.ticker": "the file name",
    "register.model_name": f"{MODEL_NAME}, or {MODEL_NAME}-<data> when {MODEL_NAME}'s champion serves other tickers",
}


def shown_default(option: str) -> str:
    """What `--help` says an option's field defaults to: the config module's default."""
    dotted = CONFIG_OPTIONS[option]
    return DEFAULTS_IN_WORDS.get(dotted) or str(_lookup(PipelineConfig().model_dump(by_alias=True), dotted))


MAX_CONFIG_BYTES = 1_000_000
QUOTED_CHARS = 120  # the most of a user's value an error message repeats
ERRORS_SHOWN = 4  # a config with more problems than this is named by its first few


def read_config_file(path: str) -> dict:
    """A JSON or YAML mapping; a missing file or bad syntax is a ConfigError naming the file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES:,} bytes; a config is a few settings")
    text = decode_text(data, f"config file {path}")
    is_yaml = path.endswith((".yaml", ".yml"))
    try:
        raw = (yaml.safe_load(text) or {}) if is_yaml else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"config file {path} is not valid {'YAML' if is_yaml else 'JSON'}: {str(exc)[: 4 * QUOTED_CHARS]}"
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of stage -> settings, got {type(raw).__name__}")
    return raw


def decode_text(data: bytes, what: str) -> str:
    """UTF-8 (with or without a BOM), or UTF-16 with its BOM; anything else is a ConfigError naming `what`."""
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} is not {encoding.upper().removesuffix('-SIG')} text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None


def quoted(value: Any, limit: int = QUOTED_CHARS) -> str:
    """repr(value), bounded: a YAML of a few hundred bytes can expand (aliases) into megabytes."""
    short = reprlib.Repr()  # (Python 3.11's takes no keyword arguments)
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple, short.maxset = 3, 8, 8, 8, 8
    short.maxstring, short.maxother, short.maxlong = limit, limit, 40
    text = short.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _set_field(raw: dict, dotted: str, value: Any) -> None:
    *sections, name = dotted.split(".")
    for section in sections:
        raw = raw.setdefault(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"config section {section} must be a mapping of settings, got {type(raw).__name__}")
    raw[name] = value


def _lookup(raw: dict, dotted: str) -> Any:
    """The value at `dotted` in a nested mapping, None when any part of the path is missing."""
    for name in dotted.split("."):
        if not isinstance(raw, dict) or name not in raw:
            return None
        raw = raw[name]
    return raw


def load_config(path: str | None = None, **options: Any) -> PipelineConfig:
    """The PipelineConfig of a `--config` file (optional) with the CLI options that were given (not None)
    set on top; `options` are keys of CONFIG_OPTIONS. Bounds are checked by the config models."""
    raw = read_config_file(path) if path else {}
    source = CONFIG_OPTIONS["data"]
    if options.get("data") is None and _lookup(raw, source) is None:
        options["data"] = str(PROJECT_ROOT / SAMPLE_DATA)  # the bundled sample, whichever folder the command runs from
    for option, value in options.items():
        if value is not None:
            _set_field(raw, CONFIG_OPTIONS[option], value)
    # Credentials in the URI stay in this process: the flow's parameter (stored by Prefect, logged to
    # MLflow) is the redacted form, and ingest asks for the full one back.
    _set_field(raw, source, hold(str(_lookup(raw, source))))
    return PipelineConfig.model_validate(raw)


def error_message(exc: BaseException) -> str:
    """The reason to print; a config that does not validate is one line naming each bad field."""
    if isinstance(exc, pydantic.ValidationError):

        def got(e: ErrorDetails) -> str:  # the value the user gave, unless it is a whole section
            return "" if isinstance(e.get("input"), dict) or "input" not in e else f" (got {quoted(e['input'])})"

        errors = exc.errors()
        shown = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'config') or exc.title}: {e['msg'].removeprefix('Value error, ')}{got(e)}"
            for e in errors[:ERRORS_SHOWN]
        )
        return shown + (f"; and {len(errors) - ERRORS_SHOWN} more" if len(errors) > ERRORS_SHOWN else "")
    return str(exc)
