"""The standard fields of the task events: THE one definition, everything else derives from it.

The pydantic models (`TaskStartEvent`, `TaskEndEvent`), their JSON Schemas, the reserved
attached-data keys and the extension-name rules are built from `START_FIELDS` and `END_FIELDS`;
the database columns, the Context Services Task representation, OpenAPI and the replies read the
lookups below instead of keeping their own lists.

`placement` says where the Task representation (GET) puts a field: at the top level of the task
(`state_id`, `task_type`, `est_duration`, `disposition`, `disposition_desc`) or inside the part
of the event that carried it (`started` for the Task Start Event, `completed` for the Task End
Event: `timestamp`, `session_id`, `interaction_id`, the application, resource and media fields).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final


class Kind(StrEnum):
    """The value type of a standard field (its rules depend on the `FieldMode`)."""

    INT32 = "int32"
    """A signed 32-bit integer."""
    DURATION = "duration"
    """An integer 0 .. 2147483647 (seconds)."""
    TEXT = "text"
    """A string (at most the configured length, or the field's own `max_length`)."""
    LONG_OR_STRING = "long_or_string"
    """A business-attribute value: a 64-bit integer id or a non-empty name."""
    TIMESTAMP = "timestamp"
    """An RFC 3339 date-time with an explicit offset; stored in UTC to the millisecond."""


class Placement(StrEnum):
    """Where the Context Services Task representation puts a field."""

    TASK = "task"
    """At the top level of the task."""
    EVENT = "event"
    """Inside the event part that carried it: `started` or `completed`."""


PYTHON_TYPES: Final[dict[Kind, Any]] = {
    Kind.INT32: int | None,
    Kind.DURATION: int | None,
    Kind.TEXT: str | None,
    Kind.LONG_OR_STRING: int | str | None,
    Kind.TIMESTAMP: datetime | None,
}
"""The canonical Python type of each kind's validated value (None: the field is absent)."""


@dataclass(frozen=True, slots=True)
class StandardField:
    """One standard field of a task event."""

    name: str
    kind: Kind
    description: str
    placement: Placement
    max_length: int | None = None
    """A cap of the field's own (characters), below the configured `max_string_length`."""


_TASK, _EVENT = Placement.TASK, Placement.EVENT
_BUSINESS = "business-attribute value: a 64-bit id or a name."
_TIMESTAMP = (
    " time with an explicit offset (RFC 3339); stored in UTC to the millisecond and rendered "
    "`2010-05-20T15:41:52.380Z`. Set by the server when absent."
)

_STATE_ID = StandardField(
    "state_id", Kind.INT32, "Id of the state the task belongs to (32-bit).", _TASK
)
_TASK_TYPE = StandardField(
    "task_type",
    Kind.LONG_OR_STRING,
    "Task type business-attribute value: a 64-bit id or a non-empty name.",
    _TASK,
)
_APPLICATION_TYPE = StandardField(
    "application_type", Kind.LONG_OR_STRING, f"Application type {_BUSINESS}", _EVENT
)
_APPLICATION_ID = StandardField(
    "application_id", Kind.INT32, "DB id of the calling application (32-bit).", _EVENT
)
_RESOURCE_TYPE = StandardField(
    "resource_type", Kind.LONG_OR_STRING, f"Resource type {_BUSINESS}", _EVENT
)
_RESOURCE_ID = StandardField("resource_id", Kind.INT32, "DB id of the resource (32-bit).", _EVENT)
_MEDIA_TYPE = StandardField(
    "media_type",
    Kind.LONG_OR_STRING,
    "Media type business-attribute value (e.g. email, voice, chat).",
    _EVENT,
)

_PARTIES = (_APPLICATION_TYPE, _APPLICATION_ID, _RESOURCE_TYPE, _RESOURCE_ID, _MEDIA_TYPE)
"""The application, resource and media fields: the same in both events."""

START_FIELDS: Final[tuple[StandardField, ...]] = (
    _STATE_ID,
    _TASK_TYPE,
    StandardField("session_id", Kind.TEXT, "Related business/orchestration session id.", _EVENT),
    StandardField("interaction_id", Kind.TEXT, "Related interaction id (a string).", _EVENT),
    *_PARTIES,
    StandardField(
        "est_duration", Kind.DURATION, "Estimated duration in seconds, 0 .. 2147483647.", _TASK
    ),
    StandardField("timestamp", Kind.TIMESTAMP, f"Start{_TIMESTAMP}", _EVENT),
)
"""The Task Start Event's standard fields, in the order of the contract's table."""

END_FIELDS: Final[tuple[StandardField, ...]] = (
    _STATE_ID,
    _TASK_TYPE,
    StandardField(
        "session_id",
        Kind.TEXT,
        "Related business/orchestration session id, at most 32 characters.",
        _EVENT,
        max_length=32,
    ),
    StandardField(
        "interaction_id",
        Kind.TEXT,
        "Related interaction id (a string), at most 50 characters.",
        _EVENT,
        max_length=50,
    ),
    *_PARTIES,
    StandardField(
        "disposition",
        Kind.LONG_OR_STRING,
        "The outcome: a disposition business-attribute value, a 64-bit id or a name.",
        _TASK,
    ),
    StandardField(
        "disposition_desc",
        Kind.TEXT,
        "Description of the outcome, at most 64 characters.",
        _TASK,
        max_length=64,
    ),
    StandardField("timestamp", Kind.TIMESTAMP, f"End{_TIMESTAMP}", _EVENT),
)
"""The Task End Event's standard fields (`state_id` and `task_type` as real clients send them)."""

TASK_KEYS: Final = frozenset(
    {"task_id", "service_id", "started", "completed", "extensions", "duration"}
)
"""The Task representation's own keys that are not standard fields of an event."""


def names(fields: Iterable[StandardField]) -> tuple[str, ...]:
    """The names of `fields`, in order."""
    return tuple(field.name for field in fields)


def by_name(fields: Iterable[StandardField]) -> Mapping[str, StandardField]:
    """`fields` keyed by name, in order (read-only)."""
    return MappingProxyType({field.name: field for field in fields})


def of_kind(fields: Iterable[StandardField], *kinds: Kind) -> tuple[str, ...]:
    """The names of the fields of one of `kinds`, in order."""
    return tuple(field.name for field in fields if field.kind in kinds)


def placed(fields: Iterable[StandardField], placement: Placement) -> tuple[str, ...]:
    """The names of the fields the Task representation puts at `placement`, in order."""
    return tuple(field.name for field in fields if field.placement is placement)


START_BY_NAME: Final = by_name(START_FIELDS)
END_BY_NAME: Final = by_name(END_FIELDS)
LONG_OR_STRING_NAMES: Final = frozenset(of_kind((*START_FIELDS, *END_FIELDS), Kind.LONG_OR_STRING))
"""Fields holding an int or a str (business-attribute values), in either event."""

ALL_FIELD_NAMES: Final = frozenset(START_BY_NAME) | frozenset(END_BY_NAME)
"""Every standard field name of either event."""

RESERVED_NAMES: Final = ALL_FIELD_NAMES | TASK_KEYS
"""Names no attached-data key and no extension may take: they would shadow the task's own
fields on reads (case-sensitive)."""


def reserved_attached_keys(fields: Iterable[StandardField]) -> frozenset[str]:
    """The attached-data keys an event with these standard fields refuses.

    Every reserved name that is not one of the event's own standard fields: a Task Start Event
    cannot carry `disposition`, a Task End Event cannot carry `est_duration`.
    """
    return RESERVED_NAMES - frozenset(names(fields))
