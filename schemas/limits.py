"""What validation is configured with: the field-type mode and the size caps."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final


class FieldMode(StrEnum):
    """How strictly the standard fields' JSON types are read (setting `UCS_FIELD_MODE`).

    In both modes a float (even `2.0`), a boolean, an object or an array is refused for every
    standard field, and a "long or string" field takes a 64-bit JSON integer or a non-empty string
    as sent (`"24"` stays the string `"24"`). Values come out in the canonical type.
    """

    GENESYS = "genesys"
    """As Context Services' Java binding: an integer field also takes a string of decimal digits
    with an optional minus sign (`"24"` -> 24, range-checked); a string field also takes a JSON
    integer (`42` -> `"42"`). The default: real callers work unchanged."""
    STRICT = "strict"
    """Integers only as JSON integers, strings only as JSON strings."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Validation settings: size caps (`UCS_MAX_BODY_BYTES`, `UCS_MAX_STRING_LENGTH`) and mode."""

    max_body_bytes: int = 1_048_576
    max_string_length: int = 1024
    mode: FieldMode = FieldMode.GENESYS
    """A `FieldMode` or its name (`"strict"`); validators compare by identity, so it is
    normalised here, once."""
    compiled: dict[Any, Any] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )
    """What validation compiled for these limits, by what it was compiled for (the native
    validator per event model, `schemas._events.parse_event`): a cache, not part of the value.
    Read on every event without hashing the limits (a dataclass's hash is a Python call)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", FieldMode(self.mode))


DEFAULT_LIMITS: Final = Limits()
"""The limits used when none are given."""
