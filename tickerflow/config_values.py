"""Values out of a config object, whether it is a pydantic model or (while the stages move to pydantic) a
dataclass: one way to dump it, one way to read a field's default."""

from __future__ import annotations

import dataclasses
from typing import Any


def as_dict(config: Any) -> dict[str, Any]:
    """The config's fields as a plain dict (nested configs as dicts too), by field name."""
    if hasattr(config, "model_dump"):
        return config.model_dump()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    raise TypeError(f"not a config object: {type(config).__name__}")


def field_default(config_class: type, name: str) -> Any:
    """The default of field `name` of a config class (a pydantic model class or a dataclass)."""
    fields = getattr(config_class, "model_fields", None)
    if fields is not None:
        return fields[name].get_default(call_default_factory=True)
    field = {f.name: f for f in dataclasses.fields(config_class)}[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default
