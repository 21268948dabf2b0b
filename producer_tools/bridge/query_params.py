"""The parameters of Query Tasks, checked before the database is asked (no I/O here).

- `state_id`: a decimal 32-bit integer (`-5` included, as state ids are signed);
- `task_types`: comma-separated type ids or names, the parameter repeatable. A decimal token
  matches a type id and the type name written the same (a name may be digits: `"123"` stays a
  name in both field modes); any other token matches a name, exactly. Empty tokens are
  ignored; at most `MAX_TASK_TYPES` distinct tokens;
- `limit`: 1 .. `QUERY_LIMIT_MAX`, default `QUERY_LIMIT_DEFAULT`;
- `after`: the last task id of the previous page, 0 .. 2147483647.

Every bad parameter is reported at once, each named, in one 400.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from consumer.readside import QUERY_LIMIT_DEFAULT, QUERY_LIMIT_MAX
from producer_tools.bridge.errors import BadRequestError
from schemas.ids import TASK_ID_MAX
from schemas.replies import FieldError
from schemas.task_start import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN

MAX_TASK_TYPES: Final = 100
"""Most distinct `task_types` tokens in one query (each is one index range to read)."""

_SIGNED = re.compile(r"-?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")
_DIGITS = 21
"""Longer decimal texts are out of every range here (and never handed to `int`)."""


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Checked Query Tasks parameters (the state comes from the path)."""

    state_id: int | None = None
    task_types: tuple[int | str, ...] = ()
    """An int matches a type id, a str a type name (any of them)."""
    limit: int = QUERY_LIMIT_DEFAULT
    after: int | None = None


def _shown(value: str) -> str:
    shown = value if len(value) <= 40 else value[:40] + "..."
    return repr(shown.encode("ascii", "backslashreplace").decode())


def _integer(
    value: str | None,
    bounds: tuple[int, int],
    pattern: re.Pattern[str],
    name: str,
    problems: list[FieldError],
) -> int | None:
    """The parameter's value (None when absent), or None with its problem kept."""
    if value is None:
        return None
    low, high = bounds
    if len(value) <= _DIGITS and pattern.fullmatch(value) and low <= int(value) <= high:
        return int(value)
    problem = f"must be a decimal integer between {low} and {high}, got {_shown(value)}"
    problems.append(FieldError(field=name, problem=problem))
    return None


def _task_types(values: Sequence[str], problems: list[FieldError]) -> tuple[int | str, ...]:
    tokens = list(dict.fromkeys(t for value in values for t in value.split(",") if t))
    if len(tokens) > MAX_TASK_TYPES:
        problem = f"must name at most {MAX_TASK_TYPES} task types, got {len(tokens)}"
        problems.append(FieldError(field="task_types", problem=problem))
        return ()
    if any("\x00" in token for token in tokens):  # no stored name can hold one
        problems.append(FieldError(field="task_types", problem="must not contain U+0000"))
        return ()
    types: list[int | str] = []
    for token in tokens:
        if (
            len(token) <= _DIGITS
            and _SIGNED.fullmatch(token)
            and INT64_MIN <= int(token) <= INT64_MAX
        ):
            types.append(int(token))
        types.append(token)
    return tuple(types)


def parse_filter(
    *,
    state_id: str | None = None,
    task_types: Sequence[str] = (),
    limit: str | None = None,
    after: str | None = None,
) -> TaskFilter:
    """The checked parameters, or one BadRequestError (400) naming every bad one."""
    problems: list[FieldError] = []
    state = _integer(state_id, (INT32_MIN, INT32_MAX), _SIGNED, "state_id", problems)
    types = _task_types(task_types, problems)
    page = _integer(limit, (1, QUERY_LIMIT_MAX), _UNSIGNED, "limit", problems)
    last = _integer(after, (0, TASK_ID_MAX), _UNSIGNED, "after", problems)
    if problems:
        listed = "; ".join(f"{p.field} {p.problem}" for p in problems)
        raise BadRequestError(f"Invalid request: {listed}.", problems)
    return TaskFilter(state, types, QUERY_LIMIT_DEFAULT if page is None else page, last)
