"""The write side of `ucs-tasks rebuild`: persist tasks exactly as the task events log holds them.

The task events log carries every persisted task whole after each change
(`schemas.replies.StoredTask`, laid out by `consumer.contract.task_json`). These statements
write such tasks back with their own task ids, event identities, tenant, completion, attached
data and times, and the identities of the changes applied to them (`task_changes`), in one
transaction the caller controls, then move the id sequence past the highest id so the consumer
continues where the original left off.

Batched like the repository: one `INSERT ... SELECT FROM unnest(...)` round trip per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.tables import EVENT_INPUT, LONG_OR_STRING_FIELDS, ORIGIN_INPUT, TENANT_INPUT
from schemas.replies import StoredTask

__all__ = [
    "ChangeRow",
    "advance_task_ids",
    "delete_changes",
    "delete_tasks",
    "insert_changes",
    "insert_tasks",
    "lock_tasks",
    "task_count",
]


class ChangeRow(NamedTuple):
    """One applied end or extension update, as `task_changes` records it."""

    event_source: str
    event_id: str
    task_id: int
    kind: str
    """`end` or `extension`."""
    extension: str | None
    value: str | None
    """The extension's new value as stored, JSON text (extension updates only)."""
    recorded_at: str
    """When it was applied (`YYYY-MM-DDTHH:MM:SS.sssZ`: the task's `updated_at` after it)."""


_COMPLETION_INPUT: Final[tuple[tuple[str, str], ...]] = (
    ("completed_at", "timestamptz"),
    ("duration_ms", "bigint"),
    ("disposition_id", "bigint"),
    ("disposition_name", "text"),
    ("disposition_desc", "text"),
    ("completed_text", "text"),
    ("end_event_source", "text"),
    ("end_event_id", "text"),
    ("updated_at", "timestamptz"),
)
"""(column, SQL type) of what later changes set: the completion and the last change's time."""

# (column, SQL array type) of each input array, in unnest order.
_INPUT: Final[tuple[tuple[str, str], ...]] = (
    ("task_id", "int"),
    *EVENT_INPUT,
    ("attached_data_text", "text"),
    *ORIGIN_INPUT,
    ("received_at", "timestamptz"),
    *TENANT_INPUT,
    *_COMPLETION_INPUT,
)

_NAMES = [name for name, _ in _INPUT]
_PLAIN = ("state_id", "session_id", "interaction_id", "application_id", "resource_id")

# Built from fixed column names only; every value is a bound parameter. `ON CONFLICT DO NOTHING`
# without a target covers both the primary key and the event identity (--force into a database
# that already holds some of the tasks). task_id is GENERATED ALWAYS: only a restore of tasks
# with their own ids overrides it.
_INSERT = text(
    f"INSERT INTO tasks ({', '.join(_NAMES)})"  # noqa: S608
    " OVERRIDING SYSTEM VALUE"
    f" SELECT {', '.join(_NAMES)}"
    f" FROM unnest({', '.join(f'CAST(:{n} AS {sql}[])' for n, sql in _INPUT)})"
    f" AS i({', '.join(_NAMES)})"
    " ON CONFLICT DO NOTHING"
    " RETURNING task_id"
)
_DELETE = text("DELETE FROM tasks WHERE task_id = ANY(CAST(:ids AS int[]))")
_CHANGE_INPUT: Final = (
    ("event_source", "text"),
    ("event_id", "text"),
    ("task_id", "int"),
    ("kind", "text"),
    ("extension", "text"),
    ("value", "text"),
    ("recorded_at", "timestamptz"),
)
_CHANGE_NAMES = [name for name, _ in _CHANGE_INPUT]
# An identity already recorded (--force into a database that holds it) is left alone.
_INSERT_CHANGES = text(
    f"INSERT INTO task_changes ({', '.join(_CHANGE_NAMES)})"  # noqa: S608 - fixed names
    f" SELECT * FROM unnest({', '.join(f'CAST(:{n} AS {sql}[])' for n, sql in _CHANGE_INPUT)})"
    " ON CONFLICT DO NOTHING"
    " RETURNING event_source, event_id"
)
_DELETE_CHANGES = text(
    "DELETE FROM task_changes c"
    " USING unnest(CAST(:sources AS text[]), CAST(:ids AS text[])) AS i(source, id)"
    " WHERE c.event_source = i.source AND c.event_id = i.id"
)
_COUNT = text("SELECT count(*) FROM tasks")
# Exclusive: reads go on, a running consumer's writes wait until the rebuild commits (and then
# take ids from the advanced sequence, and see the restored changes). Both tables in one
# statement, tasks first: the order in which the consumer's changes take them.
_LOCK = text("LOCK TABLE tasks, task_changes IN EXCLUSIVE MODE")
# Never backwards: ids the sequence already handed out (even to rolled-back inserts) stay used.
_ADVANCE = text(
    "WITH s AS (SELECT CAST(pg_get_serial_sequence('tasks', 'task_id') AS regclass) AS seq),"
    " top AS (SELECT GREATEST(COALESCE(pg_sequence_last_value(s.seq), 0),"
    "  COALESCE((SELECT max(task_id) FROM tasks), 0)) AS n FROM s)"
    " SELECT setval(s.seq, GREATEST(top.n, 1), top.n > 0), top.n + 1 AS next_id FROM s, top"
)


def _instant(value: str) -> datetime:
    # The log renders times as `2010-05-20T15:41:52.380Z`; fromisoformat reads that on 3.11+.
    return datetime.fromisoformat(value)


def _completion(task: StoredTask, arrays: dict[str, list[Any]]) -> None:
    completed = task.completed
    ended = task.completed_event
    disposition = task.disposition if completed is not None else None
    arrays["completed_at"].append(None if completed is None else _instant(completed["timestamp"]))
    arrays["duration_ms"].append(task.duration if completed is not None else None)
    arrays["disposition_id"].append(disposition if isinstance(disposition, int) else None)
    arrays["disposition_name"].append(disposition if isinstance(disposition, str) else None)
    arrays["disposition_desc"].append(task.disposition_desc if completed is not None else None)
    # The consumer stored the end event's text as orjson renders it (its parts were rendered
    # by orjson and joined without spaces) and the log embeds that text verbatim.
    arrays["completed_text"].append(None if completed is None else orjson.dumps(completed).decode())
    arrays["end_event_source"].append(None if ended is None else ended.source)
    arrays["end_event_id"].append(None if ended is None else ended.id)
    arrays["updated_at"].append(None if task.updated_at is None else _instant(task.updated_at))


def _columns(tasks: Sequence[StoredTask]) -> dict[str, list[Any]]:
    arrays: dict[str, list[Any]] = {name: [] for name in _NAMES}
    for task in tasks:
        arrays["task_id"].append(task.task_id)
        arrays["service_id"].append(task.service_id)
        for name in _PLAIN:
            arrays[name].append(getattr(task, name))
        arrays["est_duration"].append(task.est_duration)
        for name in LONG_OR_STRING_FIELDS:
            value = getattr(task, name)
            arrays[f"{name}_id"].append(value if isinstance(value, int) else None)
            arrays[f"{name}_name"].append(value if isinstance(value, str) else None)
        arrays["started_at"].append(_instant(task.timestamp))
        # The consumer stored orjson's rendering of the attached data and the log embeds that
        # text verbatim; orjson renders its own output back to the same bytes.
        arrays["attached_data_text"].append(orjson.dumps(task.attached_data).decode())
        arrays["event_source"].append(task.event.source)
        arrays["event_id"].append(task.event.id)
        arrays["source_topic"].append(task.source_topic)
        arrays["source_partition"].append(task.source_partition)
        arrays["source_offset"].append(task.source_offset)
        arrays["received_at"].append(_instant(task.received_at))
        arrays["tenant"].append(task.tenant)
        arrays["tenant_group"].append(task.group)
        _completion(task, arrays)
    return arrays


async def task_count(conn: AsyncConnection) -> int:
    """How many tasks the database holds."""
    return int((await conn.execute(_COUNT)).scalar_one())


async def lock_tasks(conn: AsyncConnection) -> None:
    """Hold off other writers of the tasks table until this transaction ends."""
    await conn.execute(_LOCK)


async def insert_tasks(conn: AsyncConnection, tasks: Sequence[StoredTask]) -> list[int]:
    """Insert tasks with their own ids and times; ids or identities already present are skipped.

    Returns the ids of the rows inserted.
    """
    if not tasks:
        return []
    result = await conn.execute(_INSERT, _columns(tasks))
    return [int(task_id) for task_id in result.scalars()]


async def delete_tasks(conn: AsyncConnection, task_ids: Sequence[int]) -> int:
    """Delete tasks by id (a newer life of the log supersedes them); returns how many went."""
    if not task_ids:
        return 0
    result = await conn.execute(_DELETE, {"ids": list(task_ids)})
    return int(result.rowcount)


async def insert_changes(
    conn: AsyncConnection, changes: Sequence[ChangeRow]
) -> list[tuple[str, str]]:
    """Record applied changes under their identities; identities already recorded are skipped.

    Returns the identities (source, id) of the rows inserted.
    """
    if not changes:
        return []
    arrays: dict[str, list[Any]] = {name: [] for name in _CHANGE_NAMES}
    for change in changes:
        for name in _CHANGE_NAMES:
            value = getattr(change, name)
            arrays[name].append(_instant(value) if name == "recorded_at" else value)
    result = await conn.execute(_INSERT_CHANGES, arrays)
    return [(row.event_source, row.event_id) for row in result]


async def delete_changes(conn: AsyncConnection, identities: Sequence[tuple[str, str]]) -> int:
    """Delete recorded changes by identity (a newer life of the log supersedes their task)."""
    if not identities:
        return 0
    params = {"sources": [s for s, _ in identities], "ids": [i for _, i in identities]}
    result = await conn.execute(_DELETE_CHANGES, params)
    return int(result.rowcount)


async def advance_task_ids(conn: AsyncConnection) -> int:
    """Move the task id sequence past the highest stored id (never back); returns the next id."""
    row = (await conn.execute(_ADVANCE)).mappings().one()
    return int(row["next_id"])
