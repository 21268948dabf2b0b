"""Task value objects, id bounds and domain errors (standard library and the contract only)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from schemas.errors import ServiceError, StorageUnavailableError

TASK_ID_MIN = 1
TASK_ID_MAX = 2**31 - 1
"""Task ids are 32-bit and never wrap: when the space is used up, events are refused."""


class EventIdentity(NamedTuple):
    """CloudEvents `source` + `id`: the idempotency key of a task-start event.

    A NamedTuple: hashed several times per event on the hot path, in C.
    """

    source: str
    id: str


class Position(NamedTuple):
    """Where a record was read from (stored with the task, named in dead letters)."""

    topic: str
    partition: int
    offset: int


class StartCommand(NamedTuple):
    """A validated task-start event, ready for the service layer."""

    identity: EventIdentity
    service_id: int
    fields: dict[str, Any]
    """Standard fields by name (state_id, task_type, ... timestamp); absent ones are missing."""
    attached_data: dict[str, Any]
    position: Position
    tenant: str | None = None
    """The caller's tenant (`ContactCenterId`) in multi-tenant mode; None when single-tenant."""
    group: str | None = None
    """The caller's group (`GroupId`), if one was sent (multi-tenant mode)."""


class Task(NamedTuple):
    """A task as persisted."""

    task_id: int
    service_id: int
    fields: dict[str, Any]
    """Standard fields, None when absent; `timestamp` is always set (server time when absent)."""
    attached_data_json: str
    """Attached data exactly as stored: JSON text, key order and types kept."""
    identity: EventIdentity
    received_at: datetime
    position: Position
    tenant: str | None = None
    group: str | None = None
    completion: Completion | None = None
    """How the task was completed; None while it is active."""
    updated_at: datetime | None = None
    """When a completion or an extension update last changed it; None if never."""


class Rejection(NamedTuple):
    """A task-start event refused by validation: recorded, answered, never retried."""

    identity: EventIdentity
    service_id: int | None
    status: int
    code: str
    body: dict[str, Any]
    """The error body (`message`, `exception`, `errors`)."""
    position: Position
    task_id: int | None = None
    """The task an end or extension event named (None for a start)."""


class Undecodable(NamedTuple):
    """A record with no task-start identity: dead-lettered as it came, never retried."""

    position: Position
    reason: str


class DomainError(ServiceError):
    """Base of the domain errors; `retriable` says whether backing off and retrying can help."""


class UnstorableEventError(DomainError):
    """The database refused the event's data itself: retrying would fail again."""


class IdSpaceExhaustedError(DomainError):
    """All 2,147,483,647 task ids are used: no new task can be created."""


__all__ = [
    "TASK_ID_MAX",
    "TASK_ID_MIN",
    "DomainError",
    "EventIdentity",
    "IdSpaceExhaustedError",
    "Position",
    "Rejection",
    "StartCommand",
    "StorageUnavailableError",
    "Task",
    "Undecodable",
    "UnstorableEventError",
]


# --- the task lifecycle: changes of existing tasks ---


class ChangeKind(StrEnum):
    """What a change of an existing task does."""

    END = "end"
    """Complete Task: a Task End Event."""
    EXTENSION = "extension"
    """Update Task Extension: the whole new value of one attached-data key."""


class Completion(NamedTuple):
    """How a task was completed (the first completion stands)."""

    completed_at: datetime
    """The end event's timestamp (server time when absent), to the millisecond."""
    duration_ms: int
    """Milliseconds from the start timestamp to `completed_at`."""
    disposition: int | str | None
    disposition_desc: str | None
    end_event_json: str
    """The Task End Event as stored: JSON text of its standard fields (the timestamp always
    set), then its attached data, key order and values kept."""
    identity: EventIdentity
    """The end event that completed the task."""


class EndCommand(NamedTuple):
    """A validated Task End Event for one task, ready for the service layer."""

    identity: EventIdentity
    service_id: int
    task_id: int
    fields: dict[str, Any]
    """Standard fields by name (disposition, ... timestamp); absent ones are missing."""
    attached_data: dict[str, Any]
    position: Position
    tenant: str | None = None
    """The caller's tenant in multi-tenant mode (must be the task's); None when single-tenant."""


class ExtensionCommand(NamedTuple):
    """A validated Update Task Extension request: one attached-data key's whole new value."""

    identity: EventIdentity
    service_id: int
    task_id: int
    name: str
    value: dict[str, Any] | list[dict[str, Any]]
    position: Position
    tenant: str | None = None
    """The caller's tenant in multi-tenant mode (must be the task's); None when single-tenant."""


ChangeCommand = EndCommand | ExtensionCommand
"""A change of an existing task."""


class RecordedChange(NamedTuple):
    """A change as recorded under its event identity (what a replay of it answers)."""

    identity: EventIdentity
    task_id: int
    kind: ChangeKind
    extension: str | None
    """The extension's name (EXTENSION only)."""
    value_json: str | None
    """The extension's new value as stored, JSON text (EXTENSION only)."""


class ChangeStatus(StrEnum):
    """What became of one change command."""

    APPLIED = "applied"
    """Applied now: `change` is what was recorded, `task` the task after it."""
    REPLAYED = "replayed"
    """Its identity is a recorded change: `change` is that change, `task` the task as it is."""
    STORED_START = "stored_start"
    """Its identity is a stored start: `task` is that task; nothing changed."""
    STORED_REJECTION = "stored_rejection"
    """Its identity was rejected before: `rejection` is what was recorded; nothing changed."""
    NOT_FOUND = "not_found"
    """No such task for this service and tenant (404); `task` is None."""
    ALREADY_COMPLETED = "already_completed"
    """An end under a new identity for a completed task (409): `task` shows the completion."""
    END_BEFORE_START = "end_before_start"
    """The end timestamp is before the start timestamp (400): `task` is the active task."""


class ChangeOutcome(NamedTuple):
    """The outcome of one change command (see `ChangeStatus` for what each field holds)."""

    identity: EventIdentity
    status: ChangeStatus
    task: Task | None = None
    change: RecordedChange | None = None
    rejection: Rejection | None = None


class Changed(NamedTuple):
    """A task an end or extension update changed: applied now, or answered again (a replay)."""

    task: Task
    """The task as it is now."""
    change: RecordedChange
    """The change as recorded under the request's identity (what a replay answers)."""


Command = StartCommand | EndCommand | ExtensionCommand | Rejection | Undecodable
"""What one consumed record asks of the service (a kind per event type the contract knows)."""

Outcome = Task | Changed | Rejection | Undecodable
"""What became of one command: its task, the change it made, its rejection, or a dead letter."""


__all__ += [
    "ChangeCommand",
    "ChangeKind",
    "ChangeOutcome",
    "ChangeStatus",
    "Changed",
    "Command",
    "Completion",
    "EndCommand",
    "ExtensionCommand",
    "Outcome",
    "RecordedChange",
]
