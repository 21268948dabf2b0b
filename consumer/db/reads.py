"""Read-side queries over the tasks table (the consumer's repository and the bridge's GETs).

The one module of `consumer` that `producer_tools` may import: tasks are defined once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.tables import LONG_OR_STRING_FIELDS, tasks
from consumer.domain import EventIdentity, Position, Rejection, Task

READ_COLUMNS = tuple(c.name for c in tasks.columns if c.name != "attached_data")
"""Columns a task is read from (the JSONB copy is for queries; reads use the verbatim text)."""
SELECT_LIST = ", ".join(READ_COLUMNS)

_PLAIN_FIELDS = (
    "state_id",
    "session_id",
    "interaction_id",
    "application_id",
    "resource_id",
    "est_duration",
)


TASK_FIELDS = (*_PLAIN_FIELDS, *LONG_OR_STRING_FIELDS, "timestamp")
"""The standard fields every Task carries (None when absent from the event)."""


def row_to_task(row: Mapping[Any, Any]) -> Task:
    """A task from a row holding READ_COLUMNS."""
    fields: dict[str, Any] = {name: row[name] for name in _PLAIN_FIELDS}
    for name in LONG_OR_STRING_FIELDS:
        as_id = row[f"{name}_id"]
        fields[name] = as_id if as_id is not None else row[f"{name}_name"]
    fields["timestamp"] = row["started_at"]
    return Task(
        task_id=row["task_id"],
        service_id=row["service_id"],
        fields=fields,
        attached_data_json=row["attached_data_text"],
        identity=EventIdentity(source=row["event_source"], id=row["event_id"]),
        received_at=row["received_at"],
        position=Position(
            topic=row["source_topic"],
            partition=row["source_partition"],
            offset=row["source_offset"],
        ),
    )


_BY_ID = text(f"SELECT {SELECT_LIST} FROM tasks WHERE task_id = :task_id")  # noqa: S608 - fixed columns
_BY_IDENTITY = text(
    f"SELECT {SELECT_LIST} FROM tasks t"  # noqa: S608 - fixed columns
    " JOIN unnest(CAST(:sources AS text[]), CAST(:ids AS text[])) AS i(source, id)"
    " ON t.event_source = i.source AND t.event_id = i.id"
)


async def get_task(conn: AsyncConnection, service_id: int, task_id: int) -> Task | None:
    """The task with this id, if it belongs to this service."""
    if not 1 <= task_id <= 2**31 - 1:
        return None
    row = (await conn.execute(_BY_ID, {"task_id": task_id})).mappings().first()
    if row is None or row["service_id"] != service_id:
        return None
    return row_to_task(row)


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
    " source_topic, source_partition, source_offset"
    " FROM rejected_events WHERE event_source = :source AND event_id = :id"
)


async def get_rejection_by_identity(
    conn: AsyncConnection, identity: EventIdentity
) -> Rejection | None:
    """The recorded rejection of this event identity, if it was rejected."""
    params = {"source": identity.source, "id": identity.id}
    row = (await conn.execute(_REJECTION_BY_IDENTITY, params)).mappings().first()
    if row is None:
        return None
    return Rejection(
        identity=EventIdentity(source=row["event_source"], id=row["event_id"]),
        service_id=row["service_id"],
        status=row["status"],
        code=row["code"],
        body=row["error"],
        position=Position(
            topic=row["source_topic"],
            partition=row["source_partition"],
            offset=row["source_offset"],
        ),
    )
