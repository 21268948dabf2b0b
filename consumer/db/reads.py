"""Read-side queries over the tasks table (the consumer's repository and the bridge's GETs).

The one module of `consumer` that `producer_tools` may import: tasks are defined once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.tables import LONG_OR_STRING_FIELDS, PLAIN_FIELDS, tasks
from consumer.domain import (
    TASK_ID_MAX,
    TASK_ID_MIN,
    ChangeKind,
    Completion,
    EventIdentity,
    Position,
    RecordedChange,
    Rejection,
    Task,
)

READ_COLUMNS = tuple(c.name for c in tasks.columns)
"""Columns a task is read from."""
SELECT_LIST = ", ".join(READ_COLUMNS)


TASK_FIELDS = (*PLAIN_FIELDS, *LONG_OR_STRING_FIELDS, "timestamp")
"""The standard fields every Task carries (None when absent from the event)."""


def _long_or_string(row: Mapping[Any, Any], name: str) -> int | str | None:
    as_id: int | None = row[f"{name}_id"]
    return as_id if as_id is not None else row[f"{name}_name"]


def _completion(row: Mapping[Any, Any]) -> Completion | None:
    if row["completed_at"] is None:
        return None
    return Completion(
        completed_at=row["completed_at"],
        duration_ms=row["duration_ms"],
        disposition=_long_or_string(row, "disposition"),
        disposition_desc=row["disposition_desc"],
        end_event_json=row["completed_text"],
        identity=EventIdentity(source=row["end_event_source"], id=row["end_event_id"]),
    )


def row_to_task(row: Mapping[Any, Any]) -> Task:
    """A task from a row holding READ_COLUMNS."""
    fields: dict[str, Any] = {name: row[name] for name in PLAIN_FIELDS}
    for name in LONG_OR_STRING_FIELDS:
        fields[name] = _long_or_string(row, name)
    fields["timestamp"] = row["started_at"]
    return Task(
        task_id=row["task_id"],
        service_id=row["service_id"],
        fields=fields,
        attached_data_json=row["attached_data_text"],
        identity=_identity(row),
        received_at=row["received_at"],
        position=_position(row),
        tenant=row["tenant"],
        group=row["tenant_group"],
        completion=_completion(row),
        updated_at=row["updated_at"],
    )


_TIME_COLUMNS = tuple(c.name for c in tasks.columns if c.type.python_type is datetime)


def json_row_to_task(row_json: str) -> Task:
    """A task from the JSON of its row (`to_jsonb(tasks row)`, as apply_task_changes returns)."""
    row = orjson.loads(row_json)
    for name in _TIME_COLUMNS:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    return row_to_task(row)


def visible(task: Task, service_id: int, tenant: str | None) -> bool:
    """True when the caller (service, tenant) may see the task: another service's or another
    tenant's task is exactly like an unknown one. Single-tenant callers (None) see NULL only."""
    return task.service_id == service_id and task.tenant == tenant


_BY_ID = text(f"SELECT {SELECT_LIST} FROM tasks WHERE task_id = :task_id")  # noqa: S608 - fixed columns
_BY_IDENTITY = text(
    f"SELECT {SELECT_LIST} FROM tasks t"  # noqa: S608 - fixed columns
    " JOIN unnest(CAST(:sources AS text[]), CAST(:ids AS text[])) AS i(source, id)"
    " ON t.event_source = i.source AND t.event_id = i.id"
)


async def get_task(
    conn: AsyncConnection, service_id: int, task_id: int, tenant: str | None = None
) -> Task | None:
    """The task with this id, if it belongs to this service and tenant (None: no tenant)."""
    if not TASK_ID_MIN <= task_id <= TASK_ID_MAX:
        return None
    row = (await conn.execute(_BY_ID, {"task_id": task_id})).mappings().first()
    if row is None:
        return None
    task = row_to_task(row)
    return task if visible(task, service_id, tenant) else None


async def get_tasks_by_identity(
    conn: AsyncConnection, identities: Sequence[EventIdentity]
) -> dict[EventIdentity, Task]:
    """The stored tasks among these event identities."""
    if not identities:
        return {}
    params = {"sources": [i.source for i in identities], "ids": [i.id for i in identities]}
    rows = (await conn.execute(_BY_IDENTITY, params)).mappings().all()
    found = (row_to_task(row) for row in rows)
    return {task.identity: task for task in found}


_REJECTION_BY_IDENTITY = text(
    "SELECT event_source, event_id, service_id, status, code, error,"
    " source_topic, source_partition, source_offset, task_id"
    " FROM rejected_events WHERE event_source = :source AND event_id = :id"
)


def row_to_rejection(row: Mapping[Any, Any]) -> Rejection:
    """A rejection from a rejected_events row (a mapping of its columns)."""
    return Rejection(
        identity=_identity(row),
        service_id=row["service_id"],
        status=row["status"],
        code=row["code"],
        body=row["error"],
        position=_position(row),
        task_id=row["task_id"],
    )


async def get_rejection_by_identity(
    conn: AsyncConnection, identity: EventIdentity
) -> Rejection | None:
    """The recorded rejection of this event identity, if it was rejected."""
    params = {"source": identity.source, "id": identity.id}
    row = (await conn.execute(_REJECTION_BY_IDENTITY, params)).mappings().first()
    return None if row is None else row_to_rejection(row)


def row_to_change(row: Mapping[Any, Any]) -> RecordedChange:
    """A recorded change from a task_changes row (a mapping of its columns)."""
    return RecordedChange(
        identity=_identity(row),
        task_id=row["task_id"],
        kind=ChangeKind(row["kind"]),
        extension=row["extension"],
        value_json=row["value"],
    )


_CHANGE_BY_IDENTITY = text(
    "SELECT event_source, event_id, task_id, kind, extension, value"
    " FROM task_changes WHERE event_source = :source AND event_id = :id"
)


async def get_change_by_identity(
    conn: AsyncConnection, identity: EventIdentity
) -> tuple[RecordedChange, Task | None] | None:
    """The change recorded under this identity and its task as it is now, if one was applied."""
    params = {"source": identity.source, "id": identity.id}
    row = (await conn.execute(_CHANGE_BY_IDENTITY, params)).mappings().first()
    if row is None:
        return None
    change = row_to_change(row)
    task_row = (await conn.execute(_BY_ID, {"task_id": change.task_id})).mappings().first()
    return change, None if task_row is None else row_to_task(task_row)


def _identity(row: Any) -> EventIdentity:
    return EventIdentity(source=row["event_source"], id=row["event_id"])


def _position(row: Any) -> Position:
    """Where the row's event was read (its topic, partition and offset)."""
    return Position(
        topic=row["source_topic"], partition=row["source_partition"], offset=row["source_offset"]
    )
