"""The Task End Event (body of Complete Task), per the task-lifecycle contract.

Same shape and rules as the Task Start Event (`schemas.task_start`): all fields optional, an
explicit `null` refused, the field types of the active `FieldMode`, attached data kept verbatim
with the same value rules. Its own fields: `disposition` (long or string) and
`disposition_desc` (at most 64 characters); `session_id` is at most 32 characters and
`interaction_id` at most 50 on end events. `state_id` and `task_type` are accepted because real
clients send them. `est_duration` and the task's own keys are reserved attached-data keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from schemas._events import EventRules, derive_event_model, parse_event
from schemas.fields import END_FIELDS, names
from schemas.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "END_EXAMPLE",
    "END_STANDARD_FIELDS",
    "RESERVED_END_KEYS",
    "TaskEndEvent",
    "parse_task_end",
]

END_EXAMPLE: Final[dict[str, Any]] = {
    "session_id": "s-42",
    "interaction_id": "42",
    "media_type": "email",
    "disposition": "resolved",
    "disposition_desc": "customer satisfied",
    "timestamp": "2010-05-20T15:49:32.120Z",
    "Survey": {"question1": 9},
}
"""An example Task End Event (the JSON Schema shows it)."""

_RULES: Final = EventRules("task-end event", END_FIELDS, examples=(END_EXAMPLE,))

END_STANDARD_FIELDS: Final = frozenset(names(END_FIELDS))
"""The Task End Event's standard field names; every other key is attached data."""

RESERVED_END_KEYS: Final = _RULES.reserved
"""Attached-data keys a Task End Event refuses."""

_DOC = """A Task End Event (body of Complete Task): standard fields plus attached data.

All fields are optional; an explicit `null` is refused (omit the field instead). `session_id`
is at most 32 characters, `interaction_id` at most 50, `disposition_desc` at most 64. Attached
data is kept verbatim and in order; the task's own keys (`task_id`, `service_id`, `started`,
`completed`, `extensions`, `duration`) and `est_duration` are reserved. Field types follow the
mode as for the Task Start Event (`genesys` here; see the `.strict.json` schema)."""

if TYPE_CHECKING:  # the static view of the derived model; a unit test keeps the two in step
    from schemas._events import SharedFields

    class TaskEndEvent(SharedFields):
        disposition: int | str | None = None
        disposition_desc: str | None = None

else:
    TaskEndEvent = derive_event_model("TaskEndEvent", _DOC, _RULES, __name__)


def parse_task_end(data: bytes | Any, limits: Limits = DEFAULT_LIMITS) -> TaskEndEvent:
    """Validate one Task End Event, or raise EventValidationError with every problem.

    `data` is the raw body (bytes) or an already-decoded JSON value; `limits` carries the caps
    and the mode.
    """
    return parse_event(TaskEndEvent, data, limits)
