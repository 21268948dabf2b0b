"""Deep checks of attached data: what PostgreSQL jsonb and orjson can store exactly.

Iterative (no recursion limit), in document order. The consumer's hot path skips the walk when
the raw body proves it unnecessary (see `task_start.parse_task_start`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

MAX_NESTING_DEPTH = 64
"""Deepest nesting of objects and arrays in a body (the body itself is level 1).

orjson serialises at most 254 levels; replies nest attached data a few levels deeper again.
"""

JSON_INT_MIN = -(2**63)
JSON_INT_MAX = 2**64 - 1
"""The integers orjson keeps exact (it reads larger ones as floats and cannot write them)."""

NUL_PROBLEM = "contains a NUL character (U+0000), which PostgreSQL cannot store"
BIG_INT_PROBLEM = "is an integer beyond the 64-bit range, which cannot be kept exactly"

_NUMBER_OR_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')


def string_problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL_PROBLEM
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone UTF-16 surrogate, which is not valid Unicode text"
    return None


def _scalar_problem(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return string_problem(value)
    if isinstance(value, int):
        return None if JSON_INT_MIN <= value <= JSON_INT_MAX else BIG_INT_PROBLEM
    if isinstance(value, float):
        return None if math.isfinite(value) else f"must be a finite number, got {value!r}"
    return f"is a {type(value).__name__}, which is not a JSON value"


def _children(loc: Loc, value: Any, problems: list[Problem]) -> Iterable[tuple[Loc, Any]]:
    if isinstance(value, dict):
        return list(_members(loc, value, problems))
    return [((*loc, index), item) for index, item in enumerate(value)]


def _members(
    loc: Loc, value: Mapping[Any, Any], problems: list[Problem]
) -> Iterator[tuple[Loc, Any]]:
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(((*loc, repr(key)), "has a key that is not a string"))
            continue
        key_problem = string_problem(key)
        if key_problem is not None:
            problems.append(((*loc, key), f"has a key that {key_problem}"))
            continue
        yield (*loc, key), item


def value_problems(loc: Loc, value: Any, problems: list[Problem]) -> None:
    """Append to `problems` everything in `value` (found at `loc`) that cannot be stored exactly."""
    stack: list[tuple[Loc, Any]] = [(loc, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, dict | list | tuple):
            if len(here) + 1 > MAX_NESTING_DEPTH:
                problems.append((here, f"is nested deeper than {MAX_NESTING_DEPTH} levels"))
                continue
            stack.extend(reversed(list(_children(here, item, problems))))
            continue
        problem = _scalar_problem(item)
        if problem is not None:
            problems.append((here, problem))


def _integral_floats(value: Any) -> Iterator[tuple[Loc, float]]:
    stack: list[tuple[Loc, Any]] = [((), value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed([((*here, k), v) for k, v in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([((*here, i), v) for i, v in enumerate(item)]))
        elif isinstance(item, float) and abs(item) >= 2.0**63:
            yield here, item


def big_int_problems(raw: bytes, decoded: Any) -> list[Problem]:
    """Integers in `raw` that orjson silently read as floats (beyond -2^63 .. 2^64-1).

    Call only when `raw` holds a run of 19+ digits: otherwise no such integer exists. Each
    out-of-range literal is matched, by value, to the float it became, to name its path.
    """
    literals = [
        int(token)
        for token in _NUMBER_OR_STRING.findall(raw)
        if not token.startswith(b'"') and not any(c in token for c in b".eE")
    ]
    huge = [n for n in literals if not JSON_INT_MIN <= n <= JSON_INT_MAX]
    if not huge:
        return []
    candidates = list(_integral_floats(decoded))
    problems: list[Problem] = []
    for number in huge:
        match = next((c for c in candidates if c[1] == float(number)), None)
        if match is None:  # a duplicate key dropped it; still refuse the body
            problems.append(((), f"contains an integer beyond the 64-bit range ({number})"))
            continue
        candidates.remove(match)
        problems.append((match[0], BIG_INT_PROBLEM))
    return problems
