"""The base of every tickerflow config: a pydantic model whose `Field` bounds are the validation, the docs
and the Prefect UI form at once."""

from __future__ import annotations

from typing import Any, Self, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

# The largest integer a JSON number (a double) holds exactly: no count, size or seed a config holds is
# meant to be larger, and a value past it (`epochs: 1e26`) is a typo. Fields bound their own values tighter.
MAX_INT = 2**53


class Config(BaseModel):
    """Frozen, unknown keys refused, every field checked on construction. A boolean is not a number
    (`epochs: true` is refused, where pydantic alone would read it as 1), and no integer exceeds MAX_INT."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[str(info.field_name)].annotation
        if isinstance(value, bool) and _numeric(annotation):
            kind = "number" if float in (annotation, *get_args(annotation)) else "integer"
            raise ValueError(f"Input should be a valid {kind}, not a boolean (got {str(value).lower()})")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _integers_in_range(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise ValueError(f"must be at most {MAX_INT:,} in size (got a {len(str(abs(value)))}-digit number)")
        return value

    def updated(self, **changes: Any) -> Self:
        """A copy with `changes` applied and checked (`model_copy(update=...)` would skip the checks)."""
        return type(self).model_validate({**self.model_dump(), **changes})


def _numeric(annotation: Any) -> bool:
    """Whether a field's type is int or float (alone, optional, or in a union without bool)."""
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and bool not in args and any(a in (int, float) for a in args)
