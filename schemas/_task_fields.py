"""Field types of the Task Start Event: validators that give plain-language problems.

Each validator raises `PydanticCustomError(ERROR_TYPE, ...)` whose `problem` is the final text
for people, so no pydantic wording (or URL) reaches a user. Private to `schemas.task_start`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from schemas._json_errors import display, json_type
from schemas._json_walk import string_problem


@dataclass(frozen=True, slots=True)
class Limits:
    """Configurable size caps (from `Settings.max_body_bytes` / `Settings.max_string_length`)."""

    max_body_bytes: int = 1_048_576
    max_string_length: int = 1024


DEFAULT_LIMITS: Final = Limits()
"""The limits used when none are given."""

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

ERROR_TYPE: Final = "task_start_field"
CONTEXT_LIMITS: Final = "limits"
_NULL = "must not be null (omit the field instead)"
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def problem(text: str) -> PydanticCustomError:
    """A validation error whose message is `text`, the final wording for people."""
    return PydanticCustomError(ERROR_TYPE, "{problem}", {"problem": text})


def _limits(info: ValidationInfo) -> Limits:
    context = info.context
    return context.get(CONTEXT_LIMITS, DEFAULT_LIMITS) if context else DEFAULT_LIMITS


def _checked_text(value: str, info: ValidationInfo) -> str:
    cap = _limits(info).max_string_length
    if len(value) > cap:
        raise problem(f"must be at most {cap} characters long, got {len(value)}")
    text = string_problem(value)
    if text is not None:
        raise problem(text)
    return value


def _integer(low: int, high: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if type(value) is int and low <= value <= high:  # the hot path: one type test
            return value
        if value is None:
            raise problem(_NULL)
        if not isinstance(value, int) or isinstance(value, bool):
            raise problem(f"must be a JSON integer, got {json_type(value)}")
        if not low <= value <= high:
            raise problem(f"must be between {low} and {high}, got {value}")
        return int(value)

    return check


def _string(value: object, info: ValidationInfo) -> str:
    if isinstance(value, str):
        return _checked_text(value, info)
    raise problem(_NULL if value is None else f"must be a JSON string, got {json_type(value)}")


_long = _integer(INT64_MIN, INT64_MAX)


def _long_or_string(value: object, info: ValidationInfo) -> int | str:
    if isinstance(value, str):
        if not value:
            raise problem("must be a non-empty string or a JSON integer, got an empty string")
        return _checked_text(value, info)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return _long(value)
    raise problem(f"must be a non-empty string or a JSON integer, got {json_type(value)}")


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise problem(
            _NULL if value is None else f"must be a date-time string, got {json_type(value)}"
        )
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        if _NAIVE.fullmatch(value):
            what = "a date and time without a UTC offset (add 'Z' or '+hh:mm')"
        elif _DATE.fullmatch(value):
            what = "a date without a time"
        else:
            what = "not one"
        raise problem(
            "must be an RFC 3339 date-time with an explicit offset, like 2010-05-20T15:41:52.380Z "
            f"or 2010-05-20T17:41:52.380+02:00; '{display(value)}' is {what}"
        )
    day, clock, fraction, offset = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}.{micros}{offset}").astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise problem(f"is not a valid date-time ({display(str(exc), 80)})") from None
    return parsed.replace(microsecond=parsed.microsecond - parsed.microsecond % 1000)


def _json_schema(**schema: Any) -> WithJsonSchema:
    return WithJsonSchema(schema)


Int32 = Annotated[
    int | None,
    PlainValidator(_integer(INT32_MIN, INT32_MAX)),
    _json_schema(type="integer", minimum=INT32_MIN, maximum=INT32_MAX),
]
Duration = Annotated[
    int | None,
    PlainValidator(_integer(0, INT32_MAX)),
    _json_schema(type="integer", minimum=0, maximum=INT32_MAX),
]
Text = Annotated[
    str | None,
    PlainValidator(_string),
    _json_schema(type="string", maxLength=DEFAULT_LIMITS.max_string_length),
]
LongOrString = Annotated[
    int | str | None,
    PlainValidator(_long_or_string),
    _json_schema(
        anyOf=[
            {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
            {"type": "string", "minLength": 1, "maxLength": DEFAULT_LIMITS.max_string_length},
        ]
    ),
]
Timestamp = Annotated[
    datetime | None, PlainValidator(_timestamp), _json_schema(type="string", format="date-time")
]
