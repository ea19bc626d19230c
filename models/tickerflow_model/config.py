"""The base of every tickerflow config: a pydantic model whose `Field` bounds are the validation, the docs
and the Prefect UI form at once."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    """Frozen, unknown keys refused, every field checked on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def updated(self, **changes: Any) -> Self:
        """A copy with `changes` applied and checked (`model_copy(update=...)` would skip the checks)."""
        return type(self).model_validate({**self.model_dump(), **changes})
