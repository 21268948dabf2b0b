"""The ids a request names outside its body: the service id and the task id.

Both arrive as text (an HTTP path segment, a CloudEvents attribute) or as a JSON integer (a
structured CloudEvent, a JSON line), and are read the same way everywhere: plain decimal
digits, no sign, no leading zeros, no spaces.
"""

from __future__ import annotations

from typing import Final

from schemas._json_errors import display, json_type
from schemas._task_fields import INT32_MAX, INT64_MAX
from schemas.errors import one_field
from schemas.replies import ErrorCode

SERVICE_ID_MAX: Final = INT64_MAX
TASK_ID_MAX: Final = INT32_MAX


def _decimal_id(raw: str | int | None, high: int) -> int | str:
    """The id `raw` writes (1 .. high), or what to say it got instead."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if 1 <= raw <= high:
            return int(raw)
        return str(raw) if abs(raw) < 10**40 else "a larger number"
    if isinstance(raw, str):
        if raw.isascii() and raw.isdigit() and len(raw) <= len(str(high)) and raw[0] != "0":
            number = int(raw)
            if number <= high:
                return number
        got = f"'{display(raw)}'"
        if raw.isascii() and raw.isdigit() and raw.startswith("0") and raw.strip("0"):
            got += " (write it without leading zeros)"
        return got
    return "nothing" if raw is None else json_type(raw)


def _parse_id(raw: str | int | None, high: int, field: str, code: ErrorCode) -> int:
    if type(raw) is int and 0 < raw <= high:
        return raw  # the common id, a JSON integer in range: as `_decimal_id` would return it
    checked = _decimal_id(raw, high)
    if isinstance(checked, int):
        return checked
    problem = f"must be a decimal integer between 1 and {high}, got {checked}"
    raise one_field(code, field, problem, f"Invalid {field.replace('_', ' ')}")


def parse_service_id(raw: str | int | None) -> int:
    """The 64-bit service id (1 .. 2^63-1) from a decimal string or a JSON integer."""
    return _parse_id(raw, SERVICE_ID_MAX, "service_id", ErrorCode.INVALID_SERVICE_ID)


def parse_task_id(raw: str | int | None) -> int:
    """The 32-bit task id (1 .. 2147483647) from a decimal string or a JSON integer."""
    return _parse_id(raw, TASK_ID_MAX, "task_id", ErrorCode.INVALID_FIELD)
