"""A config field's default, read from the class: a pydantic model class has no per-field attribute."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def field_default(config_class: type[BaseModel], name: str) -> Any:
    """The default of field `name` of a config class (a default factory is called)."""
    return config_class.model_fields[name].get_default(call_default_factory=True)
