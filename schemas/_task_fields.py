"""Field types of the task events, per `Kind` and `FieldMode`: validators and JSON Schemas.

Each validator raises `PydanticCustomError(ERROR_TYPE, ...)` whose `problem` is the final text
for people, so no pydantic wording (or URL) reaches a user. The active `Limits` (caps and mode)
come in the validation context. Every validator tries the common case first with one type test:
this runs for every field of every event on the consumer's hot path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError
from pydantic_core import core_schema as cs

from schemas._json_errors import display, json_type
from schemas._json_walk import BIG_INT_PROBLEM, JSON_INT_MAX, JSON_INT_MIN, string_problem
from schemas.fields import PYTHON_TYPES, Kind, StandardField
from schemas.limits import DEFAULT_LIMITS, FieldMode, Limits

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

ERROR_TYPE: Final = "task_start_field"
CONTEXT_LIMITS: Final = "limits"
DECIMAL_PATTERN: Final = "^-?[0-9]+$"
"""A string an integer field takes in genesys mode (then range-checked)."""

_NULL = "must not be null (omit the field instead)"
_LONG_OR_STRING = "must be a non-empty string or a JSON integer"
_EXPECTED_INT = {
    FieldMode.GENESYS: "must be a JSON integer or a string of decimal digits",
    FieldMode.STRICT: "must be a JSON integer",
}
_EXPECTED_TEXT = {
    FieldMode.GENESYS: "must be a JSON string or a JSON integer",
    FieldMode.STRICT: "must be a JSON string",
}
_MAX_DIGITS = 20  # longer (without leading zeros) is out of every range; int() never sees it
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_CANONICAL_FORM: Final = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
"""The contract's own timestamp form, `2010-05-20T15:41:52.380Z`: UTC to the millisecond."""
_CANONICAL_TIMESTAMP = re.compile(_CANONICAL_FORM)
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)

Validator = Callable[[object, ValidationInfo], Any] | Callable[[object], Any]


def problem(text: str) -> PydanticCustomError:
    """A validation error whose message is `text`, the final wording for people."""
    return PydanticCustomError(ERROR_TYPE, "{problem}", {"problem": text})


def _limits(info: ValidationInfo) -> Limits:
    context = info.context
    return context.get(CONTEXT_LIMITS, DEFAULT_LIMITS) if context else DEFAULT_LIMITS


def format_timestamp(value: datetime) -> str:
    """`value` in the contract's form, UTC to the millisecond: `2010-05-20T15:41:52.380Z`."""
    if value.tzinfo is UTC:  # the common case (asyncpg and our parser give UTC): one call
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("format_timestamp needs a timezone-aware datetime")
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def _decimal(text: str) -> int | str | None:
    """The integer a string of decimal digits (optional minus) writes; its text if too long."""
    digits = text[1:] if text.startswith("-") else text
    if not (digits and digits.isascii() and digits.isdigit()):
        return None
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        return text
    return int(text)


def _integer(low: int, high: int) -> Callable[[object, ValidationInfo], int]:
    def check(value: object, info: ValidationInfo) -> int:
        if type(value) is int and low <= value <= high:  # the hot path: one type test
            return value
        if value is None:
            raise problem(_NULL)
        mode = _limits(info).mode
        number: object = value
        if isinstance(value, str) and mode is FieldMode.GENESYS:
            number = _decimal(value)
            if number is None:
                got = "an empty string" if not value else f"'{display(value)}'"
                raise problem(f"{_EXPECTED_INT[mode]}, got {got}")
            if isinstance(number, str):
                raise problem(f"must be between {low} and {high}, got '{display(number)}'")
        elif not isinstance(value, int) or isinstance(value, bool):
            raise problem(f"{_EXPECTED_INT[mode]}, got {json_type(value)}")
        assert isinstance(number, int)  # noqa: S101 - both branches above leave an int
        if not low <= number <= high:
            raise problem(f"must be between {low} and {high}, got {number}")
        return int(number)

    return check


def _checked_text(value: str, cap: int | None, info: ValidationInfo) -> str:
    limit = _limits(info).max_string_length
    if cap is not None and cap < limit:
        limit = cap
    if len(value) > limit:
        raise problem(f"must be at most {limit} characters long, got {len(value)}")
    text = string_problem(value)
    if text is not None:
        raise problem(text)
    return value


def _text(cap: int | None) -> Validator:
    def check(value: object, info: ValidationInfo) -> str:
        if type(value) is str:  # the hot path
            return _checked_text(value, cap, info)
        if value is None:
            raise problem(_NULL)
        mode = _limits(info).mode
        if isinstance(value, str):
            return _checked_text(str(value), cap, info)
        if mode is FieldMode.GENESYS and isinstance(value, int) and not isinstance(value, bool):
            if not JSON_INT_MIN <= value <= JSON_INT_MAX:
                raise problem(BIG_INT_PROBLEM)
            return _checked_text(str(value), cap, info)
        raise problem(f"{_EXPECTED_TEXT[mode]}, got {json_type(value)}")

    return check


_long = _integer(INT64_MIN, INT64_MAX)


def _long_or_string(cap: int | None) -> Validator:
    def check(value: object, info: ValidationInfo) -> int | str:
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:  # the hot path
            return value
        if isinstance(value, str):
            if not value:
                raise problem(f"{_LONG_OR_STRING}, got an empty string")
            return _checked_text(str(value), cap, info)
        if value is None:
            raise problem(_NULL)
        if isinstance(value, int) and not isinstance(value, bool):
            return _long(value, info)
        raise problem(f"{_LONG_OR_STRING}, got {json_type(value)}")

    return check


def _timestamp(value: object) -> datetime:
    if type(value) is str and len(value) == 24 and _CANONICAL_TIMESTAMP.fullmatch(value):
        try:  # the contract's own form, 2010-05-20T15:41:52.380Z: UTC to the millisecond already
            return datetime.fromisoformat(value)
        except ValueError:
            pass  # not a real date or time (2010-02-30, 23:59:60): the full path says so
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
        parsed = datetime.fromisoformat(f"{day}T{clock}.{micros}{offset}")
        if parsed.tzinfo is not UTC:  # "+00:00" and "Z" read as UTC already
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise problem(f"is not a valid date-time ({display(str(exc), 80)})") from None
    extra = parsed.microsecond % 1000  # kept to the millisecond; `replace` costs (0.6 us)
    return parsed.replace(microsecond=parsed.microsecond - extra) if extra else parsed


def _render_timestamp(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


_RANGES: Final = {Kind.INT32: (INT32_MIN, INT32_MAX), Kind.DURATION: (0, INT32_MAX)}


def property_schema(field: StandardField, mode: FieldMode) -> dict[str, Any]:
    """The JSON Schema of `field`'s value in `mode` (without its description)."""
    max_length = field.max_length or DEFAULT_LIMITS.max_string_length
    if field.kind in _RANGES:
        low, high = _RANGES[field.kind]
        integer = {"type": "integer", "minimum": low, "maximum": high}
        if mode is FieldMode.STRICT:
            return integer
        return {"anyOf": [integer, {"type": "string", "pattern": DECIMAL_PATTERN}]}
    if field.kind is Kind.TEXT:
        text = {"type": "string", "maxLength": max_length}
        if mode is FieldMode.STRICT:
            return text
        return {"anyOf": [text, {"type": "integer", "minimum": INT64_MIN, "maximum": JSON_INT_MAX}]}
    if field.kind is Kind.LONG_OR_STRING:
        return {
            "anyOf": [
                {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
                {"type": "string", "minLength": 1, "maxLength": max_length},
            ]
        }
    return {"type": "string", "format": "date-time"}


def _validator(field: StandardField) -> Validator:
    if field.kind in _RANGES:
        return _integer(*_RANGES[field.kind])
    if field.kind is Kind.TEXT:
        return _text(field.max_length)
    if field.kind is Kind.LONG_OR_STRING:
        return _long_or_string(field.max_length)
    return _timestamp


def native_schema(field: StandardField, limits: Limits) -> CoreSchema:
    """The check pydantic-core makes alone, without calling Python, of `field`'s common valid
    value: a JSON integer in range, a string within the length cap (an empty one refused where the
    full check refuses it). What it accepts, `_validator(field)` accepts with the same result, for
    a body decoded by orjson without a `\\u0000` escape: such strings hold no U+0000 and no lone
    surrogate (orjson refuses both raw), so `string_problem` finds nothing in them. Anything else
    (genesys mode's decimal strings and numbers as text, null, a wrong type, out of range) fails
    it and gets the full check, which names the problem. A timestamp in the contract's own form
    is matched by pydantic-core and read by `datetime.fromisoformat` (a C function: no Python
    frame), as `_timestamp` reads it (UTC, `timezone.utc`); one that is not a real date or time
    (2010-02-30) and every other form go to `_timestamp`, within the same native check.
    """
    if field.kind in _RANGES:
        low, high = _RANGES[field.kind]
        return cs.int_schema(strict=True, ge=low, le=high)
    if field.kind is Kind.TIMESTAMP:
        return cs.union_schema(
            [
                cs.no_info_after_validator_function(
                    datetime.fromisoformat,
                    cs.str_schema(strict=True, pattern=f"^{_CANONICAL_FORM}$"),
                ),
                cs.no_info_plain_validator_function(_timestamp),
            ],
            mode="left_to_right",
        )
    limit = limits.max_string_length
    if field.max_length is not None and field.max_length < limit:
        limit = field.max_length
    if field.kind is Kind.TEXT:
        return cs.str_schema(strict=True, max_length=limit)
    return cs.union_schema(
        [
            cs.int_schema(strict=True, ge=INT64_MIN, le=INT64_MAX),
            cs.str_schema(strict=True, min_length=1, max_length=limit),
        ],
        mode="left_to_right",
    )


def field_type(field: StandardField) -> Any:
    """The annotated type of `field` in a model: its validator and (genesys) JSON Schema."""
    schema = WithJsonSchema(property_schema(field, FieldMode.GENESYS))
    validator = PlainValidator(_validator(field))
    if field.kind is Kind.TIMESTAMP:
        return Annotated[
            PYTHON_TYPES[field.kind],
            validator,
            PlainSerializer(_render_timestamp, return_type=str | None),
            schema,
        ]
    return Annotated[PYTHON_TYPES[field.kind], validator, schema]
