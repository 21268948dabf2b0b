"""The Update Task Extension request: an extension name and the value that replaces it.

The body replaces the whole value of the extension: a JSON object (single-valued) or an array of
JSON objects (multi-valued), with the value rules of attached data (what PostgreSQL and orjson
can store exactly, the nesting limit, the body size cap).

Name rules (ours: 8.5 documents none; user docs repeat them): non-empty, at most
`MAX_EXTENSION_NAME_LENGTH` characters, no control characters, and not a reserved name
(`fields.RESERVED_NAMES`: a standard field of either event or one of the task's own keys, which
the extension would shadow on reads). Names are case-sensitive.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ConfigDict, RootModel

from schemas._events import RESERVED_PROBLEM, decode_body, invalid, with_early
from schemas._json_errors import display, json_type
from schemas._json_walk import Problem, string_problem, value_problems
from schemas.errors import Problems, one_field, whole_body
from schemas.fields import RESERVED_NAMES
from schemas.limits import DEFAULT_LIMITS, Limits
from schemas.replies import ErrorCode

MAX_EXTENSION_NAME_LENGTH: Final = 256
"""Longest extension name accepted."""

WHAT: Final = "extension value"
"""How messages name the body of an extension update."""
ExtensionValue = dict[str, Any] | list[dict[str, Any]]


class TaskExtensionValue(RootModel[ExtensionValue]):
    """The body of Update Task Extension: it replaces the whole value of the extension.

    A JSON object (a single-valued extension) or an array of JSON objects (multi-valued), kept
    verbatim and in order: no U+0000 in any string or key, integers within 64 bits, nesting at
    most 64 levels. For documentation and the JSON Schema; validate with
    `parse_extension_update`.
    """

    model_config = ConfigDict(title="TaskExtensionValue", frozen=True)


@dataclass(frozen=True, slots=True)
class ExtensionUpdate:
    """A validated Update Task Extension request: the extension's name and its new value."""

    name: str
    value: ExtensionValue


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return "must be given" if name is None else f"must be a string, got {json_type(name)}"
    if not name:
        return "must not be empty"
    if len(name) > MAX_EXTENSION_NAME_LENGTH:
        return f"must be at most {MAX_EXTENSION_NAME_LENGTH} characters long, got {len(name)}"
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"must not contain control characters, got U+{ord(control):04X}"
    return string_problem(name) or (RESERVED_PROBLEM if name in RESERVED_NAMES else None)


def parse_extension_name(name: object) -> str:
    """The extension name, or EventValidationError (field `extension_name`) saying why not."""
    problem = _name_problem(name)
    if problem is None:
        assert isinstance(name, str)  # noqa: S101 - _name_problem refuses every other type
        return name
    if isinstance(name, str) and name and problem == RESERVED_PROBLEM:
        problem = f"'{display(name)}' {problem}"
    raise one_field(ErrorCode.INVALID_FIELD, "extension_name", problem, "Invalid extension name")


def _value(data: bytes | Any, limits: Limits) -> ExtensionValue:
    decoded = decode_body(data, limits, WHAT)
    value = decoded.value
    if not isinstance(value, dict | list):
        raise whole_body(
            ErrorCode.NOT_AN_OBJECT,
            f"The {WHAT} must be a JSON object or an array of JSON objects, "
            f"got {json_type(value)}.",
        )
    problems: list[Problem] = []
    if isinstance(value, list):
        problems.extend(
            ((index,), f"must be a JSON object, got {json_type(item)}")
            for index, item in enumerate(value)
            if not isinstance(item, dict)
        )
    if not decoded.shallow or not decoded.serialisable:
        value_problems((), value, problems)
    if not problems and not decoded.early:
        return value
    keys = value if isinstance(value, dict) else range(len(value))
    raise invalid(WHAT, with_early(decoded, problems), {k: i for i, k in enumerate(keys)})


def parse_extension_update(
    name: str | None, data: bytes | Any, limits: Limits = DEFAULT_LIMITS
) -> ExtensionUpdate:
    """Validate an Update Task Extension request, or raise EventValidationError (every problem).

    `data` is the raw body (bytes) or an already-decoded JSON value. Problems with the name and
    with the body are reported together, the body's 413 first.
    """
    problems = Problems()
    checked = problems.check(parse_extension_name, name)
    value = problems.check(_value, data, limits)
    problems.raise_any()
    assert checked is not None  # noqa: S101 - no problem: set
    assert value is not None  # noqa: S101 - no problem: set
    return ExtensionUpdate(checked, value)
