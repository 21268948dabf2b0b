"""Task value objects, id bounds and domain errors (standard library and the contract only)."""

from __future__ import annotations

from datetime import datetime
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


class Rejection(NamedTuple):
    """A task-start event refused by validation: recorded, answered, never retried."""

    identity: EventIdentity
    service_id: int | None
    status: int
    code: str
    body: dict[str, Any]
    """The error body (`message`, `exception`, `errors`)."""
    position: Position


class Undecodable(NamedTuple):
    """A record with no task-start identity: dead-lettered as it came, never retried."""

    position: Position
    reason: str


Command = StartCommand | Rejection | Undecodable
"""What one consumed record asks of the service (a kind per event type the contract knows)."""

Outcome = Task | Rejection | Undecodable
"""What became of one command: its task, its rejection, or a dead letter."""


class DomainError(ServiceError):
    """Base of the domain errors; `retriable` says whether backing off and retrying can help."""


class UnstorableEventError(DomainError):
    """The database refused the event's data itself: retrying would fail again."""


class IdSpaceExhaustedError(DomainError):
    """All 2,147,483,647 task ids are used: no new task can be created."""


__all__ = [
    "TASK_ID_MAX",
    "TASK_ID_MIN",
    "Command",
    "DomainError",
    "EventIdentity",
    "IdSpaceExhaustedError",
    "Outcome",
    "Position",
    "Rejection",
    "StartCommand",
    "StorageUnavailableError",
    "Task",
    "Undecodable",
    "UnstorableEventError",
]
