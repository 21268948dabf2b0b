"""The write side of `ucs-tasks rebuild`: persist tasks exactly as the task-created log holds them.

The created-events log carries every persisted task whole (`schemas.replies.StoredTask`, laid
out by `consumer.kafka.codec.task_json`). These statements write such tasks back with their own
task ids, event identities and times, in one transaction the caller controls, then move the id
sequence past the highest id so the consumer continues where the original left off.

Batched like the repository: one `INSERT ... SELECT FROM unnest(...)` round trip per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.tables import EVENT_INPUT, LONG_OR_STRING_FIELDS, ORIGIN_INPUT
from schemas.replies import StoredTask

__all__ = [
    "advance_task_ids",
    "delete_tasks",
    "insert_tasks",
    "lock_tasks",
    "task_count",
]

# (column, SQL array type) of each input array, in unnest order.
_INPUT: Final[tuple[tuple[str, str], ...]] = (
    ("task_id", "int"),
    *EVENT_INPUT,
    ("attached_data_text", "text"),
    *ORIGIN_INPUT,
    ("received_at", "timestamptz"),
)

_NAMES = [name for name, _ in _INPUT]
_PLAIN = ("state_id", "session_id", "interaction_id", "application_id", "resource_id")

# Built from fixed column names only; every value is a bound parameter. `ON CONFLICT DO NOTHING`
# without a target covers both the primary key and the event identity (--force into a database
# that already holds some of the tasks). task_id is GENERATED ALWAYS: only a restore of tasks
# with their own ids overrides it.
_INSERT = text(
    f"INSERT INTO tasks ({', '.join(_NAMES)}, attached_data)"  # noqa: S608
    " OVERRIDING SYSTEM VALUE"
    f" SELECT {', '.join(_NAMES)}, CAST(attached_data_text AS jsonb)"
    f" FROM unnest({', '.join(f'CAST(:{n} AS {sql}[])' for n, sql in _INPUT)})"
    f" AS i({', '.join(_NAMES)})"
    " ON CONFLICT DO NOTHING"
    " RETURNING task_id"
)
_DELETE = text("DELETE FROM tasks WHERE task_id = ANY(CAST(:ids AS int[]))")
_COUNT = text("SELECT count(*) FROM tasks")
# Exclusive: reads go on, a running consumer's inserts wait until the rebuild commits (and then
# take ids from the advanced sequence).
_LOCK = text("LOCK TABLE tasks IN EXCLUSIVE MODE")
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


async def advance_task_ids(conn: AsyncConnection) -> int:
    """Move the task id sequence past the highest stored id (never back); returns the next id."""
    row = (await conn.execute(_ADVANCE)).mappings().one()
    return int(row["next_id"])
