"""The Task Start Event (HTTP body == event data) and its rules, per the Start Task contract.

`parse_task_start` checks one body: raw bytes or an already-decoded JSON value in, a validated
`TaskStartEvent` out, or a `TaskStartValidationError` carrying every problem found. Requests as a
whole (service id and body together) go through `schemas.validation.validate_event`.

Decisions beyond the reference (user-facing docs repeat them):
- Field types follow `Limits.mode` (`FieldMode`): in `genesys` mode (the default) an integer
  field also takes a string of decimal digits and a string field a JSON integer; in `strict`
  mode neither. "Long or string" fields take a 64-bit JSON integer or a non-empty string in both.
- An explicit JSON `null` for a standard field is invalid ("must not be null"): omit the field.
- Integers orjson cannot keep exactly (beyond -2^63 .. 2^64-1; it reads them as floats) are
  refused wherever they appear, naming the path, when the body arrives as bytes.
- Anything that validates can be stored in PostgreSQL text/jsonb: no U+0000 in any string or
  key at any depth, no NaN/Infinity, nesting at most `MAX_NESTING_DEPTH` levels.
- Attached-data keys never take a reserved name (`fields.RESERVED_NAMES`: the task's own keys
  and the standard fields of the Task End Event).
- Duplicate keys: the last one wins (orjson's behaviour, as most JSON parsers).
- Error paths are dotted, with array indices in brackets: `Survey.question1`, `Proposal[0].price`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from schemas._events import EventRules, derive_event_model, parse_event
from schemas._json_walk import MAX_NESTING_DEPTH
from schemas._task_fields import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    format_timestamp,
)
from schemas.errors import MAX_REPORTED_ERRORS, EventValidationError
from schemas.fields import START_FIELDS, names
from schemas.ids import SERVICE_ID_MAX, parse_service_id
from schemas.limits import DEFAULT_LIMITS, FieldMode, Limits

__all__ = [
    "DEFAULT_LIMITS",
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_NESTING_DEPTH",
    "MAX_REPORTED_ERRORS",
    "REFERENCE_EXAMPLE",
    "RESERVED_ATTACHED_KEYS",
    "SERVICE_ID_MAX",
    "STANDARD_FIELDS",
    "FieldMode",
    "Limits",
    "TaskStartEvent",
    "TaskStartValidationError",
    "format_timestamp",
    "parse_service_id",
    "parse_task_start",
]

TaskStartValidationError = EventValidationError
"""The historical name of `EventValidationError` (the same class)."""

REFERENCE_EXAMPLE: Final[dict[str, Any]] = {
    "interaction_id": "42",
    "est_duration": 460,
    "state_id": 24,
    "task_type": "customer info",
    "Survey": {
        "url": "http://ourServer/storage/userAnswers",
        "question1": 7,
        "question2": True,
        "question3": "will be better with cable tv and on-demand video",
    },
    "Proposal": [
        {"car type": "cabriolet", "price": 25000, "seats": 2, "comments": "200 cv, hardtop"},
        {"car type": "S.U.V.", "price": 70000, "seats": 8, "comments": "4wd, leather seats"},
    ],
}
"""The reference's own example body, corrected (see the contract)."""

_RULES: Final = EventRules("task-start event", START_FIELDS, examples=(REFERENCE_EXAMPLE,))

STANDARD_FIELDS: Final = frozenset(names(START_FIELDS))
"""The standard field names; every other key is attached data."""

RESERVED_ATTACHED_KEYS: Final = _RULES.reserved
"""Attached-data keys refused because they would shadow the task's own fields on reads."""

_DOC = """A Task Start Event: the standard fields plus attached data (every other key).

All fields are optional; an explicit `null` is refused (omit the field instead). Attached
data is kept verbatim and in order; the task's own keys (`task_id`, `service_id`, `started`,
`completed`, `extensions`, `duration`, `disposition`, `disposition_desc`) are reserved. Integer
fields also take a string of decimal digits, and string fields a JSON integer, in `genesys`
mode (the default; the `.strict.json` schema describes `strict` mode). Validate bodies with
`parse_task_start`, which also enforces the size caps."""

if TYPE_CHECKING:  # the static view of the derived model; a unit test keeps the two in step
    from schemas._events import SharedFields

    class TaskStartEvent(SharedFields):
        est_duration: int | None = None

else:
    TaskStartEvent = derive_event_model("TaskStartEvent", _DOC, _RULES, __name__)


def parse_task_start(data: bytes | Any, limits: Limits = DEFAULT_LIMITS) -> TaskStartEvent:
    """Validate one Task Start Event, or raise TaskStartValidationError with every problem.

    `data` is the raw body (bytes, as on HTTP and binary-mode Kafka) or an already-decoded
    JSON value (a structured CloudEvent's `data`); `limits` carries the caps and the mode.
    """
    return parse_event(TaskStartEvent, data, limits)
